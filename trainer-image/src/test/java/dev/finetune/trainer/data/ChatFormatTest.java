package dev.finetune.trainer.data;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.core.type.TypeReference;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.finetune.api.DatasetSpec.TrainOn;
import dev.finetune.trainer.BadDataException;
import dev.finetune.trainer.model.ByteTokenizer;
import dev.finetune.trainer.model.TextTokenizer;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * promptStyle chat against the goldens of src/test/resources/chat (transformers.js): which text is the assistant's,
 * SmolLM2's token ids, the labels, and the generation prompt of a test record.
 */
class ChatFormatTest {
  private static final Path FIXTURES = Path.of("src/test/resources/chat");
  private static final List<String> TEMPLATES = List.of("llama3.1", "qwen2.5", "smollm2", "mistral");
  private static final ObjectMapper JSON = new ObjectMapper();

  record Case(String name, List<Map<String, Object>> messages, boolean addGenerationPrompt, String text,
      long[] inputIds, List<int[]> assistantSpans) {}

  static List<Case> cases(String template) throws IOException {
    List<Case> cases = new ArrayList<>();
    for (String line : Files.readAllLines(FIXTURES.resolve(template).resolve("cases.jsonl"))) {
      if (line.isBlank()) {
        continue;
      }
      JsonNode c = JSON.readTree(line);
      List<int[]> spans = new ArrayList<>();
      c.path("assistant_spans").forEach(s -> spans.add(new int[] {s.get(0).asInt(), s.get(1).asInt()}));
      cases.add(new Case(c.get("name").asText(), JSON.convertValue(c.get("messages"), new TypeReference<>() {}),
          c.get("add_generation_prompt").asBoolean(), c.get("text").asText(),
          c.has("input_ids") ? JSON.convertValue(c.get("input_ids"), long[].class) : null, spans));
    }
    return cases;
  }

  /** A template folder's format; the end of turn comes from its eos_token (no stop ids: no tokenizer here). */
  static ChatFormat format(String template, TextTokenizer tok, TrainOn trainOn) throws IOException {
    Map<String, String> special = JSON.readValue(FIXTURES.resolve(template).resolve("special_tokens.json").toFile(),
        new TypeReference<>() {});
    return new ChatFormat(Files.readString(FIXTURES.resolve(template).resolve("chat_template.jinja")), special,
        new long[0], tok, trainOn);
  }

  static TextTokenizer smolLm2() throws IOException {
    return TextTokenizer.load(FIXTURES.resolve("smollm2/tokenizer.json"), 2);
  }

  @Test
  void theAssistantsTextIsWhatTransformersJsMarksOnAllFourTemplates() throws IOException {
    int checked = 0;
    for (String template : TEMPLATES) {
      ChatFormat f = format(template, new ByteTokenizer(), TrainOn.ASSISTANT_TURNS);
      for (Case c : cases(template)) {
        if (c.addGenerationPrompt()) {
          continue;
        }
        Record r = Record.conversation(c.messages(), template + "/" + c.name());
        List<int[]> spans = f.assistantSpans(c.messages(), renderedWithSpecials(template, c), r, false);
        assertThat(spans).as(template + "/" + c.name()).usingRecursiveFieldByFieldElementComparator()
            .isEqualTo(c.assistantSpans());
        checked++;
      }
    }
    assertThat(checked).isEqualTo(4 * 10);
  }

  private static ChatTemplate.Rendered renderedWithSpecials(String template, Case c) throws IOException {
    Map<String, String> special = JSON.readValue(FIXTURES.resolve(template).resolve("special_tokens.json").toFile(),
        new TypeReference<>() {});
    ChatTemplate.Rendered r = ChatTemplate.of(Files.readString(FIXTURES.resolve(template).resolve("chat_template.jinja")),
        special).render(c.messages(), false, Map.of());
    assertThat(r.text()).isEqualTo(c.text());
    return r;
  }

