package dev.finetune.trainer.data;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.finetune.api.DatasetSpec;
import dev.finetune.api.PromptStyle;
import dev.finetune.api.TrainingSpec;
import dev.finetune.trainer.BadJobException;
import dev.finetune.trainer.model.ByteTokenizer;
import dev.finetune.trainer.train.LrSchedule;
import dev.finetune.trainer.train.TrainingData;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Prompt templates, record files, splits, synthetic tasks, prompt masking and the learning-rate schedule. */
class DataTest {

  @Test
  void alpacaPromptIsTheReferenceTemplate() {
    Record withInput = new Record("Translate to French.", "Good morning", "Bonjour");
    assertThat(Prompts.full(PromptStyle.ALPACA, withInput)).isEqualTo(
        "Below is an instruction that describes a task. Write a response that appropriately completes the request."
            + "\n\n### Instruction:\nTranslate to French.\n\n### Input:\nGood morning\n\n### Response:\nBonjour");
    Record noInput = new Record("Name a colour.", "", "Blue");
    assertThat(Prompts.full(PromptStyle.ALPACA, noInput)).isEqualTo(
        "Below is an instruction that describes a task. Write a response that appropriately completes the request."
            + "\n\n### Instruction:\nName a colour.\n\n### Response:\nBlue");
  }

  @Test
  void phi3PromptIsTheReferenceTemplate() {
    assertThat(Prompts.full(PromptStyle.PHI3, new Record("Translate to French.", "Good morning", "Bonjour")))
        .isEqualTo("<|User|>\nTranslate to French.\nGood morning\n\n<|Assistant|>\nBonjour");
    assertThat(Prompts.full(PromptStyle.PHI3, new Record("Name a colour.", "", "Blue")))
        .isEqualTo("<|User|>\nName a colour.\n\n<|Assistant|>\nBlue");
    assertThat(Prompts.prompt(PromptStyle.PHI3, new Record("Name a colour.", "", "Blue")))
        .isEqualTo("<|User|>\nName a colour.\n\n<|Assistant|>\n");
  }

  @Test
  void readsJsonArraysAndJsonLines(@TempDir Path dir) throws Exception {
    Path array = dir.resolve("a.json");
    Files.writeString(array, "[\n {\"instruction\": \"i1\", \"input\": \"x\", \"output\": \"o1\", \"extra\": 1},\n"
        + " {\"instruction\": \"i2\", \"output\": \"o2\"}\n]\n");
    assertThat(Datasets.read(array)).containsExactly(new Record("i1", "x", "o1"), new Record("i2", "", "o2"));
    Path lines = dir.resolve("a.jsonl");
    Files.writeString(lines, "{\"instruction\": \"i1\", \"input\": \"\", \"output\": \"o1\"}\n\n"
        + "{\"instruction\": \"i2\", \"input\": null, \"output\": \"o2\"}\n");
    assertThat(Datasets.read(lines)).containsExactly(new Record("i1", "", "o1"), new Record("i2", "", "o2"));
  }

  @Test
  void badRecordsNameFileLineAndField(@TempDir Path dir) throws Exception {
    Path lines = dir.resolve("bad.jsonl");
    Files.writeString(lines, "{\"instruction\": \"ok\", \"output\": \"fine\"}\n"
        + "{\"instruction\": \"no output\"}\n"
        + "{\"instruction\": \"x\", \"output\": 5}\n"
        + "not json\n");
    assertThatThrownBy(() -> Datasets.read(lines)).isInstanceOf(BadJobException.class)
        .hasMessageContaining(lines + " line 2: field 'output' is missing")
        .hasMessageContaining(lines + " line 3: field 'output' must be a string, not number")
        .hasMessageContaining(lines + " line 4: not valid JSON");
    Path array = dir.resolve("bad.json");
    Files.writeString(array, "[\n  {\"instruction\": \"a\", \"output\": \"b\"},\n  {\"input\": \"c\", \"output\": \"d\"}\n]");
    assertThatThrownBy(() -> Datasets.read(array)).isInstanceOf(BadJobException.class)
        .hasMessageContaining(array + " line 3 (record 1): field 'instruction' is missing");
    assertThatThrownBy(() -> Datasets.read(dir.resolve("missing.json"))).isInstanceOf(BadJobException.class)
        .hasMessageContaining("does not exist");
  }

