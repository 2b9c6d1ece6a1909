package dev.finetune.trainer.model;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.training.GradientCollector;
import dev.finetune.trainer.Fixtures;
import dev.finetune.trainer.train.AdamW;
import dev.finetune.trainer.train.Trainer;
import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.io.TempDir;

/**
 * The Llama-family network (tiny-llama: GQA, untied head; tiny-qwen2: q/k/v biases, tied embeddings, RoPE theta 1e6)
 * and LoRA against what transformers and PEFT computed (fixtures' golden.json).
 */
class LlamaParityTest {
  static NDManager base;

  @BeforeAll
  static void setUp() {
    base = NDManager.newBaseManager();
  }

  @AfterAll
  static void tearDown() {
    base.close();
  }

  static Path fixture(String name) {
    return Fixtures.fixture(name);
  }

  static Llama load(Path dir) throws Exception {
    return Llama.load(LlamaConfig.read(dir.resolve("config.json")), dir, base);
  }

  static double maxDiff(float[] actual, JsonNode expected) {
    double d = 0;
    for (int i = 0; i < expected.size(); i++) {
      d = Math.max(d, Math.abs(actual[i] - expected.get(i).asDouble()));
    }
    return d;
  }

  static double sum(NDArray a) {
    return a.sum().toType(DataType.FLOAT64, false).getDouble();
  }

  /** Losses before each of {@code steps} AdamW steps (lr 1e-3, wd 0.1) on the fixture's batch. */
  static double[] adamWLosses(CausalLm net, JsonNode golden, int steps) {
    long[][] inputs = Fixtures.longs2(golden.get("inputs"));
    long[][] targets = Fixtures.longs2(golden.get("targets"));
    double[] losses = new double[steps];
    net.requireGradients();
    try (AdamW opt = new AdamW(net.trainable(), base, 0.9, 0.999, 1e-8, 0.1)) {
      for (int s = 0; s < steps; s++) {
        try (NDManager step = base.newSubManager(); NDScope scope = new NDScope();
            GradientCollector gc = Engine.getInstance().newGradientCollector()) {
          Gpt2.Consts k = new Gpt2.Consts(step);
          NDArray l = Gpt2.loss(net.forward(Trainer.ids(step, inputs), k, true), targets, k);
          losses[s] = l.getFloat();
          gc.backward(l);
        }
        opt.step(net.trainable(), 1e-3);
        AdamW.zeroGradients(net.trainable());
      }
    }
    return losses;
  }

  static float[] logits(CausalLm net, long[][] inputs) {
    try (NDManager step = net.manager().newSubManager(); NDScope scope = new NDScope()) {
      return net.forward(Trainer.ids(step, inputs), new Gpt2.Consts(step), false).toFloatArray();
    }
  }

  @ParameterizedTest
  @ValueSource(strings = {"tiny-llama", "tiny-qwen2"})
  void logitsAndLossMatchTransformers(String name) throws Exception {
    JsonNode golden = Fixtures.json(fixture(name).resolve("golden.json"));
    long[][] inputs = Fixtures.longs2(golden.get("inputs"));
    long[][] targets = Fixtures.longs2(golden.get("targets"));
    try (Llama net = load(fixture(name)); NDManager step = base.newSubManager()) {
      Gpt2.Consts k = new Gpt2.Consts(step);
      NDArray logits = net.forward(Trainer.ids(step, inputs), k, false);
      assertThat(logits.getShape()).isEqualTo(new Shape(inputs.length, inputs[0].length, 50257));
      double diff = Math.max(maxDiff(logits.get("0,0,:10").toFloatArray(), golden.get("logits_first_row_first10")),
          maxDiff(logits.get("-1,-1,:10").toFloatArray(), golden.get("logits_last_row_first10")));
      double loss = Gpt2.loss(logits, targets, k).getFloat();
      System.out.printf("parity %s: logits max abs diff %.3g, sum %.6f (golden %.6f), loss %.7f (golden %.7f)%n", name,
          diff, sum(logits), golden.get("logits_sum").asDouble(), loss, golden.get("loss_ignore_index_minus100").asDouble());
      assertThat(diff).isLessThan(1e-4);
      assertThat(sum(logits)).isCloseTo(golden.get("logits_sum").asDouble(), within(0.05));
      assertThat(sum(logits.mul(logits))).isCloseTo(golden.get("logits_sq_sum").asDouble(), within(0.5));
      long[] argmax = logits.get(0).argMax(1).toLongArray();
      for (int i = 0; i < argmax.length; i++) {
        assertThat(argmax[i]).as("argmax of row 0 at %d", i).isEqualTo(golden.get("argmax_row0").get(i).asLong());
      }
      assertThat(loss).isCloseTo(golden.get("loss_ignore_index_minus100").asDouble(), within(1e-4));
    }
  }

  @ParameterizedTest
  @ValueSource(strings = {"tiny-llama", "tiny-qwen2"})
  void adamWStepsMatchPytorch(String name) throws Exception {
    JsonNode golden = Fixtures.json(fixture(name).resolve("golden.json"));
    JsonNode expected = golden.get("adamw").get("loss_before_each_step");
    try (Llama net = load(fixture(name))) {
      double[] losses = adamWLosses(net, golden, expected.size());
      double diff = 0;
      for (int s = 0; s < losses.length; s++) {
        diff = Math.max(diff, Math.abs(losses[s] - expected.get(s).asDouble()));
      }
      System.out.printf("parity %s: AdamW losses %s, max abs diff %.3g%n", name, java.util.Arrays.toString(losses), diff);
      assertThat(diff).isLessThan(1e-3);
    }
  }