  @Test
  void smolLm2TokenIdsAndLabelsAreTransformersJs() throws IOException {
    try (TextTokenizer tok = smolLm2()) {
      ChatFormat f = format("smollm2", tok, TrainOn.ASSISTANT_TURNS);
      Collator collator = new Collator(2, 4096, false);
      for (Case c : cases("smollm2")) {
        assertThat(tok.encodeRendered(c.text()).ids()).as(c.name()).containsExactly(c.inputIds());
        if (c.addGenerationPrompt()) {
          continue;
        }
        Collator.Example e = f.example(Record.conversation(c.messages(), c.name()));
        assertThat(e.tokens()).as(c.name()).containsExactly(c.inputIds());
        // the trained tokens, run by run, are the assistant spans' text: content and <|im_end|>. Where one token
        // straddles the span's start (whitespace_edges: "\n  " joins the generation prompt's newline to the answer's
        // leading spaces) it trains, as transformers' char_to_token(start) marks it too.
        Collator.Labelled l = collator.labelled(e);
        List<String> trained = runs(tok, l);
        String straddled = c.name().equals("whitespace_edges") ? "\n" : "";
        assertThat(trained).as(c.name()).containsExactlyElementsOf(
            c.assistantSpans().stream().map(s -> straddled + c.text().substring(s[0], s[1])).toList());
        assertThat(trained).allMatch(t -> t.endsWith("<|im_end|>"));
      }
    }
  }

  /** The decoded runs of trained labels. */
  static List<String> runs(TextTokenizer tok, Collator.Labelled l) {
    List<String> runs = new ArrayList<>();
    int start = -1;
    for (int j = 0; j <= l.ids().length; j++) {
      boolean trained = j < l.ids().length && l.labels()[j] != Collator.IGNORE;
      if (trained && start < 0) {
        start = j;
      } else if (!trained && start >= 0) {
        runs.add(tok.decode(Arrays.copyOfRange(l.ids(), start, j)));
        start = -1;
      }
    }
    return runs;
  }

  @Test
  void trainOnChoosesTheLastTurnOrEveryToken() throws IOException {
    try (TextTokenizer tok = smolLm2()) {
      Case c = cases("smollm2").stream().filter(x -> x.name().equals("multi_turn_3_pairs")).findFirst().orElseThrow();
      Record r = Record.conversation(c.messages(), "multi");
      Collator collator = new Collator(2, 4096, false);
      assertThat(runs(tok, collator.labelled(format("smollm2", tok, TrainOn.LAST_ASSISTANT_TURN).example(r))))
          .containsExactly(c.messages().get(5).get("content") + "<|im_end|>");
      Collator.Labelled all = collator.labelled(format("smollm2", tok, TrainOn.ALL_TOKENS).example(r));
      assertThat(all.labels()[0]).isEqualTo(Collator.IGNORE); // nothing predicts the first token
      assertThat(Arrays.copyOfRange(all.labels(), 1, all.labels().length))
          .containsExactly(Arrays.copyOfRange(all.ids(), 1, all.ids().length));
      assertThat(runs(tok, collator.labelled(format("smollm2", tok, null).example(r)))).hasSize(3);
    }
  }

  @Test
  void aTestRecordIsAskedItsConversationWithTheGenerationPrompt() throws IOException {
    for (String template : TEMPLATES) {
      ChatFormat f = format(template, new ByteTokenizer(), null);
      Case whole = cases(template).stream().filter(x -> x.name().equals("multi_turn_3_pairs_with_system")).findFirst()
          .orElseThrow();
      Case asked = cases(template).stream().filter(x -> x.name().equals("generation_prompt_multi_turn_with_system"))
          .findFirst().orElseThrow();
      Record r = Record.conversation(whole.messages(), "r");
      assertThat(f.prompt(r)).as(template).isEqualTo(asked.text());
      assertThat(r.output()).isEqualTo(whole.messages().get(6).get("content"));
      assertThat(r.instruction()).isEqualTo(whole.messages().get(5).get("content"));
    }
  }

