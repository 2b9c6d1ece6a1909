package dev.finetune.trainer;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.finetune.api.trainer.TrainerContract;
import dev.finetune.api.trainer.TrainerContract.ExitCodes;
import dev.finetune.trainer.hub.FakeHub;
import dev.finetune.trainer.hub.HubSettings;
import dev.finetune.trainer.model.TextTokenizer;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import dev.finetune.trainer.train.TrainingListener;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * promptStyle chat end to end: conversations in, the chat template saved with the trained model, answers to the
 * held-out assistant turns with their conversations; and --inspect-data on a SmolLM2-Instruct tokenizer directory,
 * whose ids and labels are transformers.js's.
 */
class ChatJobTest {
  private static final ObjectMapper JSON = new ObjectMapper();
  /** ChatML-like, ending each turn with GPT-2's end of text: a template for a base model that has none. */
  static final String TEMPLATE = """
      {% for m in messages %}<|{{ m.role }}|>
      {{ m.content }}<|endoftext|>
      {% endfor %}{% if add_generation_prompt %}<|assistant|>
      {% endif %}
      """;
  static final List<String> WORDS = List.of("cat", "dog", "sun", "map", "pen", "cup", "hat", "box", "key", "bus", "egg",
      "fox", "ink", "jam", "kit", "log", "mud", "net", "owl", "pig", "rug", "saw", "tap", "van");

  static Path chatJob(Path dir) throws Exception {
    StringBuilder data = new StringBuilder();
    for (int i = 0; i < WORDS.size(); i++) {
      List<Map<String, String>> messages = new ArrayList<>();
      if (i % 3 == 0) {
        messages.add(Map.of("role", "system", "content", "Answer with one word."));
      }
      messages.add(Map.of("role", "user", "content", "Repeat: " + WORDS.get(i)));
      messages.add(Map.of("role", "assistant", "content", WORDS.get(i)));
      data.append(JSON.writeValueAsString(Map.of("messages", messages))).append('\n');
    }
    Files.writeString(dir.resolve("chats.jsonl"), data.toString());
    Files.writeString(dir.resolve("chatml.jinja"), TEMPLATE);
    return Jobs.write(dir, """
        apiVersion: finetune.dev/v1alpha1
        kind: FineTuneJob
        metadata:
          name: chat
        spec:
          model:
            path: %s
          dataset:
            path: chats.jsonl
            promptStyle: chat
            chatTemplate:
              path: chatml.jinja
            maxLength: 64
            split: {train: 0.75, validation: 0.125, test: 0.125, shuffle: false}
          training:
            epochs: 1
            batchSize: 6
            learningRate: 0.001
          evaluation:
            maxNewTokens: 4
        """.formatted(Fixtures.tinyLlama()));
  }

  @Test
  void aChatJobTrainsSavesItsTemplateAndAnswersTheHeldOutTurns(@TempDir Path dir) throws Exception {
    Path job = chatJob(dir);
    MainTest.Errors e = new MainTest.Errors();
    assertThat(MainTest.run(e, job.toString())).as("%s", e.errors).isEqualTo(ExitCodes.SUCCEEDED);
    assertThat(e.result.outcome()).isEqualTo(TrainingListener.Outcome.COMPLETED);
    Path out = dir.resolve("runs/chat");
    // the job's template goes with the model, so that transformers, vLLM and the evaluation render as training did
    assertThat(out.resolve("best/chat_template.jinja")).hasContent(TEMPLATE);
    List<String> lines = Files.readAllLines(out.resolve(TrainerContract.RESPONSES_FILE));
    assertThat(lines).hasSize(3);
    for (int i = 0; i < lines.size(); i++) {
      JsonNode r = JSON.readTree(lines.get(i));
      String word = WORDS.get(18 + i); // train is the first 18, test the next 3
      assertThat(r.get("output").asText()).isEqualTo(word);
      assertThat(r.get("instruction").asText()).isEqualTo("Repeat: " + word);
      JsonNode messages = r.get("messages");
      assertThat(messages.get(messages.size() - 1).get("role").asText()).isEqualTo("user");
      assertThat(messages.get(messages.size() - 1).get("content").asText()).isEqualTo("Repeat: " + word);
      assertThat(r.has("model_response")).isTrue();
    }
  }

