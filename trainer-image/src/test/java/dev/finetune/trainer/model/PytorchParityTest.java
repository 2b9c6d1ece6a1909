package dev.finetune.trainer.model;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.Shape;
import ai.djl.training.GradientCollector;
import com.fasterxml.jackson.databind.JsonNode;
import dev.finetune.trainer.Fixtures;
import dev.finetune.trainer.data.Collator;
import dev.finetune.trainer.train.AdamW;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The forward pass, loss, AdamW, tokenizer and collation against what PyTorch/HF computed (fixtures). */
class PytorchParityTest {
  static NDManager base;
  static JsonNode golden;

  @BeforeAll
  static void setUp() throws Exception {
    base = NDManager.newBaseManager();
    golden = Fixtures.json(Fixtures.tinyGpt2().resolve("golden.json"));
  }

  @AfterAll
  static void tearDown() {
    base.close();
  }

  static NDArray ids(NDManager m, long[][] rows) {
    long[] flat = new long[rows.length * rows[0].length];
    for (int i = 0; i < rows.length; i++) {
      System.arraycopy(rows[i], 0, flat, i * rows[0].length, rows[0].length);
    }
    return m.create(flat, new Shape(rows.length, rows[0].length));
  }

  @Test
  void logitsAndLossMatchHuggingFace() throws Exception {
    long[][] inputs = Fixtures.longs2(golden.get("inputs"));
    long[][] targets = Fixtures.longs2(golden.get("targets"));
    try (Model model = Model.load(Fixtures.tinyGpt2(), base); NDManager step = base.newSubManager()) {
      Gpt2.Consts k = new Gpt2.Consts(step);
      NDArray logits = model.net().forward(ids(step, inputs), k, false);
      assertThat(logits.getShape()).isEqualTo(new Shape(4, 53, 50257));
      double sum = logits.sum().toType(ai.djl.ndarray.types.DataType.FLOAT64, false).getDouble();
      double sq = logits.mul(logits).sum().toType(ai.djl.ndarray.types.DataType.FLOAT64, false).getDouble();
      float[] first = logits.get("0,0,:10").toFloatArray();
      float[] last = logits.get("-1,-1,:10").toFloatArray();
      long[] argmax = logits.get(0).argMax(1).toLongArray();
      double maxDiff = 0;
      for (int i = 0; i < 10; i++) {
        maxDiff = Math.max(maxDiff, Math.abs(first[i] - golden.get("logits_first_row_first10").get(i).asDouble()));
        maxDiff = Math.max(maxDiff, Math.abs(last[i] - golden.get("logits_last_row_first10").get(i).asDouble()));
      }
      double loss = Gpt2.loss(logits, targets, k).getFloat();
      System.out.printf("parity: logits max abs diff %.3g, sum %.6f (golden %.6f), sq sum %.4f (golden %.4f), loss %.7f (golden %.7f)%n",
          maxDiff, sum, golden.get("logits_sum").asDouble(), sq, golden.get("logits_sq_sum").asDouble(),
          loss, golden.get("loss_ignore_index_minus100").asDouble());
      assertThat(maxDiff).isLessThan(1e-4);
      assertThat(sum).isCloseTo(golden.get("logits_sum").asDouble(), within(0.05));
      assertThat(sq).isCloseTo(golden.get("logits_sq_sum").asDouble(), within(0.5));
      for (int i = 0; i < argmax.length; i++) {
        assertThat(argmax[i]).as("argmax of row 0 at %d", i).isEqualTo(golden.get("argmax_row0").get(i).asLong());
      }
      assertThat(loss).isCloseTo(golden.get("loss_ignore_index_minus100").asDouble(), within(1e-4));
    }
  }

  @Test
  void adamWStepsMatchPytorch() throws Exception {
    long[][] inputs = Fixtures.longs2(golden.get("inputs"));
    long[][] targets = Fixtures.longs2(golden.get("targets"));
    JsonNode adam = golden.get("adamw");
    try (Model model = Model.load(Fixtures.tinyGpt2(), base)) {
      CausalLm net = model.net();
      net.requireGradients();
      try (AdamW opt = new AdamW(net.parameters(), base, 0.9, 0.999, 1e-8, 0.1)) {
        double maxDiff = 0;
        for (int s = 0; s < adam.get("steps").asInt(); s++) {
          double loss;
          try (NDManager step = base.newSubManager(); NDScope scope = new NDScope();
              GradientCollector gc = Engine.getInstance().newGradientCollector()) {
            Gpt2.Consts k = new Gpt2.Consts(step);
            NDArray l = Gpt2.loss(net.forward(ids(step, inputs), k, true), targets, k);
            loss = l.getFloat();
            gc.backward(l);
          }
          opt.step(net.parameters(), 1e-3);
          AdamW.zeroGradients(net.parameters());
          double expected = adam.get("loss_before_each_step").get(s).asDouble();
          System.out.printf("parity: AdamW step %d loss %.7f (golden %.7f)%n", s + 1, loss, expected);
          maxDiff = Math.max(maxDiff, Math.abs(loss - expected));
        }
        System.out.printf("parity: AdamW losses max abs diff %.3g%n", maxDiff);
        assertThat(maxDiff).isLessThan(1e-3);
      }
    }
  }

  @Test
  void gpt2TokenizerMatchesGoldenEncodings() throws Exception {
    JsonNode cases = Fixtures.json(Fixtures.gpt2Tokenizer().resolve("golden-encodings.json"));
    try (TextTokenizer tok = TextTokenizer.load(Fixtures.gpt2Tokenizer().resolve("tokenizer.json"), 50256)) {
      assertThat(cases.size()).isGreaterThan(3);
      for (JsonNode c : cases) {
        String text = c.get("text").asText();
        long[] expected = new long[c.get("ids").size()];
        for (int i = 0; i < expected.length; i++) {
          expected[i] = c.get("ids").get(i).asLong();
        }
        assertThat(tok.encode(text)).as("encoding of %s", text).containsExactly(expected);
        assertThat(tok.decode(expected)).as("decoding of %s", text).isEqualTo(text);
      }
    }
  }

  @Test
  void collationReproducesFixtureBatch(@TempDir Path tmp) throws Exception {
    JsonNode cases = Fixtures.json(Fixtures.gpt2Tokenizer().resolve("golden-encodings.json"));
    long[][] inputs = Fixtures.longs2(golden.get("inputs"));
    long[][] targets = Fixtures.longs2(golden.get("targets"));
    try (TextTokenizer tok = TextTokenizer.load(Fixtures.tinyGpt2().resolve("tokenizer.json"), 50256)) {
      List<Collator.Example> batch = new ArrayList<>();
      for (int i = 0; i < inputs.length; i++) {
        batch.add(new Collator.Example(tok.encode(cases.get(i).get("text").asText()), 0));
      }
      Collator.Batch b = new Collator(50256, 1024, false).collate(batch);
      assertThat(b.inputs()).isDeepEqualTo(inputs);
      assertThat(b.targets()).isDeepEqualTo(targets);
      // truncation keeps the first maxLength positions of both
      Collator.Batch cut = new Collator(50256, 10, false).collate(batch);
      assertThat(cut.inputs()[1]).containsExactly(java.util.Arrays.copyOf(inputs[1], 10));
      assertThat(cut.targets()[1]).containsExactly(java.util.Arrays.copyOf(targets[1], 10));
    }
  }
}
