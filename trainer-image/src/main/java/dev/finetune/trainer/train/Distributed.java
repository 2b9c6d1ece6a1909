package dev.finetune.trainer.train;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import dev.finetune.trainer.BadJobException;
import dev.finetune.trainer.TransientException;
import dev.finetune.trainer.nativelib.TorchNative;
import java.math.BigDecimal;
import java.math.MathContext;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;

/**
 * Where this process stands in a data-parallel run, launched as torchrun launches one: {@code WORLD_SIZE},
 * {@code RANK}, {@code LOCAL_RANK}, {@code LOCAL_WORLD_SIZE}, {@code MASTER_ADDR} and {@code MASTER_PORT}. Without
 * them the run is one process ({@link #single()}), and every collective is a no-op. With them (WORLD_SIZE 1 too) the
 * ranks join one c10d process group (Gloo on CPUs, NCCL on GPUs; {@code FINETUNE_DIST_BACKEND} chooses) through the
 * trainer's native library. Gradients are summed in buckets started by hooks during the backward pass, as DDP's
 * Reducer does ({@link #syncGradientsDuringBackward}). A collective that fails (a
 * peer died, or hung past {@code FINETUNE_DIST_TIMEOUT_SECONDS}) is a {@link TransientException}: exit code 1, and
 * all ranks restart and resume from the last checkpoint.
 */
public final class Distributed implements AutoCloseable {
  public static final String ENV_TIMEOUT = "FINETUNE_DIST_TIMEOUT_SECONDS";
  public static final String ENV_BACKEND = "FINETUNE_DIST_BACKEND";
  /** Gradient bucket size in MB (decimals allowed), as DDP's bucket_cap_mb; default 25. */
  public static final String ENV_BUCKET_MB = "FINETUNE_DIST_BUCKET_MB";
  /** A peer that hangs (not dies: that fails a collective at once) fails the others after this long. */
  static final long DEFAULT_TIMEOUT_SECONDS = 600;
  /** Gradient bucket size, as DDP's bucket_cap_mb. */
  static final long DEFAULT_BUCKET_BYTES = 25L << 20;

  private final int rank;
  private final int size;
  private final int localRank;
  private final int localSize;
  private final String masterAddr;
  private final int masterPort;
  private final long timeoutSeconds;
  private final String requestedBackend;
  private final long bucketBytes;
  private TorchNative lib;
  private String backend;
  private int buckets;
  private boolean reportedBuckets;

  private Distributed(int rank, int size, int localRank, int localSize, String masterAddr, int masterPort,
      long timeoutSeconds, String requestedBackend, long bucketBytes) {
    this.requestedBackend = requestedBackend;
    this.bucketBytes = bucketBytes;
    this.rank = rank;
    this.size = size;
    this.localRank = localRank;
    this.localSize = localSize;
    this.masterAddr = masterAddr;
    this.masterPort = masterPort;
    this.timeoutSeconds = timeoutSeconds;
  }

  /** One process: rank 0 of 1. */
  public static Distributed single() {
    return new Distributed(0, 1, 0, 1, null, 0, DEFAULT_TIMEOUT_SECONDS, null, DEFAULT_BUCKET_BYTES);
  }

  /** From torchrun's environment variables; one process without WORLD_SIZE. Bad values are a bad job. */
  public static Distributed fromEnv(Map<String, String> env) {
    String world = env.get("WORLD_SIZE");
    if (world == null || world.isBlank()) {
      return single();
    }
    int size = number(env, "WORLD_SIZE", 1, Integer.MAX_VALUE, null);
    int rank = number(env, "RANK", 0, size - 1, null);
    int localSize = number(env, "LOCAL_WORLD_SIZE", 1, size, "1");
    int localRank = number(env, "LOCAL_RANK", 0, localSize - 1, "0");
    String addr = env.get("MASTER_ADDR");
    if (addr == null || addr.isBlank()) {
      throw new BadJobException("WORLD_SIZE is " + size + " but MASTER_ADDR is not set: set it to rank 0's host name"
          + " or address (and MASTER_PORT), as torchrun does");
    }
    int port = number(env, "MASTER_PORT", 1, 65535, null);
    long timeout = number(env, ENV_TIMEOUT, 1, Integer.MAX_VALUE, Long.toString(DEFAULT_TIMEOUT_SECONDS));
    String backend = env.get(ENV_BACKEND);
    if (backend != null && !backend.isBlank() && !List.of("gloo", "nccl").contains(backend.strip())) {
      throw new BadJobException(ENV_BACKEND + " is '" + backend + "'; it must be gloo or nccl (or unset: NCCL on GPUs,"
          + " else Gloo)");
    }
    return new Distributed(rank, size, localRank, localSize, addr.strip(), port, timeout,
        backend == null || backend.isBlank() ? null : backend.strip(), bucketBytes(env.get(ENV_BUCKET_MB)));
  }

