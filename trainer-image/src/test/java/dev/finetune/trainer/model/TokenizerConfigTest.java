package dev.finetune.trainer.model;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TokenizerConfigTest {

  @Test
  void theChatTemplateIsTheJinjaFileElseTokenizerConfigs(@TempDir Path dir) throws Exception {
    assertThat(TokenizerConfig.chatTemplate(dir)).isEmpty();

    Files.writeString(dir.resolve("tokenizer_config.json"), "{\"chat_template\": \"{{ bos_token }}\\n{% x %}\"}");
    assertThat(TokenizerConfig.chatTemplate(dir)).contains("{{ bos_token }}\n{% x %}");

    Files.writeString(dir.resolve("tokenizer_config.json"), "{\"chat_template\": [{\"name\": \"tool_use\", "
        + "\"template\": \"T\"}, {\"name\": \"default\", \"template\": \"D\"}]}");
    assertThat(TokenizerConfig.chatTemplate(dir)).contains("D");

    Files.writeString(dir.resolve("tokenizer_config.json"), "{\"bos_token\": \"<s>\"}");
    assertThat(TokenizerConfig.chatTemplate(dir)).isEmpty();

    Files.writeString(dir.resolve("chat_template.jinja"), "J\n");
    assertThat(TokenizerConfig.chatTemplate(dir)).contains("J\n"); // the .jinja file wins
  }

  @Test
  void specialTokensAndEveryEndOfAnswer(@TempDir Path dir) throws Exception {
    // Llama 3.1 Instruct's shape: an AddedToken object, and eos_token_id lists in both configs
    Files.writeString(dir.resolve("tokenizer_config.json"), "{\"bos_token\": \"<|begin_of_text|>\", \"eos_token\":"
        + " {\"content\": \"<|eot_id|>\", \"special\": true}, \"pad_token\": null}");
    Files.writeString(dir.resolve("config.json"), "{\"eos_token_id\": 128001}");
    Files.writeString(dir.resolve("generation_config.json"), "{\"eos_token_id\": [128001, 128008, 128009]}");
    TokenizerConfig c = TokenizerConfig.read(dir, 128009);
    assertThat(c.specialTokens()).containsOnly(java.util.Map.entry("bos_token", "<|begin_of_text|>"),
        java.util.Map.entry("eos_token", "<|eot_id|>"));
    assertThat(c.stopTokens()).containsExactly(128009, 128001, 128008);
    assertThat(c.chatTemplate()).isEmpty();
    assertThat(c.withChatTemplate("T").chatTemplate()).contains("T");
  }
}
