package dev.finetune.trainer.train;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import ai.djl.ndarray.NDManager;
import dev.finetune.api.trainer.TrainerContract;
import dev.finetune.api.trainer.TrainerContract.ExitCodes;
import dev.finetune.trainer.BadJobException;
import dev.finetune.trainer.Fixtures;
import dev.finetune.trainer.Jobs;
import dev.finetune.trainer.Main;
import dev.finetune.trainer.model.Lora;
import dev.finetune.trainer.model.Model;
import dev.finetune.trainer.model.ModelShape;
import dev.finetune.trainer.model.WeightStorage;
import ai.djl.ndarray.types.Shape;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.OptionalLong;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The memory a run states before training, and the do-not-retry failure when it cannot fit. */
class MemoryPlanTest {

  @Test
  void statesWeightsGradientsOptimizerAndActivationsAndRefusesWhatCannotFit() throws Exception {
    try (NDManager base = NDManager.newBaseManager();
        Model m = Model.load(Fixtures.tinyLlama(), base)) {
      long params = m.net().parameterCount();
      MemoryPlan full = MemoryPlan.of(m.net(), 8, 64, false);
      assertThat(full.weights()).isEqualTo(4 * params);
      assertThat(full.gradients()).isEqualTo(4 * params);
      assertThat(full.optimizer()).isEqualTo(8 * params);
      assertThat(full.logits()).as("fp32 logits, their log-softmax and both gradients")
          .isEqualTo(4L * 4 * 8 * 64 * m.net().vocabSize());
      assertThat(full.activations()).isPositive();
      assertThat(MemoryPlan.of(m.net(), 16, 64, false).activations()).isGreaterThan(full.activations());
      assertThat(full.casts()).isZero();
      assertThat(full.describe()).contains("weights", "gradients", "AdamW state", "activations", "logits", "8 x 64 tokens")
          .doesNotContain("bf16");
      MemoryPlan bf16 = MemoryPlan.of(m.net(), 8, 64, true);
      assertThat(bf16.casts()).as("a bf16 copy of every weight per step").isEqualTo(2 * params);
      assertThat(bf16.activations()).as("activations in bf16").isEqualTo(full.activations() / 2);
      assertThat(bf16.describe()).contains("their bf16 copies");
      MemoryPlan zero1 = MemoryPlan.of(m.net(), 4, 64, false, 4);
      assertThat(zero1.optimizer()).as("a quarter of AdamW's state on each of 4 ranks").isEqualTo(2 * params);
      assertThat(zero1.gradients()).as("gradients are whole on every rank").isEqualTo(full.gradients());

      m.net().attach(Lora.create(m.net(), 4, 8, 0, List.of("q_proj", "v_proj"), 1));
      MemoryPlan lora = MemoryPlan.of(m.net(), 8, 64, false);
      assertThat(lora.weights()).isEqualTo(4 * params);
      assertThat(lora.gradients()).as("the adapter alone").isEqualTo(4 * m.net().lora().parameterCount());

      full.check(OptionalLong.empty(), "none");
      full.check(OptionalLong.of(full.total()), "exactly enough");
      assertThatThrownBy(() -> full.check(OptionalLong.of(full.total() - 1), "the container's memory limit"))
          .isInstanceOf(BadJobException.class).hasMessageContaining("memory needed")
          .hasMessageContaining("the container's memory limit").hasMessageContaining("spec.resources.memory");
    }
  }

