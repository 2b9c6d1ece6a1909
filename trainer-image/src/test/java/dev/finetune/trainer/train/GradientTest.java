package dev.finetune.trainer.train;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import dev.finetune.api.DatasetSpec;
import dev.finetune.api.PromptStyle;
import dev.finetune.api.ScratchModelSpec;
import dev.finetune.api.TrainingSpec;
import dev.finetune.trainer.data.Collator;
import dev.finetune.trainer.data.PromptFormat;
import dev.finetune.trainer.data.SyntheticTasks;
import dev.finetune.trainer.model.CausalLm;
import dev.finetune.trainer.model.Model;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** Gradient accumulation sums micro-batch gradients (scaled by the group size); clipping scales to the norm. */
class GradientTest {

  static Map<String, float[]> grads(CausalLm net) {
    Map<String, float[]> out = new LinkedHashMap<>();
    for (Map.Entry<String, NDArray> e : net.parameters().entrySet()) {
      try (NDArray g = e.getValue().getGradient()) {
        out.put(e.getKey(), g.toFloatArray());
      }
    }
    return out;
  }

  @Test
  void accumulationAveragesMicroBatchGradientsAndClippingBoundsTheNorm() {
    ScratchModelSpec shape = new ScratchModelSpec();
    shape.layers = 1;
    shape.embeddingDim = 32;
    shape.heads = 2;
    shape.contextLength = 96;
    TrainingSpec t = new TrainingSpec();
    try (NDManager base = NDManager.newBaseManager(); Model model = Model.scratch(shape, base)) {
      CausalLm net = model.net();
      net.requireGradients();
      Collator collator = new Collator(model.tokenizer().endOfText(), 96, false);
      List<Collator.Example> data = TrainingData.tokenize(new PromptFormat.Instructions(PromptStyle.ALPACA, model.tokenizer()), SyntheticTasks.generate(8, 1));
      Collator.Batch a = collator.collate(data.subList(0, 4));
      Collator.Batch b = collator.collate(data.subList(4, 8));

      Trainer.trainMicroBatch(net, base, a, 1, t, 0);
      Map<String, float[]> ga = grads(net);
      AdamW.zeroGradients(net.parameters());
      Trainer.trainMicroBatch(net, base, b, 1, t, 0);
      Map<String, float[]> gb = grads(net);
      AdamW.zeroGradients(net.parameters());
      assertThat(grads(net).get("wte.weight")).containsOnly(0f);

      Trainer.trainMicroBatch(net, base, a, 2, t, 0);
      Trainer.trainMicroBatch(net, base, b, 2, t, 1);
      Map<String, float[]> acc = grads(net);
      double maxDiff = 0;
      for (String name : acc.keySet()) {
        float[] x = acc.get(name);
        for (int i = 0; i < x.length; i++) {
          maxDiff = Math.max(maxDiff, Math.abs(x[i] - (ga.get(name)[i] + gb.get(name)[i]) / 2));
        }
      }
      assertThat(maxDiff).as("accumulated gradient = mean of the micro-batch gradients").isLessThan(1e-6);

      double norm = AdamW.gradNorm(net.parameters());
      assertThat(norm).isGreaterThan(0.1);
      double reported = AdamW.clipGradNorm(net.parameters(), 0.1);
      assertThat(reported).isCloseTo(norm, within(1e-9));
      assertThat(AdamW.gradNorm(net.parameters())).isCloseTo(0.1, within(1e-4));
      AdamW.clipGradNorm(net.parameters(), 100);
      assertThat(AdamW.gradNorm(net.parameters())).as("no scaling below the bound").isCloseTo(0.1, within(1e-4));
    }
  }
}