  @Test
  void inspectShowsTheAssistantTurnsAsTheLossTrainsThem(@TempDir Path dir) throws Exception {
    InspectCommandTest.Answer a = InspectCommandTest.inspect(chatJob(dir), "--inspect-data", "2", "--json");
    assertThat(a.code()).as(a.err()).isEqualTo(ExitCodes.SUCCEEDED);
    try (TextTokenizer tok = TextTokenizer.load(Fixtures.tinyLlama().resolve("tokenizer.json"), 50256)) {
      JsonNode first = JSON.readTree(a.out().lines().findFirst().orElseThrow());
      assertThat(first.get("text").asText()).isEqualTo("<|system|>\nAnswer with one word.<|endoftext|>\n<|user|>\n"
          + "Repeat: cat<|endoftext|>\n<|assistant|>\ncat<|endoftext|>\n");
      assertThat(trained(tok, first)).containsExactly("cat<|endoftext|>");
    }
    InspectCommandTest.Answer person = InspectCommandTest.inspect(dir.resolve("job.yaml"), "--inspect-data", "1");
    assertThat(person.out()).contains("promptStyle chat, trainOn assistantTurns",
        "<|user|>\nRepeat: cat<|endoftext|>\n<|assistant|>\n[[cat<|endoftext|>]]\n");
  }

  /**
   * SmolLM2-135M-Instruct's tokenizer directory (tokenizer.json, its tokenizer_config.json with the chat template and
   * special tokens; no weights): --inspect-data gives the ids of transformers.js's apply_chat_template and trains each
   * assistant message and its <|im_end|>.
   */
  @Test
  void inspectOnSmolLm2sOwnTemplateGivesTransformersJsIds(@TempDir Path dir) throws Exception {
    Path fixtures = Path.of("src/test/resources/chat/smollm2");
    Path model = Files.createDirectories(dir.resolve("smollm2"));
    Files.copy(fixtures.resolve("tokenizer.json"), model.resolve("tokenizer.json"));
    JsonNode config = JSON.readTree(Fixtures.tinyLlama().resolve("config.json").toFile());
    ((com.fasterxml.jackson.databind.node.ObjectNode) config).put("vocab_size", 49152).put("bos_token_id", 1)
        .put("eos_token_id", 2);
    Files.writeString(model.resolve("config.json"), config.toString());
    Map<String, Object> tokenizerConfig = new java.util.LinkedHashMap<>(JSON.readValue(
        fixtures.resolve("special_tokens.json").toFile(), Map.class));
    tokenizerConfig.put("chat_template", Files.readString(fixtures.resolve("chat_template.jinja")));
    Files.writeString(model.resolve("tokenizer_config.json"), JSON.writeValueAsString(tokenizerConfig));
    List<JsonNode> cases = new ArrayList<>();
    StringBuilder data = new StringBuilder();
    for (String line : Files.readAllLines(fixtures.resolve("cases.jsonl"))) {
      JsonNode c = JSON.readTree(line);
      if (!c.get("add_generation_prompt").asBoolean() && c.get("messages").get(c.get("messages").size() - 1)
          .get("role").asText().equals("assistant")) {
        cases.add(c);
        data.append(JSON.writeValueAsString(Map.of("messages", c.get("messages")))).append('\n');
      }
    }
    Files.writeString(dir.resolve("chats.jsonl"), data.toString());
    Path job = Jobs.write(dir, """
        apiVersion: finetune.dev/v1alpha1
        kind: FineTuneJob
        metadata:
          name: smol
        spec:
          model:
            path: smollm2
          dataset:
            path: chats.jsonl
            promptStyle: chat
            maxLength: 128
            truncateLongRecords: true
            split: {train: 0.9, validation: 0.1, test: 0.0, shuffle: false}
        """);
    InspectCommandTest.Answer a = InspectCommandTest.inspect(job, "--inspect-data", "100", "--json");
    assertThat(a.code()).as(a.err()).isEqualTo(ExitCodes.SUCCEEDED);
    List<String> lines = a.out().lines().toList();
    assertThat(lines).hasSize((int) (cases.size() * 0.9));
    try (TextTokenizer tok = TextTokenizer.load(fixtures.resolve("tokenizer.json"), 2)) {
      for (int i = 0; i < lines.size(); i++) {
        JsonNode seen = JSON.readTree(lines.get(i));
        JsonNode c = cases.get(i);
        long[] golden = JSON.convertValue(c.get("input_ids"), long[].class);
        long[] ids = JSON.convertValue(seen.get("input_ids"), long[].class);
        assertThat(ids).as(c.get("name").asText()).containsExactly(Arrays.copyOf(golden, Math.min(golden.length, 129)));
        List<String> spans = new ArrayList<>();
        c.get("assistant_spans").forEach(s -> spans.add(c.get("text").asText().substring(s.get(0).asInt(), s.get(1).asInt())));
        if (golden.length <= 129) { // uncut: every assistant turn trains, and nothing else
          assertThat(trained(tok, seen)).as(c.get("name").asText()).containsExactlyElementsOf(
              c.get("name").asText().equals("whitespace_edges") ? spans.stream().map(s -> "\n" + s).toList() : spans);
        }
      }
    }
  }