  @Test
  void splitsTrainThenTestThenValidation() {
    List<Record> all = new ArrayList<>();
    for (int i = 0; i < 100; i++) {
      all.add(new Record("r" + i, "", "o"));
    }
    DatasetSpec.SplitSpec s = new DatasetSpec.SplitSpec();
    s.shuffle = false;
    Datasets.Splits plain = Datasets.split(all, s, "test");
    assertThat(plain.train()).hasSize(85).first().isEqualTo(all.get(0));
    assertThat(plain.test()).hasSize(10).first().isEqualTo(all.get(85));
    assertThat(plain.validation()).hasSize(5).first().isEqualTo(all.get(95));
    s.shuffle = true;
    Datasets.Splits shuffled = Datasets.split(all, s, "test");
    assertThat(shuffled.train()).isNotEqualTo(plain.train());
    assertThat(Datasets.split(all, s, "test").train()).isEqualTo(shuffled.train());
    var union = new HashSet<>(shuffled.train());
    union.addAll(shuffled.test());
    union.addAll(shuffled.validation());
    assertThat(union).hasSize(100);
  }

  @Test
  void syntheticTasksAreSeededAndCorrect() {
    List<Record> a = SyntheticTasks.generate(300, 7);
    assertThat(SyntheticTasks.generate(300, 7)).isEqualTo(a);
    assertThat(SyntheticTasks.generate(300, 8)).isNotEqualTo(a);
    assertThat(a.stream().map(Record::instruction).distinct().count()).isEqualTo(8);
    for (Record r : a) {
      switch (r.instruction()) {
        case "Reverse the word." -> assertThat(new StringBuilder(r.input()).reverse().toString()).isEqualTo(r.output());
        case "Add the two numbers." -> {
          String[] p = r.input().split(" \\+ ");
          assertThat(Integer.parseInt(p[0]) + Integer.parseInt(p[1])).isEqualTo(Integer.parseInt(r.output()));
        }
        case "Convert the phrase to upper case." -> assertThat(r.input().toUpperCase()).isEqualTo(r.output());
        default -> assertThat(r.output()).isNotEmpty();
      }
    }
  }

  @Test
  void maskPromptHidesInstructionTargetsButNotTheResponseHeader() {
    ByteTokenizer tok = new ByteTokenizer();
    DatasetSpec ds = new DatasetSpec();
    ds.promptStyle = PromptStyle.PHI3;
    Record r = new Record("Say hi.", "", "hi");
    Collator.Example e = TrainingData.tokenize(new PromptFormat.Instructions(ds.promptStyle, tok), List.of(r)).get(0);
    int p = "<|User|>\nSay hi.".length();
    assertThat(e.promptTokens()).isEqualTo(p);
    Collator.Batch b = new Collator(256, 100, true).collate(List.of(e));
    long[] targets = b.targets()[0];
    for (int j = 0; j <= p - 2; j++) {
      assertThat(targets[j]).as("target %d", j).isEqualTo(-100);
    }
    // target p-1 predicts the first character of the response header
    assertThat(targets[p - 1]).isEqualTo('\n');
    assertThat(tok.decode(java.util.Arrays.copyOfRange(targets, p - 1, targets.length - 1)))
        .isEqualTo("\n\n<|Assistant|>\nhi");
    assertThat(targets[targets.length - 1]).isEqualTo(256);
    Collator.Batch unmasked = new Collator(256, 100, false).collate(List.of(e));
    assertThat(unmasked.targets()[0][0]).isEqualTo('|');
  }

  @Test
  void learningRateScheduleWarmsUpAndDecays() {
    TrainingSpec t = new TrainingSpec();
    t.learningRate = 1.0;
    t.minLearningRate = 0.1;
    t.warmupSteps = 4;
    t.schedule = TrainingSpec.Schedule.COSINE;
    LrSchedule cos = LrSchedule.of(t, 14);
    assertThat(cos.at(0)).isEqualTo(0.25);
    assertThat(cos.at(3)).isEqualTo(1.0);
    assertThat(cos.at(4)).isEqualTo(1.0);
    assertThat(cos.at(13)).isCloseTo(0.1, org.assertj.core.api.Assertions.within(1e-12));
    assertThat(cos.at(8)).isCloseTo(0.1 + 0.9 * 0.5 * (1 + Math.cos(Math.PI * 4 / 9)), org.assertj.core.api.Assertions.within(1e-12));
    assertThat(cos.at(9)).isLessThan(cos.at(8));
    t.schedule = TrainingSpec.Schedule.LINEAR;
    assertThat(LrSchedule.of(t, 14).at(13)).isCloseTo(0.1, org.assertj.core.api.Assertions.within(1e-12));
    t.schedule = TrainingSpec.Schedule.CONSTANT;
    assertThat(LrSchedule.of(t, 14).at(13)).isEqualTo(1.0);
  }

  @Test
  void epochOrderIsSeededPerEpoch() {
    TrainingSpec t = new TrainingSpec();
    assertThat(TrainingData.order(50, 0, t)).isEqualTo(TrainingData.order(50, 0, t)).isNotEqualTo(TrainingData.order(50, 1, t));
    t.shuffle = false;
    assertThat(TrainingData.order(5, 3, t)).containsExactly(0, 1, 2, 3, 4);
  }
}
