package dev.finetune.trainer.train;

import static org.assertj.core.api.Assertions.assertThat;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import dev.finetune.api.PromptStyle;
import dev.finetune.api.TrainingSpec;
import dev.finetune.trainer.Fixtures;
import dev.finetune.trainer.data.Collator;
import dev.finetune.trainer.data.PromptFormat;
import dev.finetune.trainer.data.SyntheticTasks;
import dev.finetune.trainer.model.CausalLm;
import dev.finetune.trainer.model.Lora;
import dev.finetune.trainer.model.Model;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Gradient checkpointing and the loss in chunks of tokens change no number: the same losses and gradients as one
 * graph for the whole micro-batch, for GPT-2 and the Llama family, every weight or a LoRA adapter, with dropout
 * (whose masks a recomputed layer draws again).
 */
class CheckpointingTest {

  record Pass(double loss, Map<String, float[]> grads) {}

  /** Two micro-batches of one accumulation group, as the trainer runs them; the loss and the summed gradients. */
  static Pass pass(CausalLm net, NDManager base, List<Collator.Batch> batches, boolean checkpointing, int chunk,
      double dropout) {
    TrainingSpec t = new TrainingSpec();
    t.gradientCheckpointing = checkpointing;
    t.lossChunkTokens = chunk;
    t.dropout = dropout;
    net.setDropout(dropout);
    double loss = 0;
    for (int i = 0; i < batches.size(); i++) {
      loss += Trainer.trainMicroBatch(net, base, batches.get(i), batches.size(), t, i);
    }
    Map<String, float[]> grads = new LinkedHashMap<>();
    for (Map.Entry<String, NDArray> e : net.trainable().entrySet()) {
      try (NDArray g = e.getValue().getGradient()) {
        grads.put(e.getKey(), g.toFloatArray());
      }
    }
    AdamW.zeroGradients(net.trainable());
    return new Pass(loss, grads);
  }

  static double maxDiff(Pass a, Pass b) {
    double max = 0;
    for (String name : a.grads().keySet()) {
      float[] x = a.grads().get(name);
      float[] y = b.grads().get(name);
      for (int i = 0; i < x.length; i++) {
        max = Math.max(max, Math.abs(x[i] - y[i]));
      }
    }
    return max;
  }

  @ParameterizedTest
  @CsvSource({"tiny-gpt2, false", "tiny-gpt2, true", "tiny-llama, false", "tiny-llama, true", "tiny-qwen2, false",
      "tiny-qwen2, true"})
  void checkpointingAndAChunkedLossChangeNoNumber(String fixture, boolean lora) throws Exception {
    try (NDManager base = NDManager.newBaseManager(); Model model = Model.load(Fixtures.fixture(fixture), base)) {
      CausalLm net = model.net();
      if (lora) {
        net.attach(Lora.create(net, 4, 8, 0.1, net.defaultLoraTargets(), 3)); // its dropout: passes in pieces throughout
      }
      net.requireGradients();
      Collator collator = new Collator(model.tokenizer().endOfText(), 64, true);
      List<Collator.Example> data = TrainingData.tokenize(new PromptFormat.Instructions(PromptStyle.ALPACA,
          model.tokenizer()), SyntheticTasks.generate(6, 4));
      List<Collator.Batch> batches = List.of(collator.collate(data.subList(0, 3)), collator.collate(data.subList(3, 6)));

      Pass whole = pass(net, base, batches, false, 0, 0);
      Pass checkpointed = pass(net, base, batches, true, 0, 0);
      Pass chunked = pass(net, base, batches, false, 37, 0); // chunks that cut sequences in the middle
      Pass both = pass(net, base, batches, true, 37, 0);
      assertThat(whole.loss()).isGreaterThan(1);
      assertThat(checkpointed.loss()).as("checkpointing: the same loss").isEqualTo(whole.loss());
      assertThat(maxDiff(checkpointed, whole)).as("checkpointing: the same gradients").isLessThanOrEqualTo(1e-7);
      assertThat(Math.abs(chunked.loss() - whole.loss()) / whole.loss()).as("chunked loss").isLessThan(1e-6);
      assertThat(maxDiff(chunked, whole)).as("chunked loss: gradients").isLessThan(1e-6);
      assertThat(both.loss()).isEqualTo(chunked.loss());
      assertThat(maxDiff(both, chunked)).isLessThanOrEqualTo(1e-7);

      Pass dropped = pass(net, base, batches, false, 0, 0.1);
      Pass droppedCheckpointed = pass(net, base, batches, true, 0, 0.1);
      assertThat(dropped.loss()).as("dropout draws masks").isNotEqualTo(whole.loss());
      assertThat(droppedCheckpointed.loss()).as("recomputed with the same masks").isEqualTo(dropped.loss());
      assertThat(maxDiff(droppedCheckpointed, dropped)).isLessThanOrEqualTo(1e-7);
    }
  }
}
