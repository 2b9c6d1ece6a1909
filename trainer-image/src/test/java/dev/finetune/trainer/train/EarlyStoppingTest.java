package dev.finetune.trainer.train;

import static org.assertj.core.api.Assertions.assertThat;

import dev.finetune.api.EpochRecord;
import dev.finetune.trainer.Jobs;
import dev.finetune.trainer.data.Record;
import dev.finetune.trainer.data.SyntheticTasks;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Early stopping: training teaches "copy the word" while validation asks for the word reversed, so validation
 * loss falls while the model learns the format and then rises. The run stops after {@code patience} epochs
 * without improvement, and best/ holds the best epoch's weights (its checkpoint is kept although keep is 1).
 */
class EarlyStoppingTest {

  static String jsonl(List<Record> records) {
    StringBuilder sb = new StringBuilder();
    for (Record r : records) {
      sb.append(String.format("{\"instruction\": \"%s\", \"input\": \"%s\", \"output\": \"%s\"}%n", r.instruction(),
          r.input(), r.output()));
    }
    return sb.toString();
  }

  @Test
  void stopsAfterPatienceEpochsAndKeepsTheBestEpoch(@TempDir Path dir) throws IOException {
    Random rnd = new Random(1);
    List<Record> train = new ArrayList<>();
    List<Record> validation = new ArrayList<>();
    for (int i = 0; i < 96; i++) {
      String w = SyntheticTasks.WORDS[rnd.nextInt(SyntheticTasks.WORDS.length)];
      train.add(new Record("Say the word.", w, w));
    }
    for (int i = 0; i < 16; i++) {
      String w = SyntheticTasks.WORDS[rnd.nextInt(SyntheticTasks.WORDS.length)];
      validation.add(new Record("Say the word.", w, new StringBuilder(w).reverse().toString()));
    }
    Files.createDirectories(dir);
    Files.writeString(dir.resolve("train.jsonl"), jsonl(train));
    Files.writeString(dir.resolve("validation.jsonl"), jsonl(validation));
    Path job = Jobs.write(dir, """
        apiVersion: finetune.dev/v1alpha1
        kind: FineTuneJob
        metadata:
          name: early
        spec:
          model:
            scratch: {layers: 1, embeddingDim: 32, heads: 2, contextLength: 64, seed: 2}
          dataset:
            files: {train: train.jsonl, validation: validation.jsonl}
            promptStyle: phi3
            maskPrompt: true
            maxLength: 64
          training: {epochs: 40, batchSize: 8, learningRate: 0.01, seed: 4}
          earlyStopping: {patience: 2, minDelta: 0.0}
          checkpoints: {keep: 1}
        """);
    Path out = dir.resolve("out");
    Jobs.Recorder rec = new Jobs.Recorder();
    TrainingListener.Result r = Jobs.run(job, out, rec);

    List<EpochRecord> h = Jobs.history(out);
    h.forEach(e -> System.out.printf("early stopping: epoch %d train %.4f validation %.4f%n", e.epoch, e.trainLoss,
        e.validationLoss));
    System.out.println("early stopping: " + r.message());
    assertThat(r.outcome()).isEqualTo(TrainingListener.Outcome.EARLY_STOPPED);
    int best = r.bestEpoch();
    assertThat(r.epochsCompleted()).isEqualTo(best + 2).isLessThan(40);
    assertThat(h).hasSize(best + 2);
    double bestLoss = h.get(best - 1).validationLoss;
    assertThat(r.bestValidationLoss()).isEqualTo(bestLoss);
    assertThat(h).allSatisfy(e -> assertThat(e.validationLoss).isGreaterThanOrEqualTo(bestLoss));
    assertThat(h.get(h.size() - 1).validationLoss).as("validation loss rose").isGreaterThan(bestLoss);
    assertThat(r.message()).contains("early stopped after epoch " + (best + 2)).contains("epoch " + best + ")");
    assertThat(rec.epochs.get(rec.epochs.size() - 1).epochsWithoutImprovement()).isEqualTo(2);

    Path bestCheckpoint = out.resolve("checkpoints/" + Checkpoints.epochName(best));
    assertThat(bestCheckpoint.resolve("state.json")).exists();
    assertThat(Files.readAllBytes(out.resolve("best/model.safetensors")))
        .isEqualTo(Files.readAllBytes(bestCheckpoint.resolve("model.safetensors")));
    assertThat(Files.readAllBytes(out.resolve("best/model.safetensors"))).as("best differs from the last epoch")
        .isNotEqualTo(Files.readAllBytes(out.resolve("checkpoints/" + Checkpoints.epochName(best + 2) + "/model.safetensors")));
    // keep: 1 -> the newest checkpoint and the best one remain
    try (var s = Files.list(out.resolve("checkpoints"))) {
      assertThat(s.map(p -> p.getFileName().toString()).sorted().toList())
          .containsExactly(Checkpoints.epochName(best), Checkpoints.epochName(best + 2));
    }
    // a rerun of a finished job does not train again
    TrainingListener.Result again = Jobs.run(job, out, new Jobs.Recorder());
    assertThat(again.outcome()).isEqualTo(TrainingListener.Outcome.EARLY_STOPPED);
    assertThat(Jobs.history(out)).hasSize(best + 2);
  }
}
