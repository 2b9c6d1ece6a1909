package dev.finetune.trainer.data;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.core.type.TypeReference;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicContainer;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;

/**
 * Renders every case of every fixture folder under src/test/resources/chat/ (chat_template.jinja,
 * special_tokens.json, cases.jsonl; see SOURCES.md there) and asserts the exact text, or that an error case raises
 * with its message. One dynamic test per case, grouped by template.
 */
class ChatTemplateParityTest {

  private static final Path FIXTURES = Path.of("src/test/resources/chat");
  private static final ObjectMapper JSON = new ObjectMapper();

  @TestFactory
  Stream<DynamicContainer> everyFixtureCaseRendersIdentically() throws IOException {
    List<Path> folders;
    try (Stream<Path> list = Files.list(FIXTURES)) {
      folders = list.filter(p -> Files.isRegularFile(p.resolve("cases.jsonl"))).sorted().toList();
    }
    assertThat(folders).as("fixture folders under " + FIXTURES).isNotEmpty();
    List<DynamicContainer> templates = new ArrayList<>();
    for (Path folder : folders) {
      ChatTemplate template = ChatTemplate.of(Files.readString(folder.resolve("chat_template.jinja")),
          JSON.readValue(folder.resolve("special_tokens.json").toFile(), new TypeReference<Map<String, String>>() {}));
      List<DynamicTest> cases = new ArrayList<>();
      List<String> lines = Files.readAllLines(folder.resolve("cases.jsonl"));
      for (int i = 0; i < lines.size(); i++) {
        if (lines.get(i).isBlank()) {
          continue;
        }
        JsonNode c = JSON.readTree(lines.get(i));
        String where = folder.getFileName() + "/cases.jsonl:" + (i + 1) + " " + c.path("name").asText();
        cases.add(DynamicTest.dynamicTest(c.path("name").asText(), () -> check(template, c, where)));
      }
      assertThat(cases).as(folder + "/cases.jsonl").isNotEmpty();
      templates.add(DynamicContainer.dynamicContainer(folder.getFileName().toString(), cases));
    }
    return templates.stream();
  }

  private static void check(ChatTemplate template, JsonNode c, String where) {
    List<Map<String, Object>> messages = JSON.convertValue(c.get("messages"), new TypeReference<>() {});
    boolean addGenerationPrompt = c.path("add_generation_prompt").asBoolean(false);
    if (c.has("error")) {
      assertThatThrownBy(() -> template.render(messages, addGenerationPrompt, Map.of()))
          .as(where)
          .isInstanceOf(ChatTemplate.TemplateException.class)
          .hasMessageContaining(c.get("error").asText());
    } else {
      assertThat(template.render(messages, addGenerationPrompt, Map.of()).text())
          .as(where)
          .isEqualTo(c.get("text").asText());
    }
  }
}
