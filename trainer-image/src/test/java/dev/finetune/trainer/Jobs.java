package dev.finetune.trainer;

import dev.finetune.api.FineTuneJob;
import dev.finetune.api.FineTuneJobs;
import dev.finetune.api.testing.TinyJob;
import dev.finetune.trainer.train.Trainer;
import dev.finetune.trainer.train.TrainingListener;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

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

  public static TrainingListener.Result run(Path jobFile, Path out, Recorder recorder) throws IOException {
    Trainer t = new Trainer(read(jobFile), jobFile.getParent(), out, recorder);
    recorder.trainer = t;
    return t.run();
  }
}
