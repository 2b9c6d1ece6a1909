package dev.finetune.trainer;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import dev.finetune.api.trainer.TrainerContract.ExitCodes;
import dev.finetune.trainer.nativelib.TorchNative;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** spec.training.precision where the trainer's native library is not there (DJL's own JNI and libtorch). */
class PrecisionTest {

  @Test
  void autoRunsFp32OnTheCpuAndTheSummarySaysSo(@TempDir Path dir) throws Exception {
    Path job = Jobs.write(dir, String.format(Jobs.TINY, "auto", 1, 1, 0) + "  evaluation:\n    enabled: false\n");
    assertThat(Main.run(new String[] {job.toString()}, List.of(), null)).isEqualTo(ExitCodes.SUCCEEDED);
    JsonNode summary = Fixtures.json(dir.resolve("runs/auto/summary.json"));
    assertThat(summary.get("precision").asText()).isEqualTo("fp32");
    assertThat(summary.get("device").asText()).isEqualTo("cpu");
  }

  @Test
  void bf16WithoutTheNativeLibraryIsABadJobThatSaysWhatIsMissing(@TempDir Path dir) throws Exception {
    Assumptions.assumeTrue(TorchNative.get().isEmpty(), "the native library is loaded in this JVM");
    Path job = Jobs.write(dir, String.format(Jobs.TINY, "bf16", 1, 1, 0).replace("seed: 11", "seed: 11\n    precision: bf16"));
    MainTest.Errors e = new MainTest.Errors();
    assertThat(MainTest.run(e, job.toString())).isEqualTo(ExitCodes.BAD_JOB);
    assertThat(e.errors.get(0)).isInstanceOf(BadJobException.class);
    assertThat(e.errors.get(0).getMessage()).contains("spec.training.precision bf16").contains(TorchNative.ENV_LIB)
        .contains("trainer-image/native/build.sh").contains("precision fp32");
    JsonNode summary = Fixtures.json(dir.resolve("runs/bf16/summary.json"));
    assertThat(summary.get("reason").asText()).isEqualTo("InvalidSpec");
  }
}
