package dev.finetune.trainer;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.finetune.api.trainer.TrainerContract.ExitCodes;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.net.URISyntaxException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code JOB.yaml --plan}: the memory plan from the job and config.json alone (the Llama 3 shapes in test resources
 * are the public config.json values; no weights anywhere), its exit code, and that it writes no run.
 */
class PlanCommandTest {
  private static final ObjectMapper JSON = new ObjectMapper();

  record Answer(int code, String out, String err) {
    JsonNode json() throws IOException {
      return JSON.readTree(out);
    }
  }

  static Answer plan(Path job, String... more) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    ByteArrayOutputStream err = new ByteArrayOutputStream();
    List<String> args = new ArrayList<>(List.of(job.toString(), "--plan"));
    args.addAll(List.of(more));
    int code = PlanCommand.run(args.toArray(String[]::new), new PrintStream(out, true, StandardCharsets.UTF_8),
        new PrintStream(err, true, StandardCharsets.UTF_8));
    return new Answer(code, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
  }

  static Path shape(String name) throws URISyntaxException {
    return Path.of(PlanCommandTest.class.getResource("/shapes/" + name + "/config.json").toURI()).getParent();
  }

  /** A GPU job on the model folder {@code model} (config.json only), LoRA on every projection when r > 0. */
  static Path job(Path dir, Path model, int lora, int gpus, int nodes, int batch, int maxLength) throws IOException {
    return Jobs.write(dir, """
        apiVersion: finetune.dev/v1alpha1
        kind: FineTuneJob
        metadata:
          name: planned
        spec:
          model:
            path: %s
          dataset:
            path: data/never-read.json
            maxLength: %d
          training:
            epochs: 1
            batchSize: %d
        %s  resources:
            gpus: %d
            nodes: %d
        """.formatted(model, maxLength, batch, lora == 0 ? "" : """
                lora:
                  r: %d
                  targetModules: [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]
            """.formatted(lora), gpus, nodes));
  }

  @Test
  void theTargetJobIsPlannedFromConfigJsonAloneAndSaysWhetherItFits(@TempDir Path dir) throws Exception {
    Path job = job(dir, shape("llama-3.1-8b"), 16, 1, 1, 1, 2048);
    Answer a = plan(job, "--device-memory", "24Gi", "--json");
    JsonNode p = a.json();
    // the parameter counts transformers and PEFT print for Llama-3.1-8B and an r16 adapter on all 7 projections
    assertThat(p.get("parameters").asLong()).isEqualTo(8_030_261_248L);
    assertThat(p.get("trainableParameters").asLong()).isEqualTo(41_943_040L);
    assertThat(p.get("precision").asText()).as("auto on a GPU").isEqualTo("bf16");
    // the frozen base in bf16 but for its 65 RMSNorm weights of 4096 (2 norms in each of 32 layers, and the last)
    long norms = 65 * 4096L;
    assertThat(p.get("weightsBytes").asLong()).isEqualTo(2 * (8_030_261_248L - norms) + 4 * norms);
    assertThat(p.get("castsBytes").asLong()).as("bf16 copies of the norms alone").isEqualTo(2 * norms);
    assertThat(p.get("gradientsBytes").asLong()).isEqualTo(4 * 41_943_040L);
    assertThat(p.get("optimizerBytes").asLong()).isEqualTo(8 * 41_943_040L);
    assertThat(p.get("lossChunkTokens").asInt()).as("the default").isEqualTo(1024);
    assertThat(p.get("logitsBytes").asLong()).as("bf16 logits, log-softmax and their gradients of 1024 of the 2048"
        + " tokens x 128256").isEqualTo(4L * 2 * 1024 * 128256);
    long parts = 0;
    for (String f : List.of("weightsBytes", "gradientsBytes", "optimizerBytes", "castsBytes", "activationsBytes",
        "logitsBytes", "runtimeBytes")) {
      parts += p.get(f).asLong();
    }
    assertThat(p.get("totalBytes").asLong()).isEqualTo(parts);
    assertThat(p.get("limitBytes").asLong()).isEqualTo(24L << 30);
    assertThat(p.get("fits").asBoolean()).isFalse();
    assertThat(a.code()).as("does not fit: a bad job, as the run would be").isEqualTo(ExitCodes.BAD_JOB);

    Answer text = plan(job, "--device-memory", "24Gi");
    assertThat(text.out()).contains("memory plan of planned:", "8,030,261,248 parameters", "LoRA r16: 41,943,040 trainable",
        "bf16 on a GPU", "weights", "the frozen base in bf16", "gradients", "AdamW state", "bf16 weight copies", "activations", "logits", "runtime",
        "total", "does not fit in 24.00 GiB (--device-memory 24Gi)");
    assertThat(dir.resolve("runs")).as("no run folder").doesNotExist();

    Answer big = plan(job, "--device-memory", String.valueOf(p.get("totalBytes").asLong()));
    assertThat(big.code()).as(big.out()).isEqualTo(ExitCodes.SUCCEEDED);
    assertThat(big.out()).contains("fits in");
  }

