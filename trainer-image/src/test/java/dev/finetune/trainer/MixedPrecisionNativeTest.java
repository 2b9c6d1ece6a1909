package dev.finetune.trainer;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.training.GradientCollector;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.finetune.api.TrainingSpec.Precision;
import dev.finetune.api.trainer.TrainerContract;
import dev.finetune.trainer.model.Gpt2;
import dev.finetune.trainer.model.Model;
import dev.finetune.trainer.model.PrecisionPolicy;
import dev.finetune.trainer.nativelib.TorchNative;
import dev.finetune.trainer.train.AdamW;
import dev.finetune.trainer.train.Checkpoints;
import dev.finetune.trainer.train.TrainingListener;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.io.TempDir;

/**
 * bf16 mixed precision on the CPU, through the native library (built against Debian's libtorch by .ci/run): the loss
 * and five AdamW steps stay within bf16 tolerance of PyTorch's fp32 golden; weights, gradients and optimizer state
 * stay fp32; checkpoints and best/ are F32 safetensors; a resumed bf16 run is exactly an uninterrupted one.
 */
class MixedPrecisionNativeTest {

  @BeforeEach
  void needsTheLibrary() {
    Assumptions.assumeTrue(TorchNative.get().isPresent(), () -> "skipped: " + TorchNative.unavailableReason());
  }

  @Test
  void lossAndAdamWStepsStayWithinBf16ToleranceOfTheFp32Golden() throws Exception {
    JsonNode golden = Fixtures.json(Fixtures.tinyGpt2().resolve("golden.json"));
    long[][] inputs = Fixtures.longs2(golden.get("inputs"));
    long[][] targets = Fixtures.longs2(golden.get("targets"));
    JsonNode adam = golden.get("adamw");
    try (NDManager base = NDManager.newBaseManager(); Model model = Model.load(Fixtures.tinyGpt2(), base)) {
      Gpt2 net = (Gpt2) model.net();
      PrecisionPolicy bf16 = PrecisionPolicy.resolve(Precision.BF16);
      assertThat(bf16.precision()).isEqualTo(Precision.BF16);
      net.setPrecision(bf16);
      net.requireGradients();
      try (AdamW opt = new AdamW(net.parameters(), base, 0.9, 0.999, 1e-8, 0.1)) {
        double worst = 0;
        for (int s = 0; s < adam.get("steps").asInt(); s++) {
          double loss;
          try (NDManager step = base.newSubManager(); NDScope scope = new NDScope();
              GradientCollector gc = Engine.getInstance().newGradientCollector()) {
            Gpt2.Consts k = new Gpt2.Consts(step);
            NDArray l = net.loss(step.create(flat(inputs), new Shape(inputs.length, inputs[0].length)), targets, k, true);
            assertThat(l.getDataType()).isEqualTo(DataType.FLOAT32);
            loss = l.getFloat();
            gc.backward(l);
          }
          for (NDArray p : net.parameters().values()) {
            assertThat(p.getDataType()).isEqualTo(DataType.FLOAT32);
            try (NDArray g = p.getGradient()) {
              assertThat(g.getDataType()).as("gradient of an fp32 master weight").isEqualTo(DataType.FLOAT32);
            }
          }
          opt.step(net.parameters(), 1e-3);
          AdamW.zeroGradients(net.parameters());
          double expected = adam.get("loss_before_each_step").get(s).asDouble();
          double rel = Math.abs(loss - expected) / expected;
          System.out.printf("bf16: AdamW step %d loss %.6f (fp32 golden %.6f, relative %.2g)%n", s + 1, loss, expected, rel);
          worst = Math.max(worst, rel);
        }
        assertThat(worst).isLessThan(2e-2);
        assertThat(golden.get("adamw").get("loss_before_each_step").get(0).asDouble())
            .isCloseTo(golden.get("loss_ignore_index_minus100").asDouble(), within(1e-4));
      }
    }
  }

  @Test
  void bf16RunKeepsF32CheckpointsAndResumesExactly(@TempDir Path dir) throws Exception {
    int epochs = 3;
    String yaml = String.format(Jobs.TINY, "bf16", epochs, 10, 0).replace("seed: 11", "seed: 11\n    precision: bf16");
    Path refJob = Jobs.write(dir.resolve("ref"), yaml);
    Path ref = dir.resolve("ref/out");
    List<String> precisions = new ArrayList<>();
    TrainingListener seen = new TrainingListener() {
      @Override
      public void onStart(RunInfo run) {
        precisions.add(run.precision() + " on " + run.device());
      }
    };
    assertThat(Jobs.run(refJob, ref, seen).outcome()).isEqualTo(TrainingListener.Outcome.COMPLETED);
    assertThat(precisions).singleElement().asString().isEqualTo("bf16 on cpu");

    String last = "checkpoints/" + Checkpoints.epochName(epochs);
    for (Path f : List.of(ref.resolve(last).resolve("model.safetensors"), ref.resolve(last).resolve("optimizer.safetensors"),
        ref.resolve(TrainerContract.BEST_DIR).resolve("model.safetensors"))) {
      assertThat(dtypes(f)).as("dtypes in %s", f).containsOnly("F32");
    }
    try (NDManager base = NDManager.newBaseManager();
        Model best = Model.load(ref.resolve(TrainerContract.BEST_DIR), base)) {
      Path again = dir.resolve("again");
      best.save(again);
      assertThat(Files.readAllBytes(again.resolve("model.safetensors")))
          .as("best/ reloads and saves to the same bytes").isEqualTo(Files.readAllBytes(ref.resolve("best/model.safetensors")));
    }

    Jobs.assertResumesExactly(Jobs.write(dir.resolve("resumed"), yaml), dir.resolve("resumed/out"), ref, epochs,
        "model.safetensors", "optimizer.safetensors");
  }

  private static long[] flat(long[][] rows) {
    long[] f = new long[rows.length * rows[0].length];
    for (int i = 0; i < rows.length; i++) {
      System.arraycopy(rows[i], 0, f, i * rows[0].length, rows[0].length);
    }
    return f;
  }

  /** The dtype of every tensor in a safetensors file's header. */
  private static List<String> dtypes(Path file) throws IOException {
    try (InputStream in = Files.newInputStream(file)) {
      byte[] len = in.readNBytes(8);
      long n = ByteBuffer.wrap(len).order(ByteOrder.LITTLE_ENDIAN).getLong();
      JsonNode header = new ObjectMapper().readTree(new String(in.readNBytes((int) n), StandardCharsets.UTF_8));
      List<String> out = new ArrayList<>();
      for (Iterator<String> it = header.fieldNames(); it.hasNext(); ) {
        String name = it.next();
        if (!name.equals("__metadata__")) {
          out.add(header.get(name).get("dtype").asText());
        }
      }
      assertThat(out).isNotEmpty();
      return out;
    }
  }
}
