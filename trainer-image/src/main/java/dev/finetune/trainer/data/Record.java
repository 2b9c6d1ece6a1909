package dev.finetune.trainer.data;

import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * One training record: an instruction example ({@code input} is empty when the task has none), or a conversation
 * ({@code messages}, each with a role and content as the chat template reads them; null for instruction records).
 * For a conversation, {@code output} is the last assistant message's content (what a test record is asked to
 * answer) and {@code instruction} the user message before it. {@code source} says where it was read
 * ("data.jsonl line 57"), null for generated records; it is not part of the record's value (equals).
 */
public record Record(String instruction, String input, String output, String source, List<Map<String, Object>> messages) {
  public Record(String instruction, String input, String output) {
    this(instruction, input, output, null, null);
  }

  public Record(String instruction, String input, String output, String source) {
    this(instruction, input, output, source, null);
  }

  /** A conversation read from {@code source}; it holds at least one assistant message. */
  public static Record conversation(List<Map<String, Object>> messages, String source) {
    int last = lastAssistant(messages);
    String user = "";
    for (int i = last - 1; i >= 0; i--) {
      if ("user".equals(messages.get(i).get("role"))) {
        user = text(messages.get(i).get("content"));
        break;
      }
    }
    return new Record(user, "", text(messages.get(last).get("content")), source, List.copyOf(messages));
  }

  public boolean isConversation() {
    return messages != null;
  }

  /** The index of the last assistant message, -1 when there is none. */
  static int lastAssistant(List<Map<String, Object>> messages) {
    for (int i = messages.size() - 1; i >= 0; i--) {
      if ("assistant".equals(messages.get(i).get("role"))) {
        return i;
      }
    }
    return -1;
  }

  /** What a test record is asked: the conversation before its last assistant message. */
  public List<Map<String, Object>> context() {
    return messages.subList(0, lastAssistant(messages));
  }

  private static String text(Object content) {
    return content instanceof String s ? s : "";
  }

  /** Where the record is, for messages: its source, else its instruction. */
  public String where() {
    return source != null ? source : "record \"" + (instruction.length() > 40 ? instruction.substring(0, 40) + "..." : instruction) + "\"";
  }

  @Override
  public boolean equals(Object o) {
    return o instanceof Record r && instruction.equals(r.instruction) && input.equals(r.input) && output.equals(r.output)
        && Objects.equals(messages, r.messages);
  }

  @Override
  public int hashCode() {
    return Objects.hash(instruction, input, output, messages);
  }
}
