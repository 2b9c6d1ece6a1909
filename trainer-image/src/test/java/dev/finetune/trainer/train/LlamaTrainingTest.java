package dev.finetune.trainer.train;

import static org.assertj.core.api.Assertions.assertThat;

import ai.djl.ndarray.NDManager;
import dev.finetune.api.EpochRecord;
import dev.finetune.api.trainer.TrainerContract.ExitCodes;
import dev.finetune.trainer.Fixtures;
import dev.finetune.trainer.Jobs;
import dev.finetune.trainer.Main;
import dev.finetune.trainer.model.Llama;
import dev.finetune.trainer.model.Model;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A Llama-family model (tiny-llama from the fixtures) trained end to end through Main, and resumed exactly. */
class LlamaTrainingTest {
  static final String JOB = """
      apiVersion: finetune.dev/v1alpha1
      kind: FineTuneJob
      metadata:
        name: %s
      spec:
        model:
          path: %s
        dataset:
          synthetic:
            size: 40
            seed: 3
          promptStyle: phi3
          maskPrompt: true
          maxLength: 64
        training:
          epochs: 2
          batchSize: 4
          learningRate: 0.003
          warmupSteps: 2
          schedule: cosine
          maxGradNorm: 1.0
          seed: 11
        evaluation:
          enabled: false
        checkpoints:
          keep: 5
      """;

  static Path job(Path dir, String name, String model) throws Exception {
    return Jobs.write(dir, String.format(JOB, name, model));
  }

  @Test
  void fullFineTuneThroughMainWritesHfNamesAndResumesExactly(@TempDir Path dir) throws Exception {
    String model = Fixtures.tinyLlama().toString();
    Path refJob = job(dir.resolve("ref"), "llama-ref", model);
    Path ref = dir.resolve("ref/out");
    assertThat(Main.run(new String[] {refJob.toString(), "--output", ref.toString()}, List.of(), null))
        .isEqualTo(ExitCodes.SUCCEEDED);
    List<EpochRecord> history = Jobs.history(ref);
    assertThat(history).hasSize(2);
    assertThat(history.get(1).trainLoss).as("it learns").isLessThan(history.get(0).trainLoss);
    Path last = ref.resolve("checkpoints").resolve(Checkpoints.epochName(2));
    assertThat(ModelIo.names(last.resolve("model.safetensors"))).contains("model.embed_tokens.weight", "lm_head.weight",
        "model.layers.1.self_attn.k_proj.weight");
    try (NDManager base = NDManager.newBaseManager(); Model best = Model.load(ref.resolve("best"), base)) {
      assertThat(best.net()).isInstanceOf(Llama.class);
    }

    Jobs.assertResumesExactly(job(dir.resolve("resumed"), "llama-resumed", model), dir.resolve("resumed/out"), ref, 2,
        "model.safetensors", Checkpoints.OPTIMIZER);
  }

  /** Tensor names in a safetensors header. */
  static final class ModelIo {
    static java.util.Set<String> names(Path file) throws Exception {
      byte[] b = Files.readAllBytes(file);
      long n = java.nio.ByteBuffer.wrap(b, 0, 8).order(java.nio.ByteOrder.LITTLE_ENDIAN).getLong();
      var header = new com.fasterxml.jackson.databind.ObjectMapper().readTree(new String(b, 8, (int) n,
          java.nio.charset.StandardCharsets.UTF_8));
      java.util.Set<String> names = new java.util.TreeSet<>();
      header.fieldNames().forEachRemaining(names::add);
      names.remove("__metadata__");
      return names;
    }
  }
}