  private static long bucketBytes(String mb) {
    if (mb == null || mb.isBlank()) {
      return DEFAULT_BUCKET_BYTES;
    }
    try {
      double v = Double.parseDouble(mb.strip());
      if (v > 0 && v <= 1 << 20) {
        return Math.max(1, Math.round(v * (1 << 20)));
      }
    } catch (NumberFormatException e) {
      // named below
    }
    throw new BadJobException(ENV_BUCKET_MB + " is '" + mb + "'; it must be a size in MB above 0 (e.g. 25, DDP's"
        + " bucket_cap_mb default)");
  }

  private static int number(Map<String, String> env, String name, int min, int max, String fallback) {
    String v = env.getOrDefault(name, fallback);
    if (v == null || v.isBlank()) {
      throw new BadJobException("WORLD_SIZE is set but " + name + " is not: a distributed run needs WORLD_SIZE, RANK,"
          + " MASTER_ADDR and MASTER_PORT (LOCAL_RANK and LOCAL_WORLD_SIZE default to 0 and 1), as torchrun sets them");
    }
    try {
      int n = Integer.parseInt(v.strip());
      if (n < min || n > max) {
        throw new BadJobException(name + " is " + n + "; it must be from " + min + " to " + max);
      }
      return n;
    } catch (NumberFormatException e) {
      throw new BadJobException(name + " is '" + v + "', not a whole number");
    }
  }

  public int rank() {
    return rank;
  }

  public int size() {
    return size;
  }

  public int localRank() {
    return localRank;
  }

  /** The largest share of a global batch one of {@code world} ranks takes (shares differ by at most one record). */
  public static int batchShare(int batchSize, int world) {
    return (batchSize + world - 1) / world;
  }

  /**
   * Over how many ranks AdamW's state is sharded (ZeRO-1): all of them when every weight trains; a LoRA adapter's
   * state is small and stays whole on each rank.
   */
  public static int optimizerShards(boolean everyWeightTrains, int world) {
    return everyWeightTrains ? world : 1;
  }

  /** The process group's backend once joined (gloo or nccl), else null. */
  public String backend() {
    return lib == null ? null : backend;
  }

  /** Whether this process writes the run folder and serves /progress and /metrics: rank 0. */
  public boolean isMain() {
    return rank == 0;
  }

  /** Whether this process is one rank of a process group (torchrun's environment was given, WORLD_SIZE 1 too). */
  public boolean isDistributed() {
    return masterAddr != null;
  }

  /**
   * Joins the process group (after the engine is loaded): NCCL on a GPU, else Gloo. Rank 0 waits for every other rank
   * to arrive, up to the timeout.
   */
  public void join() throws TransientException {
    if (!isDistributed() || lib != null) {
      return;
    }
    TorchNative native_ = TorchNative.get().orElseThrow(() -> new BadJobException("WORLD_SIZE is " + size
        + ": a distributed run needs the trainer's native library (c10d), and " + TorchNative.unavailableReason()));
    if (!native_.distributed()) {
      throw new BadJobException("WORLD_SIZE is " + size + " but the trainer's native library (libtorch " + native_.version()
          + ") was built without c10d (no gloo headers, no NCCL; Debian: libgloo-dev): rebuild it with"
          + " trainer-image/native/build.sh");
    }
    boolean gpu = Engine.getInstance().defaultDevice().isGpu();
    backend = requestedBackend != null ? requestedBackend : gpu && native_.nccl() ? "nccl" : "gloo";
    if (backend.equals("nccl") ? !native_.nccl() || !gpu : !native_.gloo()) {
      throw new BadJobException(ENV_BACKEND + " " + backend + " is not available here (" + (gpu ? "GPU" : "CPU") + "; the"
          + " native library has " + (native_.gloo() ? "Gloo" : "no Gloo") + " and " + (native_.nccl() ? "NCCL" : "no NCCL")
          + ")");
    }
    try {
      native_.joinGroup(backend, masterAddr, masterPort, rank, size, timeoutSeconds * 1000);
    } catch (RuntimeException e) {
      throw new TransientException("rank " + rank + " of " + size + " could not join the process group at " + masterAddr
          + ":" + masterPort + " (" + e.getMessage() + "); the ranks restart together", e);
    }
    lib = native_;
    System.out.println("rank " + rank + " of " + size + ": joined the process group (" + backend + ")");
  }

