package dev.finetune.trainer.train;

import static org.assertj.core.api.Assertions.assertThat;

import dev.finetune.api.EpochRecord;
import dev.finetune.api.testing.Holds;
import dev.finetune.api.trainer.TrainerContract;
import dev.finetune.trainer.Jobs;
import dev.finetune.trainer.Main;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Resuming is exact: runs stopped after an epoch, inside an epoch (SIGTERM path), by SIGTERM to a child JVM,
 * and by SIGKILL while a checkpoint was being written all end with the same per-epoch losses and the same
 * final weights as one uninterrupted run.
 */
class ResumeTest {
  static final int EPOCHS = 4;
  @TempDir
  static Path shared;
  static Path reference;
  static List<EpochRecord> referenceHistory;

  @BeforeAll
  static void uninterrupted() throws IOException {
    Path job = Jobs.tiny(shared.resolve("ref"), "ref", EPOCHS, 10, 0);
    reference = shared.resolve("ref/out");
    TrainingListener.Result r = Jobs.run(job, reference, (TrainingListener) null);
    assertThat(r.outcome()).isEqualTo(TrainingListener.Outcome.COMPLETED);
    referenceHistory = Jobs.history(reference);
    assertThat(referenceHistory).hasSize(EPOCHS);
  }

  /** Same losses per epoch (bit for bit), same final and best weights. */
  static void assertSameAsReference(Path out) throws IOException {
    List<EpochRecord> h = Jobs.history(out);
    assertThat(h).hasSize(EPOCHS);
    for (int i = 0; i < EPOCHS; i++) {
      assertThat(h.get(i).epoch).isEqualTo(i + 1);
      assertThat(h.get(i).trainLoss).as("train loss of epoch %d", i + 1).isEqualTo(referenceHistory.get(i).trainLoss);
      assertThat(h.get(i).validationLoss).as("validation loss of epoch %d", i + 1)
          .isEqualTo(referenceHistory.get(i).validationLoss);
      assertThat(h.get(i).step).isEqualTo(referenceHistory.get(i).step);
      assertThat(h.get(i).tokens).isEqualTo(referenceHistory.get(i).tokens);
    }
    String last = "checkpoints/" + Checkpoints.epochName(EPOCHS);
    assertThat(Files.readAllBytes(out.resolve(last).resolve("model.safetensors")))
        .as("final weights").isEqualTo(Files.readAllBytes(reference.resolve(last).resolve("model.safetensors")));
    assertThat(Files.readAllBytes(out.resolve(last).resolve(Checkpoints.OPTIMIZER)))
        .as("final optimizer moments").isEqualTo(Files.readAllBytes(reference.resolve(last).resolve(Checkpoints.OPTIMIZER)));
    assertThat(Files.readAllBytes(out.resolve("best/model.safetensors")))
        .as("best weights").isEqualTo(Files.readAllBytes(reference.resolve("best/model.safetensors")));
  }

  @Test
  void stoppedAfterAnEpochResumesExactly(@TempDir Path dir) throws IOException {
    Path job = Jobs.tiny(dir, "after-epoch", EPOCHS, 10, 0);
    Path out = dir.resolve("out");
    Jobs.Recorder rec = new Jobs.Recorder();
    rec.stopAtEpoch = 2;
    TrainingListener.Result first = Jobs.run(job, out, rec);
    assertThat(first.outcome()).isEqualTo(TrainingListener.Outcome.INTERRUPTED);
    assertThat(first.epochsCompleted()).isEqualTo(2);
    assertThat(Jobs.history(out)).hasSize(2);

    Jobs.Recorder second = new Jobs.Recorder();
    TrainingListener.Result r = Jobs.run(job, out, second);
    assertThat(r.outcome()).isEqualTo(TrainingListener.Outcome.COMPLETED);
    assertThat(second.epochs).extracting(e -> e.record().epoch).containsExactly(3, 4);
    assertSameAsReference(out);
  }

  @Test
  void periodicStepCheckpointsDoNotChangeTrainingAndArePruned(@TempDir Path dir) throws IOException {
    Path job = Jobs.tiny(dir, "every-steps", EPOCHS, 2, 4);
    Path out = dir.resolve("out");
    List<String> written = new java.util.ArrayList<>();
    TrainingListener.Result r = Jobs.run(job, out, new TrainingListener() {
      @Override
      public void onCheckpoint(CheckpointInfo c) {
        written.add(c.name());
      }
    });
    assertThat(r.outcome()).isEqualTo(TrainingListener.Outcome.COMPLETED);
    // 6 steps per epoch: steps 4, 8, 16, 20 fall inside epochs (12 and 24 are epoch ends)
    assertThat(written).containsExactly("checkpoints/step-00000004", "checkpoints/epoch-0001", "checkpoints/step-00000008",
        "checkpoints/epoch-0002", "checkpoints/step-00000016", "checkpoints/epoch-0003", "checkpoints/step-00000020",
        "checkpoints/epoch-0004");
    try (Stream<Path> s = Files.list(out.resolve("checkpoints"))) {
      assertThat(s.map(p -> p.getFileName().toString()).sorted().toList())
          .as("the newest 2 (the best epoch is the last one)").containsExactly("epoch-0004", "step-00000020");
    }
    assertSameAsReference(out);
  }

