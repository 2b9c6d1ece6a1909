package dev.finetune.trainer.model;

import static org.assertj.core.api.Assertions.assertThat;

import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The scratch models' byte-level tokenizer is written as a standard tokenizer.json: HuggingFace tokenizers (the
 * Rust library, here through DJL's binding; transformers' fast tokenizers are the same) loads it and gives the
 * same ids, and the trainer reads it back as its own byte tokenizer.
 */
class ScratchTokenizerTest {
  static final List<String> TEXTS = List.of("<|User|>\nReverse the word.\nstone\n\n<|Assistant|>\nenots",
      "  two  spaces, tabs\tand\r\nCRLF", "caf\u00e9 \u2615 \u00fcber na\u00efve", "12 + 30 = 42", "");

  @Test
  void huggingFaceTokenizersLoadItAndAgreeOnEveryByte(@TempDir Path dir) throws Exception {
    ByteTokenizer bytes = new ByteTokenizer();
    bytes.save(dir);
    try (HuggingFaceTokenizer hf = HuggingFaceTokenizer.newInstance(dir.resolve("tokenizer.json"),
        Map.of("addSpecialTokens", "false", "truncation", "false", "padding", "false"))) {
      for (String text : TEXTS) {
        long[] ours = bytes.encode(text);
        assertThat(hf.encode(text, false, false).getIds()).as(text).containsExactly(ours);
        assertThat(hf.decode(ours, false)).as(text).isEqualTo(text);
      }
      StringBuilder all = new StringBuilder();
      for (int b = 0; b < 128; b++) {
        all.append((char) b);
      }
      assertThat(hf.encode(all.toString(), false, false).getIds()).containsExactly(bytes.encode(all.toString()));
      assertThat(hf.encode("<|endoftext|>", false, false).getIds()).containsExactly(ByteTokenizer.END_OF_TEXT);
    }
    try (TextTokenizer back = TextTokenizer.load(dir.resolve("tokenizer.json"), ByteTokenizer.END_OF_TEXT)) {
      assertThat(back).isInstanceOf(ByteTokenizer.class);
    }
    assertThat(dir.resolve("tokenizer_config.json")).content().contains("\"eos_token\": \"<|endoftext|>\"");
  }
}