  /**
   * examples/smollm2-chat.yaml as written, its model from a hub that serves SmolLM2-135M-Instruct's tokenizer files
   * (no weights: --inspect-data needs none) and its ConfigMap key read next to the job file, as on a laptop.
   */
  @Test
  void theChatExampleRendersItsConversationsInSmolLm2sFormat(@TempDir Path dir) throws Exception {
    Path fixtures = Path.of("src/test/resources/chat/smollm2");
    try (FakeHub fake = new FakeHub()) {
      JsonNode config = JSON.readTree(Fixtures.tinyLlama().resolve("config.json").toFile());
      ((com.fasterxml.jackson.databind.node.ObjectNode) config).put("vocab_size", 49152).put("eos_token_id", 2);
      Map<String, Object> tokenizerConfig = new java.util.LinkedHashMap<>(JSON.readValue(
          fixtures.resolve("special_tokens.json").toFile(), Map.class));
      tokenizerConfig.put("chat_template", Files.readString(fixtures.resolve("chat_template.jinja")));
      fake.model("HuggingFaceTB/SmolLM2-135M-Instruct")
          .file("config.json", config.toString().getBytes(StandardCharsets.UTF_8))
          .file("tokenizer.json", Files.readAllBytes(fixtures.resolve("tokenizer.json")))
          .file("tokenizer_config.json", JSON.writeValueAsBytes(tokenizerConfig));
      ByteArrayOutputStream out = new ByteArrayOutputStream();
      ByteArrayOutputStream err = new ByteArrayOutputStream();
      int code = InspectCommand.run(new String[] {Path.of("../examples/smollm2-chat.yaml").toString(), "--inspect-data",
          "3", "--json"}, new PrintStream(out, true, StandardCharsets.UTF_8), new PrintStream(err, true,
          StandardCharsets.UTF_8), HubSettings.from(Map.of("HF_ENDPOINT", fake.endpoint(), "HF_HUB_CACHE",
          dir.resolve("hub").toString())));
      assertThat(code).as(err.toString(StandardCharsets.UTF_8)).isEqualTo(ExitCodes.SUCCEEDED);
      List<String> lines = out.toString(StandardCharsets.UTF_8).lines().toList();
      assertThat(lines).hasSize(3);
      try (TextTokenizer tok = TextTokenizer.load(fixtures.resolve("tokenizer.json"), 2)) {
        for (String line : lines) {
          JsonNode seen = JSON.readTree(line);
          String text = seen.get("text").asText();
          assertThat(text).startsWith("<|im_start|>system\nYou are a concise, helpful assistant.<|im_end|>\n"
              + "<|im_start|>user\n");
          List<String> turns = trained(tok, seen);
          assertThat(turns).hasSize(2).allSatisfy(t -> {
            assertThat(t).endsWith("<|im_end|>").doesNotContain("<|im_start|>");
            assertThat(text).contains("<|im_start|>assistant\n" + t + "\n");
          });
        }
      }
    }
  }

  /** The text of each run of trained labels. */
  static List<String> trained(TextTokenizer tok, JsonNode seen) {
    long[] ids = JSON.convertValue(seen.get("input_ids"), long[].class);
    long[] labels = JSON.convertValue(seen.get("labels"), long[].class);
    List<String> runs = new ArrayList<>();
    int start = -1;
    for (int j = 0; j <= ids.length; j++) {
      boolean t = j < ids.length && labels[j] != -100;
      if (t && start < 0) {
        start = j;
      } else if (!t && start >= 0) {
        runs.add(tok.decode(Arrays.copyOfRange(ids, start, j)));
        start = -1;
      }
    }
    return runs;
  }
}