  @Test
  void stoppedInsideAnEpochResumesFromTheStepCheckpoint(@TempDir Path dir) throws IOException {
    Path job = Jobs.tiny(dir, "mid-epoch", EPOCHS, 10, 0);
    Path out = dir.resolve("out");
    Jobs.Recorder rec = new Jobs.Recorder();
    rec.stopAtStep = 10; // 102 records / 8 = 12 micro-batches / 2 = 6 steps per epoch: step 10 is inside epoch 2
    TrainingListener.Result first = Jobs.run(job, out, rec);
    assertThat(first.outcome()).isEqualTo(TrainingListener.Outcome.INTERRUPTED);
    assertThat(first.latestCheckpoint()).isEqualTo("checkpoints/" + Checkpoints.stepName(10));
    assertThat(out.resolve("checkpoints/" + Checkpoints.stepName(10) + "/state.json")).exists();

    TrainingListener.Result r = Jobs.run(job, out, new Jobs.Recorder());
    assertThat(r.outcome()).isEqualTo(TrainingListener.Outcome.COMPLETED);
    assertSameAsReference(out);
  }

  @Test
  void halfWrittenCheckpointIsIgnored(@TempDir Path dir) throws IOException {
    Path job = Jobs.tiny(dir, "half-written", EPOCHS, 10, 0);
    Path out = dir.resolve("out");
    Jobs.Recorder rec = new Jobs.Recorder();
    rec.stopAtEpoch = 2;
    Jobs.run(job, out, rec);
    // What a crash in the middle of writing epoch 3 leaves: a temp dir with part of the files, and (never
    // produced by the trainer, but a tool copying files might) a directory without state.json.
    Path tmp = out.resolve("checkpoints/.tmp-" + Checkpoints.epochName(3));
    Files.createDirectories(tmp);
    Files.write(tmp.resolve("model.safetensors"), new byte[] {1, 2, 3});
    Path noState = out.resolve("checkpoints/" + Checkpoints.epochName(3));
    Files.createDirectories(noState);
    Files.write(noState.resolve("model.safetensors"), new byte[] {4, 5, 6});

    TrainingListener.Result r = Jobs.run(job, out, new Jobs.Recorder());
    assertThat(r.outcome()).isEqualTo(TrainingListener.Outcome.COMPLETED);
    assertThat(tmp).doesNotExist();
    assertSameAsReference(out);
  }

  static Process child(Path job, Path out, String... jvmProps) throws IOException {
    List<String> cmd = new java.util.ArrayList<>(List.of(
        Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-Xmx1g",
        "-cp", System.getProperty("java.class.path")));
    cmd.addAll(List.of(jvmProps));
    cmd.addAll(List.of(Main.class.getName(), job.toString(), "--output", out.toString()));
    ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true)
        .redirectOutput(out.resolveSibling("child.log").toFile());
    pb.environment().put("DJL_OFFLINE", "true");
    return pb.start();
  }

  @Test
  void sigtermToChildProcessCheckpointsAndExits75(@TempDir Path dir) throws Exception {
    Path job = Jobs.tiny(dir, "sigterm", EPOCHS, 10, 0);
    Path out = dir.resolve("out");
    // SIGTERM once epoch 1 is checkpointed, with epochs left to train: the trainer holds there until the signal.
    Path holds = dir.resolve("holds");
    Process p = child(job, out, Holds.jvmOptions(holds, "epoch-1-end").toArray(String[]::new));
    Holds.awaitHeld(holds, "epoch-1-end", p::isAlive, () -> log(dir));
    p.destroy(); // SIGTERM
    assertThat(p.waitFor(120, TimeUnit.SECONDS)).isTrue();
    assertThat(p.exitValue()).as(log(dir)).isEqualTo(TrainerContract.ExitCodes.INTERRUPTED);
    assertThat(new Checkpoints(out.resolve("checkpoints")).latest().orElseThrow().state().epochsCompleted).isEqualTo(1);
    assertThat(log(dir)).contains("stopped by request (SIGTERM) after epoch 1");

    TrainingListener.Result r = Jobs.run(job, out, new Jobs.Recorder());
    assertThat(r.outcome()).isEqualTo(TrainingListener.Outcome.COMPLETED);
    assertSameAsReference(out);
  }

  @Test
  void sigkillWhileWritingACheckpointResumesFromTheLastCompleteOne(@TempDir Path dir) throws Exception {
    Path job = Jobs.tiny(dir, "sigkill", EPOCHS, 10, 0);
    Path out = dir.resolve("out");
    // SIGKILL half-way through checkpoint 2: weights and moments written, state.json not yet.
    Path holds = dir.resolve("holds");
    String halfWay = "checkpoint-" + Checkpoints.epochName(2);
    Process p = child(job, out, Holds.jvmOptions(holds, halfWay).toArray(String[]::new));
    Holds.awaitHeld(holds, halfWay, p::isAlive, () -> log(dir));
    p.destroyForcibly(); // SIGKILL in the middle of the write
    assertThat(p.waitFor(60, TimeUnit.SECONDS)).isTrue();
    assertThat(p.exitValue()).isEqualTo(137);
    Path tmp2 = out.resolve("checkpoints/.tmp-" + Checkpoints.epochName(2));
    assertThat(tmp2.resolve("optimizer.safetensors")).exists();
    assertThat(tmp2.resolve("state.json")).doesNotExist();
    assertThat(new Checkpoints(out.resolve("checkpoints")).latest().orElseThrow().state().epochsCompleted).isEqualTo(1);

    Jobs.Recorder rec = new Jobs.Recorder();
    TrainingListener.Result r = Jobs.run(job, out, rec);
    assertThat(r.outcome()).isEqualTo(TrainingListener.Outcome.COMPLETED);
    assertThat(rec.epochs).extracting(e -> e.record().epoch).containsExactly(2, 3, 4);
    assertSameAsReference(out);
  }

  private static String log(Path dir) {
    try {
      return Files.readString(dir.resolve("child.log"));
    } catch (IOException e) {
      return "(no child.log: " + e + ")";
    }
  }
}
