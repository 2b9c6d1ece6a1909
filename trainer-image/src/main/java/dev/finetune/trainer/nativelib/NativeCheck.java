package dev.finetune.trainer.nativelib;

import dev.finetune.trainer.model.Gpt2;
import dev.finetune.trainer.model.PrecisionPolicy;
import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.training.GradientCollector;
import dev.finetune.trainer.train.AdamW;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.function.Function;

/**
 * Each kernel of the native library beside the pure-DJL operations it replaces, on the engine's default device:
 * GELU, cross-entropy (value and gradient), the bf16 cast (gradients reach the fp32 source), and where the library
 * has them scaled-dot-product attention and fused AdamW. {@code main} prints one JSON line with the largest
 * differences and exits 1 when one is above its tolerance, 2 when there is no library.
 */
public final class NativeCheck {
  /** Largest differences by check, and the checks this library cannot run. */
  public record Report(String device, String torch, Map<String, Double> diffs, Map<String, Double> tolerances,
      List<String> skipped) {
    public boolean agrees() {
      return diffs.entrySet().stream().allMatch(e -> e.getValue() <= tolerances.get(e.getKey()));
    }

    public String json() {
      StringBuilder sb = new StringBuilder(String.format(Locale.ROOT,
          "{\"impl\": \"native-check\", \"device\": \"%s\", \"torch\": \"%s\", \"agrees\": %b", device, torch, agrees()));
      diffs.forEach((k, v) -> sb.append(String.format(Locale.ROOT, ", \"%s_max_diff\": %.3g", k, v)));
      sb.append(", \"skipped\": [");
      for (int i = 0; i < skipped.size(); i++) {
        sb.append(i == 0 ? "\"" : ", \"").append(skipped.get(i)).append('"');
      }
      return sb.append("]}").toString();
    }
  }

  private NativeCheck() {}

  public static void main(String[] args) {
    System.setProperty("ai.djl.offline", "true");
    if (TorchNative.get().isEmpty()) {
      System.out.println("{\"impl\": \"native-check\", \"error\": \"" + TorchNative.unavailableReason().replace('"', '\'') + "\"}");
      System.exit(2);
    }
    try (NDManager base = NDManager.newBaseManager()) {
      Report r = run(TorchNative.get().get(), base);
      System.out.println(r.json());
      System.exit(r.agrees() ? 0 : 1);
    }
  }