  /**
   * The target: Llama-3.1-8B, LoRA r16 on all 7 projections, bf16, batch 1 x 2048 tokens fits in 24 GiB with
   * gradient checkpointing (each layer's input and one layer's activations) and the loss in chunks.
   */
  @Test
  void theTargetJobFits24GiBWithGradientCheckpointing(@TempDir Path dir) throws Exception {
    Path job = job(dir, shape("llama-3.1-8b"), 16, 1, 1, 1, 2048);
    JsonNode without = plan(job, "--device-memory", "24Gi", "--json").json();
    Files.writeString(job, Files.readString(job).replace("    batchSize: 1\n", "    batchSize: 1\n    gradientCheckpointing: true\n"));
    Answer a = plan(job, "--device-memory", "24Gi", "--json");
    JsonNode with = a.json();
    assertThat(with.get("gradientCheckpointing").asBoolean()).isTrue();
    // bf16: 32 layer inputs of 2048 x 4096, one layer's activations recomputed and its backward pass's, the decoder's
    // output and its gradient; without: the 32 layers' activations and one backward pass's, and the same two
    long hidden = 2L * 2048 * 4096;
    long layer = (without.get("activationsBytes").asLong() - 2 * hidden) / 33;
    assertThat(with.get("activationsBytes").asLong()).isEqualTo(32 * hidden + 2 * layer + 2 * hidden);
    assertThat(with.get("totalBytes").asLong()).isLessThanOrEqualTo(24L << 30);
    assertThat(with.get("fits").asBoolean()).isTrue();
    assertThat(a.code()).isEqualTo(ExitCodes.SUCCEEDED);
    assertThat(plan(job, "--device-memory", "24Gi").out()).contains("gradient checkpointing", "1024 tokens at a time",
        "fits in 24.00 GiB");
  }

  @Test
  void theSmallerLlamasAndEveryWeightOverSeveralRanks(@TempDir Path dir) throws Exception {
    JsonNode one = plan(job(dir.resolve("1b"), shape("llama-3.2-1b"), 16, 1, 1, 1, 2048), "--json").json();
    assertThat(one.get("parameters").asLong()).isEqualTo(1_235_814_400L);
    assertThat(one.get("fits").asBoolean()).as("no GPU memory known without --device-memory").isTrue();
    assertThat(one.get("limitBytes").isNull()).isTrue();
    assertThat(one.get("limitSource").asText()).contains("--device-memory");
    JsonNode three = plan(job(dir.resolve("3b"), shape("llama-3.2-3b"), 16, 1, 1, 1, 2048), "--json").json();
    assertThat(three.get("parameters").asLong()).isEqualTo(3_212_749_824L);

    // full fine-tuning on 2 nodes x 8 GPUs: each rank takes 1/16 of the batch and keeps 1/16 of AdamW's state
    JsonNode full = plan(job(dir.resolve("full"), shape("llama-3.2-1b"), 0, 8, 2, 32, 1024), "--json").json();
    assertThat(full.get("ranks").asInt()).isEqualTo(16);
    assertThat(full.get("batch").asInt()).isEqualTo(2);
    assertThat(full.get("tokens").asInt()).isEqualTo(1024);
    assertThat(full.get("trainableParameters").asLong()).isEqualTo(1_235_814_400L);
    assertThat(full.get("optimizerBytes").asLong()).isEqualTo(8 * 1_235_814_400L / 16);
  }

  @Test
  void aCpuJobIsCheckedAgainstItsMemoryAndBadInputIsNamed(@TempDir Path dir) throws Exception {
    Path job = Jobs.write(dir, """
        apiVersion: finetune.dev/v1alpha1
        kind: FineTuneJob
        metadata:
          name: small
        spec:
          model:
            scratch: {layers: 2, embeddingDim: 64, heads: 4, contextLength: 128}
          dataset:
            synthetic: {size: 40, seed: 3}
            maxLength: 96
          training:
            epochs: 1
            batchSize: 4
          resources:
            memory: %s
        """.formatted("100Mi"));
    Answer small = plan(job);
    assertThat(small.err()).isEmpty();
    assertThat(small.code()).isEqualTo(ExitCodes.BAD_JOB);
    assertThat(small.out()).contains("fp32 on the CPU", "does not fit in 100 MiB (spec.resources.memory 100Mi)",
        "lower spec.training.batchSize");
    Files.writeString(job, Files.readString(job).replace("100Mi", "2Gi"));
    Answer enough = plan(job, "--json");
    assertThat(enough.code()).isEqualTo(ExitCodes.SUCCEEDED);
    assertThat(enough.json().get("precision").asText()).isEqualTo("fp32");
    assertThat(enough.json().get("tokens").asInt()).as("spec.dataset.maxLength").isEqualTo(96);

    Answer lots = plan(job, "--device-memory", "lots");
    assertThat(lots.code()).isEqualTo(ExitCodes.BAD_JOB);
    assertThat(lots.err()).contains("--device-memory 'lots' is not a memory size; write e.g. 24Gi");
    Answer typo = plan(job, "--devices");
    assertThat(typo.code()).isEqualTo(ExitCodes.BAD_JOB);
    assertThat(typo.err()).contains("unexpected argument '--devices'", "--plan [--device-memory SIZE] [--json]");
    Answer noConfig = plan(job(dir.resolve("none"), dir.resolve("no-model"), 0, 1, 1, 1, 512));
    assertThat(noConfig.code()).isEqualTo(ExitCodes.BAD_JOB);
    assertThat(noConfig.err()).contains("no-model/config.json does not exist; the plan needs the model's config.json");
    assertThat(Main.run(new String[] {job.toString(), "--plan"}, List.of(), null)).as("wired into the command")
        .isEqualTo(ExitCodes.SUCCEEDED);
    assertThat(dir.resolve("runs")).doesNotExist();
  }
}
