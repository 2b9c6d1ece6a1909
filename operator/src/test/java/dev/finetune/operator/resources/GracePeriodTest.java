package dev.finetune.operator.resources;

import static org.assertj.core.api.Assertions.assertThat;

import dev.finetune.api.ModelSpec;
import dev.finetune.api.ScratchModelSpec;
import org.junit.jupiter.api.Test;

/** The trainer Pod's grace period leaves time for a checkpoint of the job's model after SIGTERM. */
class GracePeriodTest {

  @Test
  void growsWithTheModelsCheckpoint() {
    // GPT-2 (124M parameters): 1.5 GB of weights and AdamW moments, twice at 50 MiB/s, plus a minute.
    assertThat(TrainerResources.terminationGracePeriodSeconds(hub("openai-community/gpt2"))).isEqualTo(117);
    assertThat(TrainerResources.terminationGracePeriodSeconds(hub("gpt2-medium"))).isEqualTo(60 + 163);
    assertThat(TrainerResources.parameters(hub("Qwen/Qwen2-0.5B-Instruct"))).isEqualTo(500_000_000L);
    assertThat(TrainerResources.parameters(hub("HuggingFaceTB/SmolLM-135M"))).isEqualTo(135_000_000L);
    // GPT-2 XL, or a model the spec does not size (a path, an unknown hub id): the largest GPT-2.
    assertThat(TrainerResources.terminationGracePeriodSeconds(hub("openai-community/gpt2-xl"))).isEqualTo(774);
    ModelSpec path = new ModelSpec();
    path.path = "models/mine";
    assertThat(TrainerResources.terminationGracePeriodSeconds(path)).isEqualTo(774);
  }

  @Test
  void aScratchModelIsCounted() {
    ModelSpec small = scratch(2, 64, 128);
    // embeddings (257 byte tokens + 128 positions) x 64, two blocks of 12 d^2 + 13 d, the final norm
    assertThat(TrainerResources.parameters(small)).isEqualTo(385 * 64 + 2 * (12 * 64 * 64 + 13 * 64) + 2 * 64);
    assertThat(TrainerResources.terminationGracePeriodSeconds(small)).isEqualTo(61);
    ModelSpec large = scratch(48, 1600, 1024);
    assertThat(TrainerResources.parameters(large)).isBetween(1_400_000_000L, 1_600_000_000L);
    assertThat(TrainerResources.terminationGracePeriodSeconds(large)).isGreaterThan(600);
  }

  private static ModelSpec hub(String id) {
    ModelSpec m = new ModelSpec();
    m.hub = id;
    return m;
  }

  private static ModelSpec scratch(int layers, int dim, int context) {
    ModelSpec m = new ModelSpec();
    m.scratch = new ScratchModelSpec();
    m.scratch.layers = layers;
    m.scratch.embeddingDim = dim;
    m.scratch.heads = 4;
    m.scratch.contextLength = context;
    return m;
  }
}
