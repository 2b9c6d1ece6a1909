package dev.finetune.trainer.data;

import com.fasterxml.jackson.core.type.TypeReference;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.finetune.api.DatasetSpec.TrainOn;
import dev.finetune.trainer.model.TextTokenizer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * bench/chat-bench.sh: the time to render N conversations with SmolLM2-Instruct's chat template, to tokenize them,
 * and to make the training examples (render, the prefix renders that find the assistant's turns, tokenize, labels).
 * Usage: ChatBench N CHATS.jsonl TEMPLATE_DIR (chat_template.jinja, special_tokens.json, tokenizer.json).
 */
public final class ChatBench {
  private ChatBench() {}

  public static void main(String[] args) throws Exception {
    int n = Integer.parseInt(args[0]);
    Path dir = Path.of(args[2]);
    ObjectMapper json = new ObjectMapper();
    List<List<Map<String, Object>>> distinct = new ArrayList<>();
    for (String line : Files.readAllLines(Path.of(args[1]))) {
      if (!line.isBlank()) {
        distinct.add(json.readValue(json.readTree(line).get("messages").traverse(), new TypeReference<>() {}));
      }
    }
    List<List<Map<String, Object>>> conversations = new ArrayList<>(n);
    for (int i = 0; i < n; i++) {
      conversations.add(distinct.get(i % distinct.size()));
    }
    String source = Files.readString(dir.resolve("chat_template.jinja"));
    Map<String, String> special = json.readValue(dir.resolve("special_tokens.json").toFile(), new TypeReference<>() {});
    ChatTemplate template = ChatTemplate.of(source, special);
    try (TextTokenizer tok = TextTokenizer.load(dir.resolve("tokenizer.json"), 2)) {
      ChatFormat format = new ChatFormat(source, special, new long[] {2}, tok, TrainOn.ASSISTANT_TURNS);
      for (int warm = 0; warm < Math.min(n, 2000); warm++) { // the JIT, the first time each path runs
        format.example(Record.conversation(conversations.get(warm), "warm-up"));
      }
      long t0 = System.nanoTime();
      List<String> texts = new ArrayList<>(n);
      for (List<Map<String, Object>> c : conversations) {
        texts.add(template.render(c, false, Map.of()).text());
      }
      long t1 = System.nanoTime();
      long tokens = 0;
      for (String text : texts) {
        tokens += tok.encodeRendered(text).ids().length;
      }
      long t2 = System.nanoTime();
      long trained = 0;
      for (List<Map<String, Object>> c : conversations) {
        for (boolean t : format.example(Record.conversation(c, "bench")).trained()) {
          trained += t ? 1 : 0;
        }
      }
      long t3 = System.nanoTime();
      System.out.printf(Locale.ROOT, "java render %d conversations: %.2f s%n", n, (t1 - t0) / 1e9);
      System.out.printf(Locale.ROOT, "java tokenize %d conversations (%d tokens): %.2f s%n", n, tokens, (t2 - t1) / 1e9);
      System.out.printf(Locale.ROOT, "java render and tokenize: %.2f s%n", (t2 - t0) / 1e9);
      System.out.printf(Locale.ROOT, "java training examples (render, assistant turns, tokenize, labels; %d trained"
          + " tokens): %.2f s%n", trained, (t3 - t2) / 1e9);
    }
  }
}