  /** --plan builds no network: the shape from config.json must give the plan the built network gives. */
  @Test
  void theShapeFromConfigJsonAloneGivesTheBuiltNetworksPlan() throws Exception {
    for (Path dir : List.of(Fixtures.tinyGpt2(), Fixtures.tinyLlama(), Fixtures.fixture("tiny-qwen2"))) {
      try (NDManager base = NDManager.newBaseManager();
          Model m = Model.load(dir, base)) {
        ModelShape shape = ModelShape.read(dir.resolve("config.json"));
        assertThat(shape.parameterCount()).as(dir.toString()).isEqualTo(m.net().parameterCount());
        assertThat(MemoryPlan.of(shape, WeightStorage.FP32, shape.parameterCount(), 2, 32, true, 1))
            .isEqualTo(MemoryPlan.of(m.net(), 2, 32, true, 1));
        List<String> targets = m.net().defaultLoraTargets();
        m.net().attach(Lora.create(m.net(), 8, 16, 0, targets, 1));
        assertThat(shape.loraParameterCount(8, targets)).as(dir + " LoRA r8 on " + targets)
            .isEqualTo(m.net().lora().parameterCount());
        assertThat(MemoryPlan.of(shape, WeightStorage.FP32, shape.loraParameterCount(8, targets), 2, 32, false, 1))
            .isEqualTo(MemoryPlan.of(m.net(), 2, 32, false, 1));
      }
    }
  }

  /** A LoRA run in bf16 keeps its frozen base in bf16: half the weights' bytes and no per-step copies. */
  @Test
  void aBf16BaseHalvesTheWeightsAndNeedsNoCopies() throws Exception {
    ModelShape shape = ModelShape.read(Fixtures.tinyLlama().resolve("config.json"));
    long lora = shape.loraParameterCount(8, shape.defaultLoraTargets());
    long params = shape.parameterCount();
    long vectors = shape.weights().values().stream().filter(s -> s.dimension() == 1).mapToLong(Shape::size).sum();
    MemoryPlan bf16Base = MemoryPlan.of(shape, WeightStorage.BF16_BASE, lora, 2, 32, true, 1);
    assertThat(bf16Base.weights()).isEqualTo(2 * (params - vectors) + 4 * vectors);
    assertThat(bf16Base.casts()).as("the norms' copies alone").isEqualTo(2 * vectors);
    MemoryPlan fp32Base = MemoryPlan.of(shape, WeightStorage.FP32, lora, 2, 32, true, 1);
    assertThat(fp32Base.weights()).isEqualTo(4 * params);
    assertThat(fp32Base.casts()).isEqualTo(2 * params);
    assertThat(bf16Base.gradients()).isEqualTo(fp32Base.gradients()).isEqualTo(4 * lora);
  }

  @Test
  void cgroupLimitsAreRead(@TempDir Path dir) throws Exception {
    Path f = dir.resolve("memory.max");
    Files.writeString(f, "max\n");
    assertThat(MemoryPlan.readLimit(f)).isEmpty();
    Files.writeString(f, "8589934592\n");
    assertThat(MemoryPlan.readLimit(f)).hasValue(8L << 30);
    Files.writeString(f, "9223372036854771712\n");
    assertThat(MemoryPlan.readLimit(f)).as("cgroup v1 without a limit").isEmpty();
    assertThat(MemoryPlan.readLimit(dir.resolve("absent"))).isEmpty();
  }

  @Test
  void aJobThatCannotFitItsMemoryExits3BeforeTraining(@TempDir Path dir) throws Exception {
    Path job = Jobs.tiny(dir, "too-big", 1, 1, 0);
    Path out = dir.resolve("out");
    List<String> cmd = List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-Xmx512m", "-cp",
        System.getProperty("java.class.path"), Main.class.getName(), job.toString(), "--output", out.toString());
    ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(dir.resolve("log").toFile());
    pb.environment().put("DJL_OFFLINE", "true");
    pb.environment().put(TrainerContract.ENV_PORT, "0");
    pb.environment().put(TrainerContract.ENV_TERMINATION_LOG, dir.resolve("termination").toString());
    pb.environment().put(TrainerContract.ENV_MEMORY_LIMIT, Long.toString(100L << 20));
    Process p = pb.start();
    assertThat(p.waitFor(120, TimeUnit.SECONDS)).isTrue();
    String log = Files.readString(dir.resolve("log"));
    assertThat(p.exitValue()).as(log).isEqualTo(ExitCodes.BAD_JOB);
    assertThat(log).contains("memory needed").contains("but the trainer has 100 MiB (" + TrainerContract.ENV_MEMORY_LIMIT + ")");
    assertThat(out.resolve("checkpoints")).doesNotExist();
  }
}
