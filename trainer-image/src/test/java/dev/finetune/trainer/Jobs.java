package dev.finetune.trainer;

import dev.finetune.api.FineTuneJob;
import dev.finetune.api.FineTuneJobs;
import dev.finetune.trainer.train.Trainer;
import dev.finetune.trainer.train.TrainingListener;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/** Small job files for tests: a tiny scratch GPT-2 on synthetic tasks unless told otherwise. */
public final class Jobs {
  private Jobs() {}

  public static final String TINY = """
      apiVersion: finetune.dev/v1alpha1
      kind: FineTuneJob
      metadata:
        name: %s
      spec:
        model:
          scratch:
            layers: 1
            embeddingDim: 32
            heads: 2
            contextLength: 96
            seed: 5
        dataset:
          synthetic:
            size: 120
            seed: 3
          promptStyle: phi3
          maskPrompt: true
          maxLength: 96
        training:
          epochs: %d
          batchSize: 8
          learningRate: 0.003
          warmupSteps: 3
          schedule: cosine
          maxGradNorm: 1.0
          gradientAccumulationSteps: 2
          seed: 11
        checkpoints:
          keep: %d
          everySteps: %d
      """;

  public static Path tiny(Path dir, String name, int epochs, int keep, int everySteps) throws IOException {
    Files.createDirectories(dir);
    Path f = dir.resolve("job.yaml");
    Files.writeString(f, String.format(TINY, name, epochs, keep, everySteps));
    return f;
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
