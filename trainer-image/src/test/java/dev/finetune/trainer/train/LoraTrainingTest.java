package dev.finetune.trainer.train;

import static org.assertj.core.api.Assertions.assertThat;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import dev.finetune.api.EpochRecord;
import dev.finetune.api.trainer.TrainerContract;
import dev.finetune.api.trainer.TrainerContract.ExitCodes;
import dev.finetune.trainer.Fixtures;
import dev.finetune.trainer.Jobs;
import dev.finetune.trainer.Main;
import dev.finetune.trainer.model.Gpt2;
import dev.finetune.trainer.model.Llama;
import dev.finetune.trainer.model.Lora;
import dev.finetune.trainer.model.Model;
import dev.finetune.trainer.model.SafeTensors;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * LoRA through the trainer: only the adapter trains and is checkpointed (resume exact), the base stays as it was,
 * adapter/ is a PEFT adapter and best/ the merged model.
 */
class LoraTrainingTest {
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
          learningRate: 0.01
          seed: 11
          lora:
            initAdapter: %s
        evaluation:
          enabled: false
        checkpoints:
          keep: 5
      """;

  static Path fixture() {
    return Fixtures.tinyLlama();
  }

  static Path job(Path dir, String name) throws Exception {
    return Jobs.write(dir, String.format(JOB, name, fixture(), fixture().resolve("lora-init")));
  }

  @Test
  void adapterTrainsAloneResumesExactlyAndIsWrittenAsPeftAdapterAndMergedModel(@TempDir Path dir) throws Exception {
    Path ref = dir.resolve("ref/out");
    assertThat(Main.run(new String[] {job(dir.resolve("ref"), "lora-ref").toString(), "--output", ref.toString()},
        List.of(), null)).isEqualTo(ExitCodes.SUCCEEDED);
    List<EpochRecord> history = Jobs.history(ref);
    assertThat(history.get(1).trainLoss).as("it learns").isLessThan(history.get(0).trainLoss);

    // Checkpoints hold the adapter and its optimizer state alone.
    Path last = ref.resolve("checkpoints").resolve(Checkpoints.epochName(2));
    assertThat(last.resolve("model.safetensors")).doesNotExist();
    assertThat(LlamaTrainingTest.ModelIo.names(last.resolve(Lora.WEIGHTS)))
        .isEqualTo(LlamaTrainingTest.ModelIo.names(fixture().resolve("lora-init").resolve(Lora.WEIGHTS)));
    assertThat(LlamaTrainingTest.ModelIo.names(last.resolve(Checkpoints.OPTIMIZER))).allMatch(n -> n.contains(".lora_"));

    Path adapter = ref.resolve(TrainerContract.ADAPTER_DIR);
    JsonNode config = Fixtures.json(adapter.resolve(Lora.CONFIG));
    assertThat(config.get("r").asInt()).isEqualTo(4);
    assertThat(config.get("lora_alpha").asDouble()).isEqualTo(8.0);
    assertThat(config.get("base_model_name_or_path").asText()).isEqualTo(fixture().toString());
    try (NDManager m = NDManager.newBaseManager()) {
      Map<String, NDArray> base = SafeTensors.read(fixture().resolve("model.safetensors"), m);
      Map<String, NDArray> merged = SafeTensors.read(ref.resolve("best/model.safetensors"), m);
      Map<String, NDArray> ab = SafeTensors.read(adapter.resolve(Lora.WEIGHTS), m);
      assertThat(merged.keySet()).isEqualTo(base.keySet());
      int adapted = 0;
      for (Map.Entry<String, NDArray> e : base.entrySet()) {
        String module = e.getKey().replace(".weight", "");
        NDArray a = ab.get("base_model.model." + module + ".lora_A.weight");
        if (a == null) {
          assertThat(merged.get(e.getKey()).toByteArray()).as("frozen %s", e.getKey()).isEqualTo(e.getValue().toByteArray());
        } else {
          NDArray b = ab.get("base_model.model." + module + ".lora_B.weight");
          NDArray expected = e.getValue().add(b.matMul(a).mul(2f));
          assertThat(merged.get(e.getKey()).sub(expected).abs().max().getFloat()).as("merged %s", e.getKey()).isLessThan(1e-6f);
          assertThat(merged.get(e.getKey()).contentEquals(e.getValue())).as("%s changed", e.getKey()).isFalse();
          adapted++;
        }
      }
      assertThat(adapted).as("q_proj and v_proj of both layers").isEqualTo(4);
      try (Model best = Model.load(ref.resolve("best"), m)) {
        assertThat(best.net()).isInstanceOf(Llama.class);
      }
    }

    Path out = dir.resolve("resumed/out");
    Jobs.assertResumesExactly(job(dir.resolve("resumed"), "lora-resumed"), out, ref, 2, Lora.WEIGHTS, Checkpoints.OPTIMIZER);
    assertThat(Files.readAllBytes(out.resolve("best/model.safetensors"))).as("merged best")
        .isEqualTo(Files.readAllBytes(ref.resolve("best/model.safetensors")));
  }

  @Test
  void newGpt2AdapterStartsAsPeftDoesAndTrainsTheNamedLayers(@TempDir Path dir) throws Exception {
    String yaml = String.format(Jobs.TINY, "gpt2-lora", 1, 2, 0)
        .replace("    seed: 11\n", "    seed: 11\n    lora: {r: 4, alpha: 16, targetModules: [c_attn, c_fc]}\n")
        + "  evaluation:\n    enabled: false\n";
    Path job = Jobs.write(dir, yaml);
    Path out = dir.resolve("out");
    assertThat(Main.run(new String[] {job.toString(), "--output", out.toString()}, List.of(), null))
        .isEqualTo(ExitCodes.SUCCEEDED);
    JsonNode config = Fixtures.json(out.resolve("adapter").resolve(Lora.CONFIG));
    assertThat(config.get("fan_in_fan_out").asBoolean()).isTrue();
    assertThat(config.get("lora_alpha").asDouble()).isEqualTo(16.0);
    assertThat(LlamaTrainingTest.ModelIo.names(out.resolve("adapter").resolve(Lora.WEIGHTS))).containsExactly(
        "base_model.model.transformer.h.0.attn.c_attn.lora_A.weight", "base_model.model.transformer.h.0.attn.c_attn.lora_B.weight",
        "base_model.model.transformer.h.0.mlp.c_fc.lora_A.weight", "base_model.model.transformer.h.0.mlp.c_fc.lora_B.weight");
    try (NDManager m = NDManager.newBaseManager(); Model best = Model.load(out.resolve("best"), m)) {
      assertThat(best.net()).isInstanceOf(Gpt2.class);
    }
  }

  @Test
  void aNewAdapterIsKaimingUniformAAndZeroBFromTheSeed() throws Exception {
    try (NDManager m = NDManager.newBaseManager(); Model model = Model.load(fixture(), m)) {
      Lora a = Lora.create(model.net(), 4, 8, 0, List.of("q_proj", "down_proj"), 7);
      Lora b = Lora.create(model.net(), 4, 8, 0, List.of("q_proj", "down_proj"), 7);
      assertThat(a.parameters().keySet()).containsExactly("model.layers.0.self_attn.q_proj.lora_A.weight",
          "model.layers.0.self_attn.q_proj.lora_B.weight", "model.layers.0.mlp.down_proj.lora_A.weight",
          "model.layers.0.mlp.down_proj.lora_B.weight", "model.layers.1.self_attn.q_proj.lora_A.weight",
          "model.layers.1.self_attn.q_proj.lora_B.weight", "model.layers.1.mlp.down_proj.lora_A.weight",
          "model.layers.1.mlp.down_proj.lora_B.weight");
      NDArray downA = a.parameters().get("model.layers.0.mlp.down_proj.lora_A.weight");
      assertThat(downA.getShape().getShape()).containsExactly(4, 88);
      assertThat(downA.abs().max().getFloat()).isLessThanOrEqualTo((float) (1 / Math.sqrt(88)));
      assertThat(downA.abs().max().getFloat()).isGreaterThan((float) (0.8 / Math.sqrt(88)));
      assertThat(a.parameters().get("model.layers.0.mlp.down_proj.lora_B.weight").abs().max().getFloat()).isZero();
      a.parameters().forEach((k, v) -> assertThat(v.contentEquals(b.parameters().get(k))).as("same seed, same %s", k).isTrue());
      a.close();
      b.close();
    }
  }
}