  public static Report run(TorchNative lib, NDManager base) {
    Map<String, Double> diffs = new LinkedHashMap<>();
    Map<String, Double> tol = new LinkedHashMap<>();
    List<String> skipped = new ArrayList<>();
    Engine.getInstance().setRandomSeed(7);
    try (NDManager m = base.newSubManager(); NDScope scope = new NDScope()) {
      Gpt2.Consts k = new Gpt2.Consts(m);
      NDArray x = m.randomNormal(new Shape(64, 96)).mul(3);
      diffs.put("gelu", maxDiff(lib.gelu(x), Gpt2.geluOps(x, k)));
      tol.put("gelu", 1e-5);

      long[][] targets = new long[3][7];
      for (int i = 0; i < 3; i++) {
        for (int j = 0; j < 7; j++) {
          targets[i][j] = j >= 5 && i > 0 ? -100 : (i * 7 + j * 13) % 50;
        }
      }
      NDArray logits = m.randomNormal(new Shape(3, 7, 50)).mul(2);
      NDArray[] ce = valueAndGradient(logits, l -> lib.crossEntropy(l, PrecisionPolicy.targets(m, targets)));
      NDArray[] ceOps = valueAndGradient(logits, l -> Gpt2.loss(l, targets, k));
      diffs.put("cross_entropy", Math.max(maxDiff(ce[0], ceOps[0]), maxDiff(ce[1], ceOps[1])));
      tol.put("cross_entropy", 1e-5);

      // A bf16 matmul on casts of fp32 values: gradients land on the fp32 source, close to the fp32 ones.
      NDArray a = m.randomNormal(new Shape(16, 32));
      NDArray w = m.randomNormal(new Shape(32, 8));
      NDArray[] mixed = valueAndGradient(a, s -> lib.toFp32(lib.toBf16(s).matMul(lib.toBf16(w))).sum());
      NDArray[] full = valueAndGradient(a, s -> s.matMul(w).sum());
      if (mixed[1].getDataType() != DataType.FLOAT32) {
        throw new IllegalStateException("the gradient through a bf16 cast arrived as " + mixed[1].getDataType());
      }
      diffs.put("bf16_cast_gradient_relative", maxDiff(mixed[1], full[1]) / maxAbs(full[1]));
      tol.put("bf16_cast_gradient_relative", 2e-2);

      if (lib.attention()) {
        NDArray q = m.randomNormal(new Shape(2, 4, 33, 16));
        NDArray kk = m.randomNormal(new Shape(2, 4, 33, 16));
        NDArray v = m.randomNormal(new Shape(2, 4, 33, 16));
        NDArray att = q.matMul(kk.transpose(0, 1, 3, 2)).mul(k.attentionScale(16)).add(k.causalMask(33)).softmax(-1);
        diffs.put("attention", maxDiff(lib.causalAttention(q, kk, v, 0), att.matMul(v)));
        tol.put("attention", 1e-4);
      } else {
        skipped.add("attention (libtorch " + lib.version() + " has no scaled_dot_product_attention)");
      }
      if (lib.fusedAdamW()) {
        diffs.put("adamw", adamW(lib, m));
        tol.put("adamw", 1e-6);
      } else {
        skipped.add("adamw (libtorch " + lib.version() + " has no _fused_adamw_)");
      }
    }
    return new Report(Engine.getInstance().defaultDevice().toString(), lib.version(), diffs, tol, skipped);
  }

  /** Three AdamW steps on the same parameters and gradients: fused kernel against the DJL operations. */
  private static double adamW(TorchNative lib, NDManager m) {
    Map<String, NDArray> fused = new LinkedHashMap<>();
    Map<String, NDArray> ops = new LinkedHashMap<>();
    for (int i = 0; i < 3; i++) {
      NDArray p = m.randomNormal(new Shape(5, 7 + i));
      fused.put("p" + i, p.duplicate());
      ops.put("p" + i, p.duplicate());
    }
    try (AdamW a = new AdamW(fused, m, 0.9, 0.999, 1e-8, 0.1); AdamW b = new AdamW(ops, m, 0.9, 0.999, 1e-8, 0.1)) {
      a.useFused(lib);
      for (Map<String, NDArray> params : List.of(fused, ops)) {
        params.values().forEach(p -> p.setRequiresGradient(true));
      }
      for (int s = 0; s < 3; s++) {
        for (Map<String, NDArray> params : List.of(fused, ops)) {
          try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
            NDArray loss = null;
            for (NDArray p : params.values()) {
              NDArray t = p.mul(p).sum();
              loss = loss == null ? t : loss.add(t);
            }
            gc.backward(loss);
          }
        }
        a.step(fused, 1e-2);
        b.step(ops, 1e-2);
        AdamW.zeroGradients(fused);
        AdamW.zeroGradients(ops);
      }
    }
    double d = 0;
    for (String name : fused.keySet()) {
      d = Math.max(d, maxDiff(fused.get(name), ops.get(name)));
    }
    return d;
  }

  private static NDArray[] valueAndGradient(NDArray input, Function<NDArray, NDArray> f) {
    NDArray x = input.duplicate();
    x.setRequiresGradient(true);
    try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
      NDArray y = f.apply(x);
      gc.backward(y.sum());
      return new NDArray[] {y, x.getGradient().duplicate()};
    }
  }

  private static double maxDiff(NDArray a, NDArray b) {
    return NDArrays.sub(a.toType(DataType.FLOAT32, false), b.toType(DataType.FLOAT32, false)).abs().max().getFloat();
  }

  private static double maxAbs(NDArray a) {
    return a.abs().max().getFloat();
  }
}
