package dev.finetune.trainer.train;

import static org.assertj.core.api.Assertions.assertThat;

import ai.djl.ndarray.NDManager;
import dev.finetune.api.PromptStyle;
import dev.finetune.api.TrainingSpec.Precision;
import dev.finetune.trainer.Fixtures;
import dev.finetune.trainer.data.Collator;
import dev.finetune.trainer.data.PromptFormat;
import dev.finetune.trainer.data.SyntheticTasks;
import dev.finetune.trainer.model.CausalLm;
import dev.finetune.trainer.model.Llama;
import dev.finetune.trainer.model.LlamaConfig;
import dev.finetune.trainer.model.Lora;
import dev.finetune.trainer.model.Model;
import dev.finetune.trainer.model.PrecisionPolicy;
import dev.finetune.trainer.model.TextTokenizer;
import dev.finetune.trainer.model.WeightStorage;
import dev.finetune.trainer.nativelib.TorchNative;
import java.util.List;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Gradient checkpointing and the chunked loss in bf16 mixed precision, through the native library (.ci/run builds it
 * against Debian's libtorch): the recomputed layers make their bf16 casts again, on the graph, so every weight that
 * trains gets the gradient it gets without checkpointing, every weight in fp32 or LoRA on a bf16 base.
 */
class CheckpointingNativeTest {

  @BeforeEach
  void needsTheLibrary() {
    Assumptions.assumeTrue(TorchNative.get().isPresent(), () -> "skipped: " + TorchNative.unavailableReason());
  }

  @ParameterizedTest
  @CsvSource({"tiny-llama, false", "tiny-llama, true", "tiny-qwen2, true"})
  void inBf16CheckpointingChangesNoNumber(String fixture, boolean loraOnBf16Base) throws Exception {
    try (NDManager base = NDManager.newBaseManager();
        Llama net = Llama.load(LlamaConfig.read(Fixtures.fixture(fixture).resolve("config.json")),
            Fixtures.fixture(fixture), base, loraOnBf16Base ? WeightStorage.BF16_BASE : WeightStorage.FP32);
        TextTokenizer tok = TextTokenizer.load(Fixtures.fixture(fixture).resolve("tokenizer.json"), 50256)) {
      if (loraOnBf16Base) {
        net.attach(Lora.create(net, 4, 8, 0, net.defaultLoraTargets(), 3));
      }
      net.setPrecision(PrecisionPolicy.resolve(Precision.BF16));
      net.requireGradients();
      Collator collator = new Collator(50256, 64, true);
      List<Collator.Example> data = TrainingData.tokenize(new PromptFormat.Instructions(PromptStyle.ALPACA, tok),
          SyntheticTasks.generate(6, 4));
      List<Collator.Batch> batches = List.of(collator.collate(data.subList(0, 3)), collator.collate(data.subList(3, 6)));

      CheckpointingTest.Pass whole = CheckpointingTest.pass(net, base, batches, false, 0, 0);
      CheckpointingTest.Pass checkpointed = CheckpointingTest.pass(net, base, batches, true, 0, 0);
      CheckpointingTest.Pass both = CheckpointingTest.pass(net, base, batches, true, 37, 0);
      assertThat(whole.loss()).isGreaterThan(1);
      assertThat(checkpointed.loss()).isEqualTo(whole.loss());
      assertThat(CheckpointingTest.maxDiff(checkpointed, whole)).isLessThanOrEqualTo(1e-7);
      assertThat(Math.abs(both.loss() - whole.loss()) / whole.loss()).isLessThan(1e-3); // bf16 logits, chunk by chunk
      assertThat(whole.grads()).isNotEmpty();
    }
  }
}
