package dev.finetune.trainer.model;

import static org.assertj.core.api.Assertions.assertThat;

import ai.djl.ndarray.NDManager;
import dev.finetune.api.ScratchModelSpec;
import dev.finetune.trainer.Fixtures;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** Decoding with the KV cache gives exactly the tokens of decoding without it (the whole sequence every token). */
class KvCacheTest {

  @Test
  void sameGreedyTokensOnTinyGpt2() throws Exception {
    try (NDManager base = NDManager.newBaseManager(); Model model = Model.load(Fixtures.tinyGpt2(), base)) {
      Generator generator = new Generator(model);
      for (String prompt : new String[] {"Below is an instruction that describes a task.\n\n### Instruction:\nName a"
          + " color.\n\n### Response:\n", "x"}) {
        long[] reference = generator.generateTokens(prompt, 24, 0, 0, 0, false);
        long[] cached = generator.generateTokens(prompt, 24, 0, 0, 0, true);
        assertThat(cached).as("tokens after %s", prompt).containsExactly(reference);
        assertThat(reference).as("a continuation to compare").isNotEmpty();
      }
    }
  }

  @ParameterizedTest
  @ValueSource(strings = {"tiny-llama", "tiny-qwen2"})
  void sameGreedyTokensOnTheLlamaFamily(String name) throws Exception {
    try (NDManager base = NDManager.newBaseManager(); Model model = Model.load(Fixtures.fixture(name), base)) {
      Generator generator = new Generator(model);
      String prompt = "Below is an instruction that describes a task.\n\n### Instruction:\nName a color.\n\n### Response:\n";
      long[] reference = generator.generateTokens(prompt, 24, 0, 0, 0, false);
      assertThat(reference).as("a continuation to compare").isNotEmpty();
      assertThat(generator.generateTokens(prompt, 24, 0, 0, 0, true)).containsExactly(reference);
      assertThat(generator.generateTokens(prompt, 16, 0.8, 5, 42, true))
          .containsExactly(generator.generateTokens(prompt, 16, 0.8, 5, 42, false));
    }
  }

  @Test
  void sameTokensOnAScratchModelAlsoOnceTheTextOutgrowsTheContext() {
    ScratchModelSpec shape = new ScratchModelSpec();
    shape.layers = 2;
    shape.embeddingDim = 32;
    shape.heads = 4;
    shape.contextLength = 24;
    shape.seed = 9L;
    try (NDManager base = NDManager.newBaseManager(); Model model = Model.scratch(shape, base)) {
      Generator generator = new Generator(model);
      String prompt = "Reverse: abc";
      long[] reference = generator.generateTokens(prompt, 40, 0, 0, 0, false);
      long[] cached = generator.generateTokens(prompt, 40, 0, 0, 0, true);
      assertThat(cached).containsExactly(reference);
      // the window slid: more tokens than fit in the context after the prompt
      assertThat(model.tokenizer().encode(prompt).length + reference.length).isGreaterThan(shape.contextLength);
      // sampling draws from the same distributions too
      assertThat(generator.generateTokens(prompt, 20, 0.8, 5, 42, true))
          .containsExactly(generator.generateTokens(prompt, 20, 0.8, 5, 42, false));
    }
  }
}
