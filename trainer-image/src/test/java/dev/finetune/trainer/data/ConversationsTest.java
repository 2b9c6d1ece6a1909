package dev.finetune.trainer.data;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.finetune.api.DatasetSpec;
import dev.finetune.api.PromptStyle;
import dev.finetune.trainer.BadDataException;
import dev.finetune.trainer.model.ByteTokenizer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Conversation records: OpenAI messages and ShareGPT conversations, in JSON and JSON Lines, and their mistakes. */
class ConversationsTest {
  private static final List<Map<String, Object>> HELLO = List.of(Map.of("role", "system", "content", "Be brief."),
      Map.of("role", "user", "content", "Hi"), Map.of("role", "assistant", "content", "Hello!"));

  @Test
  void messagesAndShareGptConversationsReadAlike(@TempDir Path dir) throws Exception {
    Path openAi = dir.resolve("chats.jsonl");
    Files.writeString(openAi, """
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}
        {"instruction": "Name a colour.", "output": "Blue"}
        """);
    Path shareGpt = dir.resolve("chats.json");
    Files.writeString(shareGpt, """
        [{"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Hi"},
                            {"from": "gpt", "value": "Hello!"}], "id": 7}]
        """);
    List<Record> a = Datasets.read(openAi);
    List<Record> b = Datasets.read(shareGpt);
    assertThat(a.get(0).messages()).isEqualTo(HELLO);
    assertThat(a.get(0)).isEqualTo(b.get(0));
    assertThat(a.get(0).output()).isEqualTo("Hello!");
    assertThat(a.get(0).instruction()).isEqualTo("Hi");
    assertThat(a.get(0).source()).isEqualTo(openAi + " line 1");
    assertThat(a.get(1).isConversation()).isFalse(); // instruction records may sit beside conversations
  }

  @Test
  void aTestConversationIsAnsweredFromTheTurnsBeforeItsLastAssistantMessage(@TempDir Path dir) throws Exception {
    Path f = dir.resolve("c.jsonl");
    Files.writeString(f, """
        {"messages": [{"role": "user", "content": "1+1?"}, {"role": "assistant", "content": "2"}, {"role": "user", "content": "and 2+2?"}, {"role": "assistant", "content": "4", "weight": 1}, {"role": "user", "content": "thanks"}]}
        """);
    Record r = Datasets.read(f).get(0);
    assertThat(r.output()).isEqualTo("4");
    assertThat(r.instruction()).isEqualTo("and 2+2?");
    assertThat(r.context()).hasSize(3);
    assertThat(r.messages().get(3)).containsEntry("weight", 1); // other keys reach the template
  }

  @Test
  void wrongShapesNameFileLineAndField(@TempDir Path dir) throws Exception {
    Path f = dir.resolve("bad.jsonl");
    Files.writeString(f, """
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": 5}]}
        {"messages": [{"role": "user", "content": "Hi"}]}
        {"conversations": [{"from": "human", "value": "Hi"}, {"from": "bot", "value": "Yo"}]}
        {"messages": "Hi"}
        {"messages": [{"content": "Hi"}, {"role": "assistant", "content": "Yo"}]}
        """);
    assertThatThrownBy(() -> Datasets.read(f)).isInstanceOf(BadDataException.class)
        .hasMessageContaining(f + " line 1: messages[1].content must be a string, not number 5")
        .hasMessageContaining(f + " line 2: field 'messages' has no assistant message, so nothing to train on")
        .hasMessageContaining(f + " line 3: conversations[1].from is 'bot'; ShareGPT speakers are human, gpt, system,")
        .hasMessageContaining(f + " line 4: field 'messages' must be a non-empty list of messages")
        .hasMessageContaining(f + " line 5: messages[0].role must be a role such as user, assistant or system, not missing");
  }

  @Test
  void columnsNameTheConversationsField(@TempDir Path dir) throws Exception {
    Path f = dir.resolve("c.jsonl");
    Files.writeString(f, """
        {"dialog": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}
        """);
    assertThat(Datasets.read(f, new Datasets.Columns(Map.of("messages", "dialog"))).get(0).messages()).isEqualTo(HELLO);
  }

  @Test
  void conversationsNeedPromptStyleChat() {
    Record r = Record.conversation(HELLO, "chats.jsonl line 1");
    assertThatThrownBy(() -> new PromptFormat.Instructions(PromptStyle.ALPACA, new ByteTokenizer()).example(r))
        .isInstanceOf(BadDataException.class).hasMessageContaining("chats.jsonl line 1 is a conversation")
        .hasMessageContaining("spec.dataset.promptStyle: chat");
    DatasetSpec ds = new DatasetSpec();
    Datasets.Splits splits = new Datasets.Splits(List.of(r), List.of(), List.of(), "chats.jsonl");
    assertThatThrownBy(() -> dev.finetune.trainer.train.TrainingData.conversationsNeedChat(ds, splits))
        .isInstanceOf(BadDataException.class)
        .hasMessage("1 records are conversations (messages or conversations), which promptStyle alpaca cannot write:"
            + " chats.jsonl line 1. Set spec.dataset.promptStyle: chat to render them with the model's chat template");
  }
}
