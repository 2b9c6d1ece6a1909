package dev.finetune.trainer.model;

import static org.assertj.core.api.Assertions.assertThat;

import ai.djl.ndarray.NDManager;
import dev.finetune.trainer.Fixtures;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** An answer ends at any of the model's end tokens: Llama 3.1 Instruct lists three in generation_config.json. */
class GeneratorTest {

  @Test
  void anAnswerStopsAtEveryEosTokenIdOfGenerationConfig(@TempDir Path dir) throws Exception {
    String prompt = "Below is an instruction that describes a task.\n\n### Instruction:\nName a color.\n\n### Response:\n";
    long[] free;
    try (NDManager base = NDManager.newBaseManager(); Model model = Model.load(Fixtures.tinyLlama(), base)) {
      free = new Generator(model).generateTokens(prompt, 6, 0, 0, 0, true);
    }
    assertThat(free).hasSize(6);
    long third = free[2];
    assertThat(Arrays.copyOf(free, 2)).doesNotContain(third); // so the answer must end right before it
    Path model = Files.createDirectories(dir.resolve("model"));
    try (var files = Files.list(Fixtures.tinyLlama())) {
      for (Path f : files.filter(Files::isRegularFile).toList()) {
        Files.copy(f, model.resolve(f.getFileName()));
      }
    }
    Files.writeString(model.resolve("generation_config.json"), "{\"eos_token_id\": [50256, " + third + "]}");
    try (NDManager base = NDManager.newBaseManager(); Model m = Model.load(model, base)) {
      assertThat(m.tokenizerConfig().stopTokens()).containsExactly(50256, third);
      assertThat(new Generator(m).generateTokens(prompt, 6, 0, 0, 0, true)).containsExactly(free[0], free[1]);
    }
  }
}
