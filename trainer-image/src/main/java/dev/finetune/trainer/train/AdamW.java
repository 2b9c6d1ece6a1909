package dev.finetune.trainer.train;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.finetune.trainer.TransientException;
import dev.finetune.trainer.model.NoGrad;
import dev.finetune.trainer.model.SafeTensors;
import dev.finetune.trainer.nativelib.TorchNative;
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
 *
 * <p>In a data-parallel run that trains every weight, {@link #shard} splits the state over the ranks as ZeRO stage 1
 * does: each rank keeps the moments of its share of the parameters (about 1/N of them) and updates only those, then
 * each parameter goes from its owner to every rank ({@link #shareUpdated}). The arithmetic is the unsharded one, so
 * the result is too. Checkpoints still hold the whole state: rank 0 gathers the other shards onto the host to write
 * them ({@link #gatherToMain}), and hands each rank its shard when they resume ({@link #receiveFromMain}).
 */
public final class AdamW implements AutoCloseable {
  private final double beta1;
  private final double beta2;
  private final double eps;
  private final double weightDecay;
  private final NDManager manager;
  private final Map<String, Shape> shapes = new LinkedHashMap<>();
  /** The moments this rank keeps: every parameter's, or its shard's. */
  private final Map<String, NDArray> m = new LinkedHashMap<>();
  private final Map<String, NDArray> v = new LinkedHashMap<>();
  private long step;
  private TorchNative fused;
  private Distributed dist = Distributed.single();
  /** Sharded: the rank that keeps each parameter's moments and updates it; empty when every rank keeps all. */
  private Map<String, Integer> owner = Map.of();
  /** Sharded, on rank 0 around a checkpoint or a resume: the other ranks' moments, on the host. */
  private NDManager others;
  private final Map<String, NDArray[]> othersMoments = new LinkedHashMap<>();

  public AdamW(Map<String, NDArray> params, NDManager parent, double beta1, double beta2, double eps, double weightDecay) {
    this.beta1 = beta1;
    this.beta2 = beta2;
    this.eps = eps;
    this.weightDecay = weightDecay;
    this.manager = parent.newSubManager();
    for (Map.Entry<String, NDArray> e : params.entrySet()) {
      shapes.put(e.getKey(), e.getValue().getShape());
      m.put(e.getKey(), manager.zeros(e.getValue().getShape()));
      v.put(e.getKey(), manager.zeros(e.getValue().getShape()));
    }
  }

  /**
   * ZeRO-1 over the ranks of {@code d} (nothing for one process): this rank keeps and updates only its share of the
   * parameters, the largest first to whichever rank holds least, so the shares are as even as the tensors allow.
   */
  public void shard(Distributed d) {
    if (!d.isDistributed() || d.size() < 2) {
      return;
    }
    dist = d;
    Map<String, Long> sizes = new LinkedHashMap<>();
    shapes.forEach((k, s) -> sizes.put(k, s.size()));
    owner = owners(sizes, d.size());
    long all = sizes.values().stream().mapToLong(Long::longValue).sum();
    long kept = 0;
    for (Map.Entry<String, Integer> e : owner.entrySet()) {
      if (e.getValue() != d.rank()) {
        m.remove(e.getKey()).close();
        v.remove(e.getKey()).close();
      } else {
        kept += sizes.get(e.getKey());
      }
    }
    System.out.printf("rank %d of %d: AdamW state sharded (ZeRO-1): this rank keeps the moments of %d of %d parameter"
        + " tensors, %,d of %,d values (%s of %s)%n", d.rank(), d.size(), m.size(), shapes.size(), kept, all,
        MemoryPlan.gib(8 * kept), MemoryPlan.gib(8 * all));
  }

  /** Each parameter's owner among {@code world} ranks: largest first to the rank with the fewest values so far. */
  static Map<String, Integer> owners(Map<String, Long> sizes, int world) {
    long[] load = new long[world];
    Map<String, Integer> out = new LinkedHashMap<>();
    sizes.keySet().forEach(k -> out.put(k, -1)); // model order
    List<Map.Entry<String, Long>> bySize = new ArrayList<>(sizes.entrySet());
    bySize.sort(Map.Entry.<String, Long>comparingByValue().reversed()); // stable: ties keep model order
    for (Map.Entry<String, Long> e : bySize) {
      int r = 0;
      for (int i = 1; i < world; i++) {
        if (load[i] < load[r]) {
          r = i;
        }
      }
      out.put(e.getKey(), r);
      load[r] += e.getValue();
    }
    return out;
  }

  /** Whether the state is split over the ranks ({@link #shard}). */
  public boolean sharded() {
    return !owner.isEmpty();
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

  /** One update of every parameter this rank keeps the moments of (all, unless sharded) at learning rate {@code lr}. */
  public void step(Map<String, NDArray> params, double lr) {
    step++;
    if (fused != null) {
      try (NDScope scope = new NDScope()) {
        List<NDArray> ps = new ArrayList<>();
        params.forEach((k, p) -> {
          if (m.containsKey(k)) {
            ps.add(p);
          }
        });
        if (!ps.isEmpty()) {
          List<NDArray> grads = ps.stream().map(NDArray::getGradient).toList();
          fused.adamW(ps, grads, new ArrayList<>(m.values()), new ArrayList<>(v.values()), lr, beta1, beta2, weightDecay,
              eps, step);
        }
      }
      return;
    }
    double bc1 = 1 - Math.pow(beta1, step);
    double bc2Sqrt = Math.sqrt(1 - Math.pow(beta2, step));
    float stepSize = (float) (lr / bc1);
    for (Map.Entry<String, NDArray> e : params.entrySet()) {
      // a scope per weight: its temporaries (four of its size) go before the next weight's are made
      try (NDScope scope = new NDScope()) {
        NDArray mt = m.get(e.getKey());
        if (mt == null) {
          continue; // another rank's shard
        }
        NDArray p = e.getValue();
        NDArray g = p.getGradient();
        NDArray vt = v.get(e.getKey());
        p.muli((float) (1 - lr * weightDecay));
        mt.muli((float) beta1).addi(g.mul((float) (1 - beta1)));
        vt.muli((float) beta2).addi(g.mul(g).muli((float) (1 - beta2)));
        NDArray denom = vt.sqrt().divi((float) bc2Sqrt).addi((float) eps);
        p.subi(mt.div(denom).muli(stepSize));
      }
    }
  }

  /** Sharded, after {@link #step}: every rank gets each parameter from the rank that updated it. */
  public void shareUpdated(Map<String, NDArray> params) throws TransientException {
    for (int r = 0; r < dist.size() && sharded(); r++) {
      List<NDArray> mine = new ArrayList<>();
      for (Map.Entry<String, NDArray> e : params.entrySet()) {
        if (owner.get(e.getKey()) == r) {
          mine.add(e.getValue());
        }
      }
      dist.broadcastFrom(r, mine);
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

  /**
   * Moments as safetensors ({@code m.NAME}, {@code v.NAME}); the step count goes into the trainer state. Sharded, on
   * rank 0 after {@link #gatherToMain}: the whole state, as one process writes it.
   */
  public void save(Path file) throws IOException {
    Map<String, NDArray> named = new LinkedHashMap<>();
    for (int which = 0; which < 2; which++) {
      for (String k : shapes.keySet()) {
        NDArray a = which == 0 ? m.get(k) : v.get(k);
        if (a == null) {
          NDArray[] gathered = othersMoments.get(k);
          if (gathered == null) {
            throw new IllegalStateException("the moments of " + k + " are another rank's: gatherToMain() first");
          }
          a = gathered[which];
        }
        named.put((which == 0 ? "m." : "v.") + k, a);
      }
    }
    SafeTensors.write(file, named);
  }

  /**
   * Reads the moments a checkpoint holds (rank 0, or one process). Sharded, the other ranks' shares stay on the host
   * until {@link #receiveFromMain} hands them over.
   */
  public void load(Path file, long steps) throws IOException {
    releaseGathered();
    NDManager tmp = sharded() ? manager.newSubManager(Device.cpu()) : manager.newSubManager();
    boolean keep = false;
    try {
      int found = 0;
      for (NDArray a : SafeTensors.read(file, tmp).values()) {
        String name = a.getName();
        int which = name.startsWith("m.") ? 0 : name.startsWith("v.") ? 1 : -1;
        String param = which < 0 ? null : name.substring(2);
        if (param == null || !a.getShape().equals(shapes.get(param))) {
          throw new IOException(file + ": optimizer state " + name + " does not match the model");
        }
        NDArray dst = (which == 0 ? m : v).get(param);
        if (dst != null) {
          NoGrad.copy(a.getDevice().equals(dst.getDevice()) ? a : a.toDevice(dst.getDevice(), false), dst);
        } else {
          othersMoments.computeIfAbsent(param, k -> new NDArray[2])[which] = a;
          keep = true;
        }
        found++;
      }
      if (found != 2 * shapes.size()) {
        throw new IOException(file + ": optimizer state has " + found + " tensors, expected " + 2 * shapes.size());
      }
    } finally {
      if (keep) {
        others = tmp;
      } else {
        othersMoments.clear();
        tmp.close();
      }
    }
    this.step = steps;
  }

  /**
   * Before rank 0 writes a checkpoint (every rank calls it): rank 0 receives the other ranks' shards, one parameter at
   * a time, onto the host. Nothing when not sharded. {@link #releaseGathered} frees them.
   */
  public void gatherToMain() throws TransientException {
    if (!sharded()) {
      return;
    }
    releaseGathered();
    if (dist.isMain()) {
      others = manager.newSubManager(Device.cpu());
    }
    for (Map.Entry<String, Integer> e : owner.entrySet()) {
      int from = e.getValue();
      if (from == 0) {
        continue;
      }
      try (NDManager tmp = manager.newSubManager()) {
        List<NDArray> pair = from == dist.rank() ? List.of(m.get(e.getKey()), v.get(e.getKey()))
            : List.of(tmp.zeros(shapes.get(e.getKey())), tmp.zeros(shapes.get(e.getKey())));
        dist.broadcastFrom(from, pair);
        if (dist.isMain()) {
          othersMoments.put(e.getKey(), new NDArray[] {pair.get(0).toDevice(Device.cpu(), true),
              pair.get(1).toDevice(Device.cpu(), true)});
          for (NDArray a : othersMoments.get(e.getKey())) {
            a.attach(others);
          }
        }
      }
    }
  }

  /** Frees what {@link #gatherToMain} or a sharded {@link #load} left on rank 0's host. */
  public void releaseGathered() {
    othersMoments.clear();
    if (others != null) {
      others.close();
      others = null;
    }
  }

  /**
   * Distributed resume (every rank calls it): each rank gets the moments it keeps from what rank 0 loaded, and
   * continues at {@code steps} taken.
   */
  void receiveFromMain(long steps) throws TransientException {
    if (!sharded()) {
      List<NDArray> all = new ArrayList<>(m.values());
      all.addAll(v.values());
      dist.broadcastFrom(0, all);
    } else {
      for (Map.Entry<String, Integer> e : owner.entrySet()) {
        if (e.getValue() == 0) {
          continue;
        }
        try (NDManager tmp = manager.newSubManager()) {
          List<NDArray> pair;
          if (dist.isMain()) {
            NDArray[] loaded = othersMoments.get(e.getKey());
            pair = List.of(loaded[0].toDevice(tmp.getDevice(), true), loaded[1].toDevice(tmp.getDevice(), true));
            pair.forEach(a -> a.attach(tmp));
          } else if (e.getValue() == dist.rank()) {
            pair = List.of(m.get(e.getKey()), v.get(e.getKey()));
          } else {
            pair = List.of(tmp.zeros(shapes.get(e.getKey())), tmp.zeros(shapes.get(e.getKey())));
          }
          dist.broadcastFrom(0, pair);
        }
      }
      releaseGathered();
    }
    this.step = steps;
  }

  @Override
  public void close() {
    releaseGathered();
    manager.close();
  }
}