  @Test
  void anInstructionRecordIsOneUserAndOneAssistantTurn() throws IOException {
    try (TextTokenizer tok = smolLm2()) {
      ChatFormat f = format("smollm2", tok, null);
      Record r = new Record("Add the numbers.", "2 and 3", "5", "data.jsonl line 1");
      Collator.Example e = f.example(r);
      assertThat(tok.decode(e.tokens())).isEqualTo("<|im_start|>system\nYou are a helpful AI assistant named SmolLM,"
          + " trained by Hugging Face<|im_end|>\n<|im_start|>user\nAdd the numbers.\n\n2 and 3<|im_end|>\n"
          + "<|im_start|>assistant\n5<|im_end|>\n");
      assertThat(runs(tok, new Collator(2, 4096, false).labelled(e))).containsExactly("5<|im_end|>");
      assertThat(f.prompt(r)).endsWith("<|im_start|>user\nAdd the numbers.\n\n2 and 3<|im_end|>\n<|im_start|>assistant\n");
    }
  }

  @Test
  void generationBlocksDecideWhereTheTemplateHasThem() {
    String template = "{% for m in messages %}{% if m.role == 'assistant' %}A: {% generation %}{{ m.content }}!"
        + "{% endgeneration %}\n{% else %}U: {{ m.content }}\n{% endif %}{% endfor %}";
    ChatFormat f = new ChatFormat(template, Map.of(), new long[] {ByteTokenizer.END_OF_TEXT}, new ByteTokenizer(), null);
    Collator.Example e = f.example(Record.conversation(List.of(Map.of("role", "user", "content", "hi"),
        Map.of("role", "assistant", "content", "yo")), "r"));
    assertThat(runs(new ByteTokenizer(), new Collator(ByteTokenizer.END_OF_TEXT, 100, false).labelled(e)))
        .containsExactly("yo!");
  }

  @Test
  void aTemplateThatRaisesOrRendersTurnsInconsistentlyNamesTheRecord() {
    String raising = "{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('System role not supported') }}"
        + "{% endif %}{{ m.content }}{% endfor %}";
    ChatFormat f = new ChatFormat(raising, Map.of(), new long[0], new ByteTokenizer(), null);
    Record system = Record.conversation(List.of(Map.of("role", "system", "content", "s"),
        Map.of("role", "user", "content", "u"), Map.of("role", "assistant", "content", "a")), "chats.jsonl line 4");
    assertThatThrownBy(() -> f.example(system)).isInstanceOf(BadDataException.class)
        .hasMessage("chats.jsonl line 4: the chat template refused the conversation: System role not supported");

    // writes the number of messages first: the render of a prefix is not the start of the whole
    String counting = "{{ messages | length }}{% for m in messages %}|{{ m.content }}{% endfor %}";
    ChatFormat g = new ChatFormat(counting, Map.of(), new long[0], new ByteTokenizer(), null);
    Record r = Record.conversation(List.of(Map.of("role", "user", "content", "u"),
        Map.of("role", "assistant", "content", "a")), "chats.jsonl line 9");
    assertThatThrownBy(() -> g.example(r)).isInstanceOf(BadDataException.class)
        .hasMessageStartingWith("chats.jsonl line 9: the chat template writes the conversation before messages[1]")
        .hasMessageContaining("{% generation %}").hasMessageContaining("trainOn: allTokens");
    assertThat(new ChatFormat(counting, Map.of(), new long[0], new ByteTokenizer(), TrainOn.ALL_TOKENS).example(r)
        .tokens()).hasSize("2|u|a".length());
  }

  @Test
  void aChatBatchAppendsNothingAndPadsWithIgnoredTargets() {
    Collator collator = new Collator(9, 100, true); // maskPrompt is the instruction styles' business: no effect here
    Collator.Example longer = Collator.Example.chat(new long[] {1, 2, 3, 4, 9}, new boolean[] {false, false, true, true, true});
    Collator.Example shorter = Collator.Example.chat(new long[] {1, 5, 9}, new boolean[] {false, true, true});
    Collator.Batch b = collator.collate(List.of(longer, shorter));
    assertThat(b.inputs()).isDeepEqualTo(new long[][] {{1, 2, 3, 4}, {1, 5, 9, 9}});
    assertThat(b.targets()).isDeepEqualTo(new long[][] {{-100, 3, 4, 9}, {5, 9, -100, -100}});
    assertThat(b.tokens()).isEqualTo(4 + 2);
    assertThat(new Collator(9, 2, false).collate(List.of(longer)).targets()).isDeepEqualTo(new long[][] {{-100, 3}});
  }
}
