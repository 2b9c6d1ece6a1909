package dev.finetune.trainer.data;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * A record's conversation in either common shape, as the chat template reads it: OpenAI's {@code messages}
 * ({@code [{role, content}]}, other keys such as tool_calls kept) or ShareGPT's {@code conversations}
 * ({@code [{from, value}]}, whose human / gpt / system become user / assistant / system).
 */
final class Conversations {
  private static final ObjectMapper JSON = new ObjectMapper();
  /** ShareGPT's speakers and the roles chat templates know them by. */
  static final Map<String, String> SHAREGPT_ROLES = Map.of("human", "user", "user", "user", "gpt", "assistant",
      "assistant", "assistant", "system", "system", "tool", "tool", "observation", "tool");

  private Conversations() {}

  /** The messages of {@code field} (named so in problems), or empty after adding what is wrong to {@code problems}. */
  static Optional<List<Map<String, Object>>> read(JsonNode list, String field, String where, List<String> problems) {
    if (list == null || !list.isArray() || list.isEmpty()) {
      problems.add(where + ": field '" + field + "' must be a non-empty list of messages ([{\"role\": \"user\","
          + " \"content\": \"...\"}, {\"role\": \"assistant\", ...}]), not " + describe(list));
      return Optional.empty();
    }
    List<Map<String, Object>> messages = new ArrayList<>();
    int before = problems.size();
    for (int i = 0; i < list.size(); i++) {
      JsonNode m = list.get(i);
      String at = where + ": " + field + "[" + i + "]";
      if (!m.isObject()) {
        problems.add(at + " must be an object with role and content (or from and value), not " + describe(m));
        continue;
      }
      boolean shareGpt = !m.has("role") && m.has("from");
      String roleKey = shareGpt ? "from" : "role";
      String contentKey = shareGpt ? "value" : "content";
      JsonNode role = m.get(roleKey);
      if (role == null || !role.isTextual() || role.asText().isBlank()) {
        problems.add(at + "." + roleKey + " must be a role such as user, assistant or system, not " + describe(role));
        continue;
      }
      String name = role.asText();
      if (shareGpt) {
        name = SHAREGPT_ROLES.get(name);
        if (name == null) {
          problems.add(at + ".from is '" + role.asText() + "'; ShareGPT speakers are human, gpt, system, tool or"
              + " observation");
          continue;
        }
      }
      JsonNode content = m.get(contentKey);
      boolean toolCall = m.has("tool_calls") && (content == null || content.isNull());
      if (!toolCall && (content == null || !content.isTextual())) {
        problems.add(at + "." + contentKey + " must be a string, not " + describe(content));
        continue;
      }
      @SuppressWarnings("unchecked")
      Map<String, Object> message = JSON.convertValue(m, LinkedHashMap.class);
      message.remove(roleKey);
      message.remove(contentKey);
      Map<String, Object> ordered = new LinkedHashMap<>();
      ordered.put("role", name);
      ordered.put("content", toolCall ? null : content.asText());
      ordered.putAll(message);
      messages.add(ordered);
    }
    if (problems.size() > before) {
      return Optional.empty();
    }
    if (Record.lastAssistant(messages) < 0) {
      problems.add(where + ": field '" + field + "' has no assistant message, so nothing to train on; a conversation"
          + " needs at least one message with role assistant (ShareGPT: from gpt)");
      return Optional.empty();
    }
    return Optional.of(messages);
  }

  private static String describe(JsonNode v) {
    return v == null || v.isMissingNode() ? "missing" : v.isNull() ? "null" : v.getNodeType().toString().toLowerCase()
        + (v.isContainerNode() ? "" : " " + v.toString());
  }
}
