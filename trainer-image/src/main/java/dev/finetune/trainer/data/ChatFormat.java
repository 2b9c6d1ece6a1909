package dev.finetune.trainer.data;

import dev.finetune.api.DatasetSpec;
import dev.finetune.api.DatasetSpec.TrainOn;
import dev.finetune.trainer.BadDataException;
import dev.finetune.trainer.BadJobException;
import dev.finetune.trainer.TextFiles;
import dev.finetune.trainer.Volumes;
import dev.finetune.trainer.model.TextTokenizer;
import dev.finetune.trainer.model.TokenizerConfig;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.regex.Pattern;

/**
 * promptStyle chat: each record rendered with the model's chat template and tokenized as transformers'
 * apply_chat_template does (no tokens put in front, special-token text as one id). The loss trains, as
 * spec.dataset.trainOn says, the tokens of each assistant turn: where the template marks them with
 * {@code {% generation %}}, those blocks; otherwise what the template writes for assistant message i after
 * {@code render(messages[:i], add_generation_prompt=True)}, up to and including the end-of-turn token that closes it
 * (the last of the model's end tokens in that turn). An instruction record is one user turn (instruction, a blank
 * line, input) and one assistant turn (output).
 */
public final class ChatFormat implements PromptFormat {
  private static final Pattern GENERATION_TAG = Pattern.compile("\\{%-?\\s*generation\\s*-?%}");

  private final ChatTemplate template;
  private final TextTokenizer tokenizer;
  private final TrainOn trainOn;
  private final boolean generationMarkers;
  /** The text of each end token (end of text, end of turn): what closes an assistant turn. */
  private final List<String> endOfTurn;

  ChatFormat(String template, Map<String, String> specialTokens, long[] stopTokens, TextTokenizer tokenizer,
      TrainOn trainOn) {
    this.template = ChatTemplate.of(template, specialTokens);
    this.tokenizer = tokenizer;
    this.trainOn = trainOn == null ? TrainOn.ASSISTANT_TURNS : trainOn;
    this.generationMarkers = GENERATION_TAG.matcher(template).find();
    Set<String> ends = new LinkedHashSet<>();
    for (long id : stopTokens) {
      ends.add(tokenizer.decode(new long[] {id}));
    }
    if (specialTokens.containsKey("eos_token")) {
      ends.add(specialTokens.get("eos_token"));
    }
    ends.remove("");
    this.endOfTurn = List.copyOf(ends);
  }

  static ChatFormat of(DatasetSpec ds, TextTokenizer tokenizer, TokenizerConfig config) {
    String t = config.chatTemplate().orElseThrow(() -> new BadJobException("promptStyle chat needs a chat template, and"
        + " the model has none (no chat_template.jinja, no chat_template in tokenizer_config.json): give one in"
        + " spec.dataset.chatTemplate (template: the Jinja text, or path: a file), or use an instruct model"));
    return new ChatFormat(t, config.specialTokens(), config.stopTokens(), tokenizer, ds.trainOn);
  }

  /** spec.dataset.trainOn as a job writes it, the default when it is not set. */
  public static String trainOn(DatasetSpec ds) {
    return ds.trainOn == null ? "assistantTurns" : switch (ds.trainOn) {
      case ASSISTANT_TURNS -> "assistantTurns";
      case LAST_ASSISTANT_TURN -> "lastAssistantTurn";
      case ALL_TOKENS -> "allTokens";
    };
  }

  /**
   * spec.dataset.chatTemplate: the inline text, or the file (on the dataset volume when a claim is named, else next
   * to the job file); empty when the job gives none.
   */
  public static Optional<String> jobTemplate(DatasetSpec ds, Path jobDir) throws IOException {
    if (ds.chatTemplate == null) {
      return Optional.empty();
    }
    if (ds.chatTemplate.template != null) {
      return Optional.of(ds.chatTemplate.template);
    }
    Path file = Volumes.data(ds.chatTemplate.path, ds.claimName, jobDir);
    if (!Files.isRegularFile(file)) {
      throw new BadJobException("spec.dataset.chatTemplate.path: " + file + " does not exist; give the file that holds"
          + " the Jinja chat template" + (ds.claimName == null ? " (relative to the job file)" : " (in the dataset volume)"));
    }
    return Optional.of(TextFiles.utf8(file));
  }

