package dev.finetune.trainer;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.finetune.api.PromptStyle;
import dev.finetune.api.trainer.TrainerContract.ExitCodes;
import dev.finetune.trainer.data.Prompts;
import dev.finetune.trainer.data.Record;
import dev.finetune.trainer.model.TextTokenizer;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** --inspect-data: records as training sees them, from the tokenizer and the data alone. */
class InspectCommandTest {
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final Record FIRST = new Record("Name a colour.", "", "Blue");

  record Answer(int code, String out, String err) {}

  static Answer inspect(Path job, String... more) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    ByteArrayOutputStream err = new ByteArrayOutputStream();
    List<String> args = new ArrayList<>(List.of(job.toString()));
    args.addAll(List.of(more));
    int code = InspectCommand.run(args.toArray(String[]::new), new PrintStream(out, true, StandardCharsets.UTF_8),
        new PrintStream(err, true, StandardCharsets.UTF_8));
    return new Answer(code, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
  }

  /** The tiny GPT-2 (no weights are read: a folder with its config.json and tokenizer.json alone). */
  static Path job(Path dir, boolean maskPrompt, int maxLength) throws Exception {
    Path model = Files.createDirectories(dir.resolve("model"));
    for (String f : new String[] {"config.json", "tokenizer.json"}) {
      Files.copy(Fixtures.tinyGpt2().resolve(f), model.resolve(f));
    }
    Files.writeString(dir.resolve("data.jsonl"), """
        {"instruction": "Name a colour.", "input": "", "output": "Blue"}
        {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"}
        {"instruction": "Reverse the word.", "input": "cat", "output": "tac"}
        """);
    return Jobs.write(dir, """
        apiVersion: finetune.dev/v1alpha1
        kind: FineTuneJob
        metadata:
          name: inspected
        spec:
          model:
            path: model
          dataset:
            path: data.jsonl
            maskPrompt: %s
            maxLength: %d
            split: {train: 0.34, validation: 0.33, test: 0.33, shuffle: false}
          training:
            epochs: 1
        """.formatted(maskPrompt, maxLength));
  }

  @Test
  void jsonGivesTheTokensAndLabelsTrainingUses(@TempDir Path dir) throws Exception {
    Answer a = inspect(job(dir, true, 1024), "--inspect-data", "5", "--json");
    assertThat(a.code()).as(a.err()).isEqualTo(ExitCodes.SUCCEEDED);
    List<String> lines = a.out().lines().toList();
    assertThat(lines).as("the train split has one record").hasSize(1);
    JsonNode r = JSON.readTree(lines.get(0));
    try (TextTokenizer tok = TextTokenizer.load(Fixtures.tinyGpt2().resolve("tokenizer.json"), 50256)) {
      long[] full = tok.encode(Prompts.full(PromptStyle.ALPACA, FIRST));
      int prompt = tok.encode(Prompts.instructionPart(PromptStyle.ALPACA, FIRST)).length;
      assertThat(r.get("text").asText()).isEqualTo(Prompts.full(PromptStyle.ALPACA, FIRST) + "<|endoftext|>");
      JsonNode ids = r.get("input_ids");
      JsonNode labels = r.get("labels");
      assertThat(ids.size()).isEqualTo(full.length + 1).isEqualTo(labels.size());
      assertThat(ids.get(full.length).asLong()).isEqualTo(50256);
      // maskPrompt: the instruction part is -100, the response header, the response and the end-of-text are trained
      for (int j = 0; j < ids.size(); j++) {
        long expected = j < prompt ? -100 : ids.get(j).asLong();
        assertThat(labels.get(j).asLong()).as("label %d", j).isEqualTo(expected);
      }
    }
  }

  @Test
  void aPersonSeesTheTrainedTokensMarkedAndTheCounts(@TempDir Path dir) throws Exception {
    Answer masked = inspect(job(dir, true, 1024), "--inspect-data", "1");
    assertThat(masked.code()).as(masked.err()).isEqualTo(ExitCodes.SUCCEEDED);
    assertThat(masked.out()).contains("the first 1 of 1 training records of inspected", "promptStyle alpaca",
        "maskPrompt true", "the loss trains the tokens in [[ ]], the rest is -100", "--- record 1 (",
        Prompts.instructionPart(PromptStyle.ALPACA, FIRST) + "[[\n\n### Response:\nBlue<|endoftext|>]]");
    assertThat(dir.resolve("runs")).as("no run folder").doesNotExist();
  }

  @Test
  void withoutMaskPromptAllButTheFirstTokenTrainAndMaxLengthCuts(@TempDir Path dir) throws Exception {
    Answer a = inspect(job(dir, false, 8), "--inspect-data", "1", "--json");
    JsonNode r = JSON.readTree(a.out().lines().findFirst().orElseThrow());
    assertThat(r.get("input_ids").size()).as("maxLength inputs and the last target").isEqualTo(9);
    assertThat(r.get("labels").get(0).asLong()).isEqualTo(-100);
    for (int j = 1; j < 9; j++) {
      assertThat(r.get("labels").get(j).asLong()).isEqualTo(r.get("input_ids").get(j).asLong());
    }
  }

  @Test
  void badArgumentsAreBadJobs(@TempDir Path dir) throws Exception {
    Path job = job(dir, false, 64);
    assertThat(inspect(job, "--inspect-data").err()).contains("--inspect-data needs how many records to show");
    assertThat(inspect(job, "--inspect-data", "x").code()).isEqualTo(ExitCodes.BAD_JOB);
    assertThat(inspect(dir.resolve("nope.yaml"), "--inspect-data", "1").err()).contains("does not exist");
  }
}
