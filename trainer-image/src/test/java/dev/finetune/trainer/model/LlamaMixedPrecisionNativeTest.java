package dev.finetune.trainer.model;

import static org.assertj.core.api.Assertions.assertThat;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import ai.djl.training.GradientCollector;
import com.fasterxml.jackson.databind.JsonNode;
import dev.finetune.api.TrainingSpec.Precision;
import dev.finetune.trainer.Fixtures;
import dev.finetune.trainer.train.AdamW;
import dev.finetune.trainer.train.MemoryPlan;
import dev.finetune.trainer.train.Trainer;
import dev.finetune.trainer.nativelib.TorchNative;
import java.util.Arrays;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * bf16 mixed precision for the Llama family on the CPU, through the native library (built against Debian's libtorch
 * by .ci/run): the loss and five AdamW steps of a full fine-tune and of LoRA from PEFT's adapter stay within bf16
 * tolerance of the fp32 goldens of transformers and PEFT; weights, gradients and the optimizer stay fp32, and LoRA
 * leaves the base weights unchanged byte for byte.
 */
class LlamaMixedPrecisionNativeTest {
  /** bf16 keeps 8 bits of mantissa; on these models the loss moves by a few 1e-4 (fp32 by under 1e-6). */
  static final double BF16_TOLERANCE = 5e-3;
  /** Above fp32's own difference from the goldens: proof that bf16 arithmetic ran. */
  static final double BF16_RAN = 1e-6;
  static NDManager base;

  @BeforeAll
  static void setUp() {
    base = NDManager.newBaseManager();
  }

  @AfterAll
  static void tearDown() {
    base.close();
  }

  @BeforeEach
  void needsTheLibrary() {
    Assumptions.assumeTrue(TorchNative.get().isPresent(), () -> "skipped: " + TorchNative.unavailableReason());
  }

  @ParameterizedTest
  @ValueSource(strings = {"tiny-llama", "tiny-qwen2"})
  void fullFineTuneStaysWithinBf16ToleranceOfTheFp32Golden(String name) throws Exception {
    JsonNode golden = Fixtures.json(Fixtures.fixture(name).resolve("golden.json"));
    try (Llama net = load(name)) {
      net.setPrecision(PrecisionPolicy.resolve(Precision.BF16));
      double worst = worstRelative(name + " full", net, golden, golden.get("adamw").get("loss_before_each_step"));
      assertThat(worst).isLessThan(BF16_TOLERANCE).isGreaterThan(BF16_RAN);
    }
  }

  @ParameterizedTest
  @ValueSource(strings = {"tiny-llama", "tiny-qwen2"})
  void loraStaysWithinBf16ToleranceOfPeftAndLeavesTheBaseUnchanged(String name) throws Exception {
    JsonNode golden = Fixtures.json(Fixtures.fixture(name).resolve("golden.json"));
    try (Llama net = load(name);
        Lora adapter = Lora.load(net, Fixtures.fixture(name).resolve("lora-init"), 0.0)) {
      net.attach(adapter);
      net.setPrecision(PrecisionPolicy.resolve(Precision.BF16));
      Map<String, byte[]> before = LlamaParityTest.bytes(net.parameters());
      double worst = worstRelative(name + " LoRA", net, golden, golden.get("lora").get("loss_before_each_step"));
      assertThat(worst).isLessThan(BF16_TOLERANCE).isGreaterThan(BF16_RAN);
      Map<String, byte[]> after = LlamaParityTest.bytes(net.parameters());
      before.forEach((k, b) -> assertThat(after.get(k)).as("frozen base weight %s", k).isEqualTo(b));
    }
  }

  /** As PEFT users load it: the frozen base in bf16, the adapter in fp32; the losses stay as close to PEFT's. */
  @ParameterizedTest
  @ValueSource(strings = {"tiny-llama", "tiny-qwen2"})
  void loraOnABf16BaseStaysWithinBf16ToleranceOfPeft(String name) throws Exception {
    JsonNode golden = Fixtures.json(Fixtures.fixture(name).resolve("golden.json"));
    try (Llama net = load(name, WeightStorage.BF16_BASE);
        Lora adapter = Lora.load(net, Fixtures.fixture(name).resolve("lora-init"), 0.0)) {
      net.parameters().forEach((k, a) -> assertThat(a.getDataType()).as(k)
          .isEqualTo(a.getShape().dimension() == 2 ? DataType.BFLOAT16 : DataType.FLOAT32));
      net.attach(adapter);
      net.setPrecision(PrecisionPolicy.resolve(Precision.BF16));
      // the plan of the built network is the one --plan makes from config.json alone
      assertThat(MemoryPlan.of(net, 2, 32, true, 1)).isEqualTo(MemoryPlan.of(net.shape(), WeightStorage.BF16_BASE,
          adapter.parameterCount(), 2, 32, true, 1, MemoryPlan.Savings.NONE, true));
      Map<String, byte[]> before = LlamaParityTest.bytes(net.parameters());
      double worst = worstRelative(name + " LoRA on a bf16 base", net, golden, golden.get("lora").get("loss_before_each_step"));
      assertThat(worst).isLessThan(BF16_TOLERANCE).isGreaterThan(BF16_RAN);
      Map<String, byte[]> after = LlamaParityTest.bytes(net.parameters());
      before.forEach((k, b) -> assertThat(after.get(k)).as("frozen base weight %s", k).isEqualTo(b));
    }
  }

  private static Llama load(String name) throws Exception {
    return load(name, WeightStorage.FP32);
  }

  private static Llama load(String name, WeightStorage storage) throws Exception {
    return Llama.load(LlamaConfig.read(Fixtures.fixture(name).resolve("config.json")), Fixtures.fixture(name), base,
        storage);
  }

  /** Runs AdamW (lr 1e-3, wd 0.1, as the goldens) in bf16; the worst relative loss difference from {@code expected}. */
  private static double worstRelative(String what, CausalLm net, JsonNode golden, JsonNode expected) {
    long[][] inputs = Fixtures.longs2(golden.get("inputs"));
    long[][] targets = Fixtures.longs2(golden.get("targets"));
    double[] losses = new double[expected.size()];
    double worst = 0;
    net.requireGradients();
    try (AdamW opt = new AdamW(net.trainable(), base, 0.9, 0.999, 1e-8, 0.1)) {
      for (int s = 0; s < losses.length; s++) {
        try (NDManager step = base.newSubManager(); NDScope scope = new NDScope();
            GradientCollector gc = Engine.getInstance().newGradientCollector()) {
          Gpt2.Consts k = new Gpt2.Consts(step);
          NDArray l = net.loss(Trainer.ids(step, inputs), targets, k, true);
          assertThat(l.getDataType()).isEqualTo(DataType.FLOAT32);
          losses[s] = l.getFloat();
          gc.backward(l);
        }
        for (NDArray p : net.trainable().values()) {
          assertThat(p.getDataType()).isEqualTo(DataType.FLOAT32);
          try (NDArray g = p.getGradient()) {
            assertThat(g.getDataType()).as("gradient of an fp32 master weight").isEqualTo(DataType.FLOAT32);
          }
        }
        opt.step(net.trainable(), 1e-3);
        AdamW.zeroGradients(net.trainable());
        double e = expected.get(s).asDouble();
        worst = Math.max(worst, Math.abs(losses[s] - e) / e);
      }
    }
    System.out.printf("bf16 %s: AdamW losses %s (fp32 golden %s), worst relative %.2g%n", what, Arrays.toString(losses),
        expected, worst);
    return worst;
  }
}
