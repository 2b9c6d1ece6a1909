package dev.finetune.trainer.model;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.finetune.trainer.BadJobException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.Map;
import java.util.Optional;
import java.util.Set;

/**
 * What a model directory says about its text besides the vocabulary: the special tokens a chat template sees, the
 * chat template, and the ids that end an answer. {@code stopTokens} holds the end-of-text id first, then every
 * {@code eos_token_id} of config.json and generation_config.json (a list in Llama 3.1 Instruct: end of text, end of
 * message and end of turn).
 */
public record TokenizerConfig(Map<String, String> specialTokens, Optional<String> chatTemplate, long[] stopTokens) {
  private static final ObjectMapper JSON = new ObjectMapper();
  /** The tokenizer_config.json entries transformers hands a chat template as variables (SPECIAL_TOKENS_ATTRIBUTES). */
  static final String[] TEMPLATE_TOKENS = {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
      "mask_token"};

  /** A model without these files (the scratch GPT-2): no template, its end of text ends an answer. */
  static TokenizerConfig none(long endOfText) {
    return new TokenizerConfig(Map.of(), Optional.empty(), new long[] {endOfText});
  }

  static TokenizerConfig read(Path dir, long endOfText) throws IOException {
    Map<String, String> special = new LinkedHashMap<>();
    Path config = dir.resolve("tokenizer_config.json");
    if (Files.isRegularFile(config)) {
      JsonNode c = JSON.readTree(config.toFile());
      for (String name : TEMPLATE_TOKENS) {
        String content = content(c.path(name));
        if (content != null) {
          special.put(name, content);
        }
      }
    }
    Set<Long> stops = new LinkedHashSet<>();
    stops.add(endOfText);
    for (String f : new String[] {"config.json", "generation_config.json"}) {
      if (Files.isRegularFile(dir.resolve(f))) {
        JsonNode eos = JSON.readTree(dir.resolve(f).toFile()).path("eos_token_id");
        for (JsonNode id : eos.isArray() ? eos : java.util.List.of(eos)) {
          if (id.canConvertToLong()) {
            stops.add(id.asLong());
          }
        }
      }
    }
    return new TokenizerConfig(Map.copyOf(special), chatTemplate(dir),
        stops.stream().mapToLong(Long::longValue).toArray());
  }

  /** The same, with the chat template a job gives instead of the directory's. */
  public TokenizerConfig withChatTemplate(String template) {
    return new TokenizerConfig(specialTokens, Optional.of(template), stopTokens);
  }

  /** A special token as tokenizer_config.json writes it: a string, or an AddedToken object with its content. */
  private static String content(JsonNode token) {
    String content = token.isTextual() ? token.asText() : token.path("content").asText(null);
    return content == null || content.isEmpty() ? null : content;
  }

  /**
   * The model's chat template: chat_template.jinja (which transformers prefers), else tokenizer_config.json's
   * chat_template, a string or a list of named templates of which transformers takes "default".
   */
  static Optional<String> chatTemplate(Path dir) throws IOException {
    Path jinja = dir.resolve("chat_template.jinja");
    if (Files.isRegularFile(jinja)) {
      return Optional.of(Files.readString(jinja));
    }
    Path config = dir.resolve("tokenizer_config.json");
    if (!Files.isRegularFile(config)) {
      return Optional.empty();
    }
    JsonNode t = JSON.readTree(config.toFile()).path("chat_template");
    if (t.isTextual()) {
      return Optional.of(t.asText());
    }
    for (JsonNode named : t) {
      if ("default".equals(named.path("name").asText())) {
        return Optional.of(named.path("template").asText());
      }
    }
    return Optional.empty();
  }

  /**
   * The end-of-text id of an HF model directory. tokenizer_config.json's {@code eos_token} names the token the
   * tokenizer ends a text with (for chat models the end of a turn, e.g. Qwen2.5-Instruct's {@code <|im_end|>}, which
   * config.json may not list first); its id comes from tokenizer.json. Without it, config.json's
   * {@code eos_token_id} counts. The collation appends it to every instruction record and pads with it, whatever the
   * model.
   */
  static int endOfText(Path dir, int fromConfig) throws IOException {
    Path tokenizerConfig = dir.resolve("tokenizer_config.json");
    if (!Files.isRegularFile(tokenizerConfig)) {
      return fromConfig;
    }
    String content = content(JSON.readTree(tokenizerConfig.toFile()).path("eos_token"));
    if (content == null) {
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