  /** "rank 0 of 2 (local 0 of 2, rendezvous at 10.0.0.4:29500); ", the start of a run's first line; "" for one process. */
  public String describe() {
    return !isDistributed() ? "" : "rank " + rank + " of " + size + " (local " + localRank + " of " + localSize
        + ", rendezvous at " + masterAddr + ":" + masterPort + "); ";
  }

  /** Sums the arrays over all ranks, in place. */
  public void allReduceSum(List<NDArray> arrays) throws TransientException {
    if (isDistributed() && !arrays.isEmpty()) {
      collective("an all-reduce", () -> lib.allReduceSum(arrays, bucketBytes));
    }
  }

  /** Sums the gradients of {@code trainable} over the ranks, in place, once the backward passes are done. */
  public void allReduceGradients(Collection<NDArray> trainable, NDManager base) throws TransientException {
    if (!isDistributed()) {
      return;
    }
    try (NDManager grads = base.newSubManager()) {
      List<NDArray> all = new ArrayList<>();
      for (NDArray w : trainable) {
        NDArray g = w.getGradient(); // a handle on the weight's gradient: closing it leaves the gradient
        g.attach(grads);
        all.add(g);
      }
      allReduceSum(all);
    }
  }

  /**
   * Arms the gradient all-reduce of the next backward pass (the last micro-batch of an optimizer step): each bucket of
   * gradients is summed over the ranks as soon as the backward pass has filled it, overlapping the rest of the pass.
   * {@link #finishGradientSync()} ends it.
   */
  public void syncGradientsDuringBackward(Collection<NDArray> trainable) throws TransientException {
    if (isDistributed() && !trainable.isEmpty()) {
      collective("arming the gradient all-reduce", () -> buckets = lib.armGradientSync(trainable, bucketBytes));
    }
  }

  /**
   * Waits for the gradient all-reduce the last backward pass started (and starts the buckets it did not fill): every
   * rank then holds the gradients summed over the ranks. The first step says how the buckets went.
   */
  public void finishGradientSync() throws TransientException {
    if (isDistributed() && buckets > 0) {
      int[] early = new int[1];
      collective("the gradient all-reduce", () -> early[0] = lib.finishGradientSync());
      if (!reportedBuckets) {
        reportedBuckets = true;
        System.out.printf("rank %d of %d: gradients all-reduced in %d bucket%s of up to %s MB, %d started during the"
            + " backward pass%n", rank, size, buckets, buckets == 1 ? "" : "s", mb(bucketBytes), early[0]);
      }
      buckets = 0;
    }
  }

  /** Gives every rank rank 0's arrays, in place. */
  public void broadcastFromMain(List<NDArray> arrays) throws TransientException {
    broadcastFrom(0, arrays);
  }

  /** Gives every rank rank {@code root}'s arrays, in place (every rank passes arrays of the same shapes). */
  public void broadcastFrom(int root, List<NDArray> arrays) throws TransientException {
    if (isDistributed() && !arrays.isEmpty()) {
      collective("a broadcast", () -> lib.broadcast(arrays, root, bucketBytes));
    }
  }

  private static String mb(long bytes) {
    return BigDecimal.valueOf(bytes / (double) (1 << 20)).round(new MathContext(3))
        .stripTrailingZeros().toPlainString();
  }

  private void collective(String what, Runnable op) throws TransientException {
    try {
      op.run();
    } catch (RuntimeException e) {
      throw new TransientException("rank " + rank + " of " + size + ": " + what + " failed (" + e.getMessage() + "): another"
          + " rank died or did not answer within " + timeoutSeconds + " s. The ranks restart together and resume from the"
          + " last checkpoint", e);
    }
  }

  @Override
  public void close() {
    if (lib != null) {
      lib.leaveGroup();
      lib = null;
    }
  }
}
