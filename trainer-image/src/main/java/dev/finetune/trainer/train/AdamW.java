package dev.finetune.trainer.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import dev.finetune.trainer.model.SafeTensors;
import dev.finetune.trainer.model.TorchNative;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * AdamW exactly as PyTorch's {@code torch.optim.AdamW} (decoupled weight decay on every parameter, bias
 * correction): p *= 1 - lr wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 * p -= lr / (1-b1^t) * m / (sqrt(v) / sqrt(1-b2^t) + eps).
 *
 * <p>Its own class because DJL's AdamW keeps its moments in private maps that cannot be saved; these are
 * written beside the weights so that a resumed run continues exactly. All updates are in place, outside
 * autograd, so Java scalars are safe here.
 */
public final class AdamW implements AutoCloseable {
  private final double beta1;
  private final double beta2;
  private final double eps;
  private final double weightDecay;
  private final NDManager manager;
  private final Map<String, NDArray> m = new LinkedHashMap<>();
  private final Map<String, NDArray> v = new LinkedHashMap<>();
  private long step;
  private TorchNative fused;

  public AdamW(Map<String, NDArray> params, NDManager parent, double beta1, double beta2, double eps, double weightDecay) {
    this.beta1 = beta1;
    this.beta2 = beta2;
    this.eps = eps;
    this.weightDecay = weightDecay;
    this.manager = parent.newSubManager();
    for (Map.Entry<String, NDArray> e : params.entrySet()) {
      m.put(e.getKey(), manager.zeros(e.getValue().getShape()));
      v.put(e.getKey(), manager.zeros(e.getValue().getShape()));
    }
  }

  /**
   * Updates through PyTorch's fused AdamW kernel (one launch for all parameters, as torch.optim.AdamW(fused=True))
   * when {@code lib} has it; null keeps the update here, in DJL operations.
   */
  public void useFused(TorchNative lib) {
    this.fused = lib != null && lib.fusedAdamW() ? lib : null;
  }

  /** Optimizer steps taken so far (PyTorch's per-parameter {@code step}). */
  public long steps() {
    return step;
  }

  /** One update of every parameter from its gradient at learning rate {@code lr}. */
  public void step(Map<String, NDArray> params, double lr) {
    step++;
    if (fused != null) {
      try (NDScope scope = new NDScope()) {
        List<NDArray> ps = new ArrayList<>(params.values());
        List<NDArray> grads = ps.stream().map(NDArray::getGradient).toList();
        fused.adamW(ps, grads, new ArrayList<>(m.values()), new ArrayList<>(v.values()), lr, beta1, beta2, weightDecay,
            eps, step);
      }
      return;
    }
    double bc1 = 1 - Math.pow(beta1, step);
    double bc2Sqrt = Math.sqrt(1 - Math.pow(beta2, step));
    float stepSize = (float) (lr / bc1);
    try (NDScope scope = new NDScope()) {
      for (Map.Entry<String, NDArray> e : params.entrySet()) {
        NDArray p = e.getValue();
        NDArray g = p.getGradient();
        NDArray mt = m.get(e.getKey());
        NDArray vt = v.get(e.getKey());
        p.muli((float) (1 - lr * weightDecay));
        mt.muli((float) beta1).addi(g.mul((float) (1 - beta1)));
        vt.muli((float) beta2).addi(g.mul(g).muli((float) (1 - beta2)));
        NDArray denom = vt.sqrt().divi((float) bc2Sqrt).addi((float) eps);
        p.subi(mt.div(denom).muli(stepSize));
      }
    }
  }

  /** Global L2 norm of all gradients; scales them down to {@code maxNorm} when above (clip_grad_norm_). */
  public static double clipGradNorm(Map<String, NDArray> params, double maxNorm) {
    double total = gradNorm(params);
    double coef = maxNorm / (total + 1e-6);
    if (coef < 1) {
      try (NDScope scope = new NDScope()) {
        for (NDArray p : params.values()) {
          p.getGradient().muli((float) coef);
        }
      }
    }
    return total;
  }

  public static double gradNorm(Map<String, NDArray> params) {
    // Each tensor's sum of squares in float, added up in double on the device: one host read per step, not one
    // per tensor (each read waits for the GPU).
    NDArray sq = null;
    try (NDScope scope = new NDScope()) {
      for (NDArray p : params.values()) {
        NDArray g = p.getGradient();
        NDArray s = g.mul(g).sum().toType(DataType.FLOAT64, false);
        sq = sq == null ? s : sq.add(s);
      }
      return sq == null ? 0 : Math.sqrt(sq.getDouble());
    }
  }

  /** Sets every parameter's gradient to zero (after an optimizer step; backward passes accumulate). */
  public static void zeroGradients(Map<String, NDArray> params) {
    try (NDScope scope = new NDScope()) {
      for (NDArray p : params.values()) {
        NDArray g = p.getGradient();
        g.subi(g);
      }
    }
  }

  /** Moments as safetensors ({@code m.NAME}, {@code v.NAME}); the step count goes into the trainer state. */
  public void save(Path file) throws IOException {
    Map<String, NDArray> named = new LinkedHashMap<>();
    m.forEach((k, a) -> named.put("m." + k, a));
    v.forEach((k, a) -> named.put("v." + k, a));
    SafeTensors.write(file, named);
  }

  public void load(Path file, long steps) throws IOException {
    try (NDManager tmp = manager.newSubManager()) {
      int found = 0;
      for (NDArray a : SafeTensors.read(file, tmp).values()) {
        String name = a.getName();
        Map<String, NDArray> target = name.startsWith("m.") ? m : name.startsWith("v.") ? v : null;
        NDArray dst = target == null ? null : target.get(name.substring(2));
        if (dst == null || !dst.getShape().equals(a.getShape())) {
          throw new IOException(file + ": optimizer state " + name + " does not match the model");
        }
        a.copyTo(dst);
        found++;
      }
      if (found != 2 * m.size()) {
        throw new IOException(file + ": optimizer state has " + found + " tensors, expected " + 2 * m.size());
      }
    }
    this.step = steps;
  }

  /** The moments, first m then v, in parameter order: what rank 0 broadcasts when the ranks resume. */
  List<NDArray> moments() {
    List<NDArray> all = new ArrayList<>(m.values());
    all.addAll(v.values());
    return all;
  }

  /** Continues at {@code steps} taken, with moments set by other means (a broadcast from rank 0). */
  void resumeAt(long steps) {
    this.step = steps;
  }

  @Override
  public void close() {
    manager.close();
  }
}
