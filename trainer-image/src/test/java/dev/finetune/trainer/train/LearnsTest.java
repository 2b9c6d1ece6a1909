package dev.finetune.trainer.train;

import static org.assertj.core.api.Assertions.assertThat;

import ai.djl.ndarray.NDManager;
import dev.finetune.api.FineTuneJob;
import dev.finetune.trainer.Jobs;
import dev.finetune.trainer.data.Collator;
import dev.finetune.trainer.data.Datasets;
import dev.finetune.trainer.data.PromptFormat;
import dev.finetune.trainer.data.Prompts;
import dev.finetune.trainer.data.Record;
import dev.finetune.trainer.model.Generator;
import dev.finetune.trainer.model.Model;
import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Fine-tuning works: a tiny scratch GPT-2 trained on the CPU on the synthetic tasks ends with a lower
 * validation loss and answers more held-out (test split) prompts exactly than before training.
 */
class LearnsTest {
  /** The quick start: what README and examples/small-cpu.yaml promise is what this test trains. */
  static final Path EXAMPLE = dev.finetune.api.testing.Repo.examples().resolve("small-cpu.yaml");

  record Score(double validationLoss, int exact, int total, Map<String, int[]> perTask) {}

  static Score score(Model model, FineTuneJob job, Datasets.Splits splits, NDManager base) {
    var ds = job.getSpec().dataset;
    Collator collator = new Collator(model.tokenizer().endOfText(), ds.maxLength, ds.maskPrompt);
    double loss = Trainer.evaluate(model.net(), base, collator,
        TrainingData.tokenize(new PromptFormat.Instructions(ds.promptStyle, model.tokenizer()), splits.validation()), 16);
    int exact = 0;
    Map<String, int[]> perTask = new TreeMap<>();
    for (Record r : splits.test()) {
      String answer = new Generator(model).generate(Prompts.prompt(ds.promptStyle, r), job.getSpec().evaluation.maxNewTokens);
      boolean ok = answer.strip().equals(r.output().strip());
      exact += ok ? 1 : 0;
      int[] c = perTask.computeIfAbsent(r.instruction(), k -> new int[2]);
      c[0] += ok ? 1 : 0;
      c[1]++;
    }
    return new Score(loss, exact, splits.test().size(), perTask);
  }

  @Test
  void fineTuningLowersValidationLossAndAnswersMorePromptsExactly(@TempDir Path dir) throws IOException {
    Path jobFile = Jobs.write(dir, java.nio.file.Files.readString(EXAMPLE));
    FineTuneJob job = Jobs.read(jobFile);
    Path out = dir.resolve("out");
    Datasets.Splits splits = Datasets.load(job.getSpec().dataset, dir, out);
    assertThat(splits.test()).hasSizeGreaterThanOrEqualTo(100);

    Score before;
    try (NDManager base = NDManager.newBaseManager(); Model m = Model.scratch(job.getSpec().model.scratch, base)) {
      before = score(m, job, splits, base);
    }
    long start = System.nanoTime();
    TrainingListener.Result result = Jobs.run(jobFile, out, (TrainingListener) null);
    double seconds = (System.nanoTime() - start) / 1e9;
    Score after;
    try (NDManager base = NDManager.newBaseManager(); Model m = Model.load(out.resolve("best"), base)) {
      after = score(m, job, splits, base);
    }
    System.out.printf("learns: trained %d epochs in %.0f s (%s)%n", result.epochsCompleted(), seconds, result.message());
    System.out.printf("learns: validation loss before %.4f, after %.4f%n", before.validationLoss(), after.validationLoss());
    System.out.printf("learns: exact-match accuracy on %d held-out test prompts: before %d/%d (%.1f%%), after %d/%d (%.1f%%)%n",
        after.total(), before.exact(), before.total(), 100.0 * before.exact() / before.total(), after.exact(),
        after.total(), 100.0 * after.exact() / after.total());
    after.perTask().forEach((task, c) -> System.out.printf("learns:   %-45s %d/%d%n", task, c[0], c[1]));

    assertThat(after.validationLoss()).isLessThan(before.validationLoss() * 0.5);
    assertThat(after.exact()).isGreaterThan(before.exact());
    assertThat(after.exact()).isGreaterThanOrEqualTo(after.total() / 4);
    List<String> out1 = List.of(result.bestModel().toString());
    assertThat(out1).isNotEmpty();
  }
}
