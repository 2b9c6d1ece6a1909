package dev.finetune.trainer.train;

import static org.assertj.core.api.Assertions.assertThat;

import dev.finetune.api.EpochRecord;
import dev.finetune.trainer.Fixtures;
import dev.finetune.trainer.Jobs;
import dev.finetune.trainer.model.Lora;
import dev.finetune.trainer.nativelib.TorchNative;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A LoRA job on a Llama-family model in bf16 mixed precision, as on a GPU (here on the CPU through the native library
 * built against Debian's libtorch): it learns, says bf16 ran, and a run stopped after epoch 1 resumes to exactly the
 * adapter and optimizer state of an uninterrupted one.
 */
class LoraBf16NativeTest {

  @Test
  void loraJobInBf16LearnsAndResumesExactly(@TempDir Path dir) throws Exception {
    Assumptions.assumeTrue(TorchNative.get().isPresent(), () -> "skipped: " + TorchNative.unavailableReason());
    String yaml = String.format(LoraTrainingTest.JOB, "lora-bf16", Fixtures.tinyLlama(),
        Fixtures.tinyLlama().resolve("lora-init")).replace("seed: 11\n", "seed: 11\n    precision: bf16\n");
    Path ref = dir.resolve("ref/out");
    List<String> ran = new ArrayList<>();
    TrainingListener seen = new TrainingListener() {
      @Override
      public void onStart(RunInfo run) {
        ran.add(run.precision());
      }
    };
    assertThat(Jobs.run(Jobs.write(dir.resolve("ref"), yaml), ref, seen).outcome())
        .isEqualTo(TrainingListener.Outcome.COMPLETED);
    assertThat(ran).containsExactly("bf16");
    List<EpochRecord> history = Jobs.history(ref);
    assertThat(history.get(1).trainLoss).as("it learns").isLessThan(history.get(0).trainLoss);

    Jobs.assertResumesExactly(Jobs.write(dir.resolve("resumed"), yaml), dir.resolve("resumed/out"), ref, 2, Lora.WEIGHTS,
        Checkpoints.OPTIMIZER);
  }
}
