package dev.finetune.trainer;

import static org.assertj.core.api.Assertions.assertThat;

import dev.finetune.api.EpochRecord;
import dev.finetune.api.FineTuneJob;
import dev.finetune.api.FineTuneJobs;
import dev.finetune.api.testing.TinyJob;
import dev.finetune.api.trainer.TrainerContract;
import dev.finetune.trainer.train.Checkpoints;
import dev.finetune.trainer.train.Trainer;
import dev.finetune.trainer.train.TrainingListener;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

/** Small job files for tests: the shared {@link TinyJob} unless told otherwise. */
public final class Jobs {
  private Jobs() {}

  /** The shared {@link TinyJob} as text with name, epochs, checkpoints.keep and checkpoints.everySteps to fill in. */
  public static final String TINY = TinyJob.YAML.replace("  namespace: %s\n", "")
      .replace("  checkpoints:\n", "  checkpoints:\n    keep: %d\n    everySteps: %d\n");

  public static Path tiny(Path dir, String name, int epochs, int keep, int everySteps) throws IOException {
    return write(dir, String.format(TINY, name, epochs, keep, everySteps));
  }

  public static Path write(Path dir, String yaml) throws IOException {
    Files.createDirectories(dir);
    Path f = dir.resolve("job.yaml");
    Files.writeString(f, yaml);
    return f;
  }

  public static FineTuneJob read(Path file) throws IOException {
    return FineTuneJobs.readValid(file);
  }

  /** Runs a job in this JVM; {@code listener} may be null. */
  public static TrainingListener.Result run(Path jobFile, Path out, TrainingListener listener) throws IOException {
    return new Trainer(read(jobFile), jobFile.getParent(), out, listener).run();
  }

  /** A listener that records epochs and can stop the trainer at a chosen epoch or step. */
  public static final class Recorder implements TrainingListener {
    public final List<EpochInfo> epochs = new ArrayList<>();
    public final List<StepInfo> steps = new ArrayList<>();
    public Trainer trainer;
    public int stopAtEpoch = -1;
    public long stopAtStep = -1;

    @Override
    public void onStep(StepInfo step) {
      steps.add(step);
      if (step.step() == stopAtStep) {
        trainer.requestStop();
      }
    }

    @Override
    public void onEpoch(EpochInfo epoch) {
      epochs.add(epoch);
      if (epoch.record().epoch == stopAtEpoch) {
        trainer.requestStop();
      }
    }
  }

  /** The run's history.jsonl, one record per epoch. */
  public static List<EpochRecord> history(Path out) throws IOException {
    try (Stream<String> lines = Files.lines(out.resolve(TrainerContract.HISTORY_FILE))) {
      return lines.map(l -> {
        try {
          return FineTuneJobs.json().readValue(l, EpochRecord.class);
        } catch (IOException e) {
          throw new RuntimeException(e);
        }
      }).toList();
    }
  }

  /**
   * Runs {@code jobFile} into {@code out}, stopped after epoch 1, then again to the end, and checks that it ends as
   * the uninterrupted run in {@code reference} did: the same losses every epoch (bit for bit) and the same bytes of
   * {@code files} in the last epoch's checkpoint.
   */
  public static void assertResumesExactly(Path jobFile, Path out, Path reference, int epochs, String... files)
      throws IOException {
    Recorder stop = new Recorder();
    stop.stopAtEpoch = 1;
    assertThat(run(jobFile, out, stop).outcome()).isEqualTo(TrainingListener.Outcome.INTERRUPTED);
    assertThat(run(jobFile, out, new Recorder()).outcome()).isEqualTo(TrainingListener.Outcome.COMPLETED);
    List<EpochRecord> expected = history(reference);
    List<EpochRecord> resumed = history(out);
    assertThat(resumed).hasSize(epochs);
    for (int i = 0; i < epochs; i++) {
      assertThat(resumed.get(i).trainLoss).as("train loss of epoch %d", i + 1).isEqualTo(expected.get(i).trainLoss);
      assertThat(resumed.get(i).validationLoss).as("validation loss of epoch %d", i + 1)
          .isEqualTo(expected.get(i).validationLoss);
    }
    Path last = Path.of("checkpoints", Checkpoints.epochName(epochs));
    for (String f : files) {
      assertThat(Files.readAllBytes(out.resolve(last).resolve(f))).as("%s of the last checkpoint", f)
          .isEqualTo(Files.readAllBytes(reference.resolve(last).resolve(f)));
    }
  }

  public static TrainingListener.Result run(Path jobFile, Path out, Recorder recorder) throws IOException {
    Trainer t = new Trainer(read(jobFile), jobFile.getParent(), out, recorder);
    recorder.trainer = t;
    return t.run();
  }
}