  @Override
  public Collator.Example example(Record r) {
    List<Map<String, Object>> messages = messages(r);
    ChatTemplate.Rendered whole = render(messages, false, r);
    String text = whole.text();
    if (text.isEmpty()) {
      throw new BadDataException(r.where() + ": the chat template renders the conversation as no text at all");
    }
    List<int[]> spans = switch (trainOn) {
      case ALL_TOKENS -> List.of(new int[] {0, text.length()});
      case ASSISTANT_TURNS -> assistantSpans(messages, whole, r, false);
      case LAST_ASSISTANT_TURN -> assistantSpans(messages, whole, r, true);
    };
    TextTokenizer.Encoded e = tokenizer.encodeRendered(text);
    boolean[] trained = new boolean[e.ids().length];
    for (int k = 0; k < trained.length; k++) {
      for (int[] s : spans) {
        // a token trains when its text overlaps the span (a zero-width one when it sits inside it)
        int start = e.starts()[k];
        int end = Math.max(e.ends()[k], start + 1);
        if (start < s[1] && end > s[0]) {
          trained[k] = true;
          break;
        }
      }
    }
    return Collator.Example.chat(e.ids(), trained);
  }

  /**
   * [start, end) of each assistant turn in {@code whole}, or of the last one only: the template's generation blocks,
   * else the prefix rule (see the class comment), checked against the whole render so that the offsets hold in it.
   */
  List<int[]> assistantSpans(List<Map<String, Object>> messages, ChatTemplate.Rendered whole, Record r,
      boolean lastOnly) {
    if (generationMarkers) {
      List<int[]> all = whole.generationSpans();
      return lastOnly && !all.isEmpty() ? all.subList(all.size() - 1, all.size()) : all;
    }
    String text = whole.text();
    List<int[]> spans = new ArrayList<>();
    // the last turn alone needs no render of the turns before it
    for (int i = lastOnly ? Math.max(0, Record.lastAssistant(messages)) : 0; i < messages.size(); i++) {
      if (!"assistant".equals(messages.get(i).get("role"))) {
        continue;
      }
      String before = render(messages.subList(0, i), true, r).text();
      String upTo = i == messages.size() - 1 ? text : render(messages.subList(0, i + 1), false, r).text();
      if (!upTo.startsWith(before) || !text.startsWith(before)) {
        throw inconsistent(r, i);
      }
      String turn = upTo.substring(before.length());
      int end = turn.stripTrailing().length();
      int closing = -1;
      for (String eot : endOfTurn) {
        int k = turn.lastIndexOf(eot);
        if (k >= 0 && k + eot.length() > closing) {
          closing = k + eot.length();
        }
      }
      if (closing >= 0) {
        end = closing;
      }
      if (!text.startsWith(upTo.substring(0, before.length() + end))) {
        throw inconsistent(r, i);
      }
      spans.add(new int[] {before.length(), before.length() + end});
    }
    return spans;
  }

  private static BadDataException inconsistent(Record r, int i) {
    return new BadDataException(r.where() + ": the chat template writes the conversation before messages[" + i + "]"
        + " (an assistant turn) differently on its own than inside the whole conversation, so which tokens are the"
        + " assistant's cannot be told; give a template that marks them with {% generation %} (spec.dataset.chatTemplate)"
        + " or train on every token (spec.dataset.trainOn: allTokens)");
  }

  @Override
  public String prompt(Record r) {
    List<Map<String, Object>> context = r.isConversation() ? r.context() : messages(r).subList(0, 1);
    return render(context, true, r).text();
  }

  @Override
  public long[] promptIds(Record r) {
    return tokenizer.encodeRendered(prompt(r)).ids();
  }

  /** A conversation's messages; an instruction record as one user and one assistant message. */
  static List<Map<String, Object>> messages(Record r) {
    if (r.isConversation()) {
      return r.messages();
    }
    String user = r.input() == null || r.input().isEmpty() ? r.instruction() : r.instruction() + "\n\n" + r.input();
    return List.of(Map.of("role", "user", "content", user), Map.of("role", "assistant", "content", r.output()));
  }

  private ChatTemplate.Rendered render(List<Map<String, Object>> messages, boolean addGenerationPrompt, Record r) {
    try {
      return template.render(messages, addGenerationPrompt, Map.of());
    } catch (ChatTemplate.TemplateException e) {
      throw new BadDataException(r.where() + ": the chat template refused the conversation: " + e.getMessage());
    }
  }
}