  @ParameterizedTest
  @ValueSource(strings = {"tiny-llama", "tiny-qwen2"})
  void saveAndReloadRoundTrips(String name, @TempDir Path tmp) throws Exception {
    JsonNode golden = Fixtures.json(fixture(name).resolve("golden.json"));
    long[][] inputs = Fixtures.longs2(golden.get("inputs"));
    try (Llama net = load(fixture(name))) {
      net.save(tmp);
      try (NDManager m = base.newSubManager()) {
        Map<String, NDArray> written = SafeTensors.read(tmp.resolve("model.safetensors"), m);
        Map<String, NDArray> original = SafeTensors.read(fixture(name).resolve("model.safetensors"), m);
        assertThat(written.keySet()).as("the hub's names").containsExactlyInAnyOrderElementsOf(original.keySet());
        original.forEach((k, a) -> assertThat(written.get(k).contentEquals(a)).as(k).isTrue());
      }
      assertThat(Fixtures.json(tmp.resolve("config.json"))).isEqualTo(Fixtures.json(fixture(name).resolve("config.json")));
      try (Llama again = load(tmp)) {
        assertThat(maxAbsDiff(logits(again, inputs), logits(net, inputs))).isZero();
      }
    }
  }

  @ParameterizedTest
  @ValueSource(strings = {"tiny-llama", "tiny-qwen2"})
  void loraFromPeftAdapterMatchesPeft(String name, @TempDir Path tmp) throws Exception {
    JsonNode golden = Fixtures.json(fixture(name).resolve("golden.json"));
    JsonNode lora = golden.get("lora");
    long[][] inputs = Fixtures.longs2(golden.get("inputs"));
    try (Llama net = load(fixture(name)); Lora adapter = Lora.load(net, fixture(name).resolve("lora-init"), 0.0);
        NDManager m = base.newSubManager()) {
      net.attach(adapter);
      assertThat(adapter.parameterCount()).isEqualTo(lora.get("trainable_params").asLong());
      Map<String, byte[]> before = bytes(net.parameters());

      double[] losses = adamWLosses(net, golden, lora.get("loss_before_each_step").size());
      double diff = 0;
      for (int s = 0; s < losses.length; s++) {
        diff = Math.max(diff, Math.abs(losses[s] - lora.get("loss_before_each_step").get(s).asDouble()));
      }
      System.out.printf("parity %s: LoRA AdamW losses %s, max abs diff %.3g%n", name, java.util.Arrays.toString(losses), diff);
      assertThat(diff).isLessThan(1e-3);
      Map<String, byte[]> after = bytes(net.parameters());
      before.forEach((k, b) -> assertThat(after.get(k)).as("frozen base weight %s", k).isEqualTo(b));

      // Merged weights in best/ form: a plain model that computes what base + adapter computes.
      Path merged = tmp.resolve("merged");
      Files.createDirectories(merged);
      net.save(merged, adapter.merged(net.parameters(), m));
      float[] withAdapter = logits(net, inputs);
      try (Llama plain = load(merged); NDManager step = base.newSubManager()) {
        NDArray out = plain.forward(Trainer.ids(step, inputs), new Gpt2.Consts(step), false);
        double rowDiff = maxDiff(out.get("0,0,:10").toFloatArray(), lora.get("merged_logits_first_row_first10"));
        System.out.printf("parity %s: merged logits first row max abs diff %.3g, sum %.6f (golden %.6f)%n", name, rowDiff,
            sum(out), lora.get("merged_logits_sum").asDouble());
        assertThat(rowDiff).isLessThan(1e-4);
        assertThat(sum(out)).isCloseTo(lora.get("merged_logits_sum").asDouble(), within(0.05));
        assertThat(maxAbsDiff(out.toFloatArray(), withAdapter)).as("merged vs base + adapter").isLessThan(1e-5);
      }

      // The adapter as PEFT writes it loads back onto a fresh base with the same logits.
      Path saved = tmp.resolve("adapter");
      adapter.save(saved);
      JsonNode config = Fixtures.json(saved.resolve(Lora.CONFIG));
      assertThat(config.get("peft_type").asText()).isEqualTo("LORA");
      assertThat(config.get("r").asInt()).isEqualTo(4);
      try (NDManager h = base.newSubManager()) {
        Map<String, NDArray> ours = SafeTensors.read(saved.resolve(Lora.WEIGHTS), h);
        Map<String, NDArray> peft = SafeTensors.read(fixture(name).resolve("lora-init").resolve(Lora.WEIGHTS), h);
        assertThat(ours.keySet()).as("PEFT's names").containsExactlyInAnyOrderElementsOf(peft.keySet());
      }
      try (Llama fresh = load(fixture(name)); Lora again = Lora.load(fresh, saved, 0.0)) {
        fresh.attach(again);
        assertThat(maxAbsDiff(logits(fresh, inputs), withAdapter)).isZero();
      }
    }
  }

  static double maxAbsDiff(float[] a, float[] b) {
    assertThat(a.length).isEqualTo(b.length);
    double d = 0;
    for (int i = 0; i < a.length; i++) {
      d = Math.max(d, Math.abs(a[i] - b[i]));
    }
    System.out.printf("max abs diff of %d logits: %.3g%n", a.length, d);
    return d;
  }

  static Map<String, byte[]> bytes(Map<String, NDArray> params) {
    Map<String, byte[]> out = new java.util.LinkedHashMap<>();
    params.forEach((k, a) -> out.put(k, a.toByteArray()));
    return out;
  }
}
