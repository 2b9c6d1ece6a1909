package dev.finetune.trainer.model;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.finetune.trainer.BadJobException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * The end-of-text id of an HF model directory. tokenizer_config.json's {@code eos_token} names the token the
 * tokenizer ends a text with (for chat models the end of a turn, e.g. Qwen2.5-Instruct's {@code <|im_end|>}, which
 * config.json may not list first); its id comes from tokenizer.json. Without it, config.json's
 * {@code eos_token_id} counts. The collation appends it to every record and pads with it, whatever the model.
 */
final class SpecialTokens {
  private static final ObjectMapper JSON = new ObjectMapper();

  private SpecialTokens() {}

  static int endOfText(Path dir, int fromConfig) throws IOException {
    Path tokenizerConfig = dir.resolve("tokenizer_config.json");
    if (!Files.isRegularFile(tokenizerConfig)) {
      return fromConfig;
    }
    JsonNode eos = JSON.readTree(tokenizerConfig.toFile()).path("eos_token");
    String content = eos.isTextual() ? eos.asText() : eos.path("content").asText(null);
    if (content == null || content.isEmpty()) {
      return fromConfig;
    }
    Integer id = idOf(JSON.readTree(dir.resolve("tokenizer.json").toFile()), content);
    if (id == null) {
      throw new BadJobException(tokenizerConfig + ": eos_token '" + content + "' is not a token of tokenizer.json");
    }
    return id;
  }

  /** A token's id: among the added (special) tokens first, then in the model's vocabulary. */
  static Integer idOf(JsonNode tokenizer, String content) {
    for (JsonNode t : tokenizer.path("added_tokens")) {
      if (content.equals(t.path("content").asText())) {
        return t.path("id").asInt();
      }
    }
    JsonNode vocab = tokenizer.path("model").path("vocab");
    return vocab.isObject() && vocab.path(content).isNumber() ? vocab.get(content).asInt() : null;
  }
}
