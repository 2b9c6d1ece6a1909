package dev.finetune.trainer.train;

import static org.assertj.core.api.Assertions.assertThat;

import ai.djl.ndarray.NDManager;
import dev.finetune.api.DatasetSpec;
import dev.finetune.api.PromptStyle;
import dev.finetune.api.ScratchModelSpec;
import dev.finetune.api.TrainingSpec;
import dev.finetune.trainer.data.Collator;
import dev.finetune.trainer.data.PromptFormat;
import dev.finetune.trainer.data.Record;
import dev.finetune.trainer.data.SyntheticTasks;
import dev.finetune.trainer.model.CausalLm;
import dev.finetune.trainer.model.Model;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;

/** Many training steps (forward, backward, clipping, AdamW, validation) leave no NDArray behind and keep RSS flat. */
class MemoryTest {

  static long rssKb() throws Exception {
    for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
      if (line.startsWith("VmRSS:")) {
        return Long.parseLong(line.replaceAll("[^0-9]", ""));
      }
    }
    throw new IllegalStateException("no VmRSS");
  }

  @Test
  void liveArraysAndRssStayFlatOverManySteps() throws Exception {
    ScratchModelSpec shape = new ScratchModelSpec();
    shape.layers = 2;
    shape.embeddingDim = 64;
    shape.heads = 4;
    shape.contextLength = 128;
    DatasetSpec ds = new DatasetSpec();
    ds.promptStyle = PromptStyle.PHI3;
    ds.maskPrompt = true;
    TrainingSpec t = new TrainingSpec();
    t.dropout = 0.1; // the dropout path too
    List<Record> records = SyntheticTasks.generate(64, 1);
    try (NDManager base = NDManager.newBaseManager(); Model model = Model.scratch(shape, base)) {
      CausalLm net = model.net();
      net.setDropout(t.dropout);
      net.requireGradients();
      Collator collator = new Collator(model.tokenizer().endOfText(), 128, true);
      List<Collator.Example> data = TrainingData.tokenize(new PromptFormat.Instructions(ds.promptStyle, model.tokenizer()), records);
      try (AdamW opt = new AdamW(net.parameters(), base, 0.9, 0.999, 1e-8, 0.1)) {
        Runnable step = new Runnable() {
          int i;

          @Override
          public void run() {
            int from = (i * 8) % data.size();
            Collator.Batch b = collator.collate(data.subList(from, from + 8));
            Trainer.trainMicroBatch(net, base, b, 1, t, i);
            AdamW.clipGradNorm(net.parameters(), 1.0);
            opt.step(net.parameters(), 1e-3);
            AdamW.zeroGradients(net.parameters());
            if (i % 50 == 0) {
              Trainer.evaluate(net, base, collator, data.subList(0, 16), 8);
            }
            i++;
          }
        };
        for (int i = 0; i < 30; i++) {
          step.run();
        }
        System.gc();
        int arraysBefore = base.getManagedArrays().size();
        long rssBefore = rssKb();
        for (int i = 0; i < 250; i++) {
          step.run();
        }
        System.gc();
        int arraysAfter = base.getManagedArrays().size();
        long rssAfter = rssKb();
        System.out.printf("memory: live NDArrays %d -> %d, RSS %d MB -> %d MB over 250 steps%n", arraysBefore,
            arraysAfter, rssBefore / 1024, rssAfter / 1024);
        assertThat(arraysBefore).as("parameters and moments are tracked").isGreaterThanOrEqualTo(3 * net.parameters().size());
        assertThat(arraysAfter).isEqualTo(arraysBefore);
        assertThat(rssAfter - rssBefore).as("RSS growth in KB").isLessThan(64 * 1024);
      }
    }
  }
}
