package dev.finetune.trainer.nativelib;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.engine.PtNDManager;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Collection;
import java.util.List;
import java.util.Optional;

/**
 * The trainer's own native library ({@code trainer-image/native/finetune_native.cc}): the libtorch calls DJL's JNI
 * lacks (a cast that keeps the autograd graph, for bf16 mixed precision; TF32; fused tanh GELU; cross-entropy;
 * scaled-dot-product attention; fused AdamW), on DJL's tensor handles. It is found at {@code FINETUNE_NATIVE_LIB}
 * or as {@code libfinetune_native.so} in the folder {@code PYTORCH_LIBRARY_PATH} names, and used only when it was
 * built against the libtorch version DJL runs: a library for another libtorch would crash the JVM.
 * {@link #get()} is empty otherwise and {@link #unavailableReason()} says why.
 */
public final class TorchNative {
  public static final String ENV_LIB = "FINETUNE_NATIVE_LIB";
  public static final String LIB_NAME = "libfinetune_native.so";
  private static final int FP32 = 0;
  private static final int BF16 = 1;
  private static volatile Optional<TorchNative> instance;
  private static volatile String unavailable;

  private final String torchVersion;

  private TorchNative(String torchVersion) {
    this.torchVersion = torchVersion;
  }

  /** The library, loaded on first use (after the PyTorch engine), or empty when there is none for this libtorch. */
  public static Optional<TorchNative> get() {
    if (instance == null) {
      synchronized (TorchNative.class) {
        if (instance == null) {
          instance = load();
        }
      }
    }
    return instance;
  }

  /** Why {@link #get()} is empty (what is missing and how to get it), or null when the library is loaded. */
  public static String unavailableReason() {
    get();
    return unavailable;
  }

  private static Optional<TorchNative> load() {
    String env = System.getenv(ENV_LIB);
    String torchDir = System.getenv("PYTORCH_LIBRARY_PATH");
    Path lib = env != null && !env.isBlank() ? Path.of(env)
        : torchDir != null && !torchDir.isBlank() ? Path.of(torchDir, LIB_NAME) : null;
    String build = "build it with trainer-image/native/build.sh against the libtorch DJL loads (the CUDA image ships"
        + " one) and set " + ENV_LIB;
    if (lib == null || !Files.isRegularFile(lib)) {
      unavailable = "the trainer's native library " + LIB_NAME + " is not there (" + ENV_LIB + " "
          + (lib == null ? "is not set" : "names " + lib + ", which does not exist") + "); " + build;
      return Optional.empty();
    }
    String engineVersion = Engine.getEngine("PyTorch").getVersion();
    try {
      System.load(lib.toAbsolutePath().toString());
    } catch (UnsatisfiedLinkError e) {
      unavailable = lib + " does not load against libtorch " + engineVersion + " (" + e.getMessage() + "); " + build;
      return Optional.empty();
    }
    String built = torchVersion();
    if (!majorMinor(built).equals(majorMinor(engineVersion))) {
      unavailable = lib + " was built for libtorch " + built + " but DJL runs libtorch " + engineVersion + "; " + build;
      return Optional.empty();
    }
    unavailable = null;
    return Optional.of(new TorchNative(built));
  }

  private static String majorMinor(String version) {
    String[] p = version.split("[.+]");
    return p.length < 2 ? version : p[0] + "." + p[1];
  }

  /** The libtorch version the library was built against. */
  public String version() {
    return torchVersion;
  }

  /** Whether {@link #causalAttention} is there (libtorch 2.0 and later). */
  public boolean attention() {
    return hasAttention();
  }

  /** Whether {@link #adamW} is there (libtorch 2.1 and later; on CPUs 2.4 and later). */
  public boolean fusedAdamW() {
    return hasFusedAdamW();
  }

  /** Compute capability of CUDA device 0 as major * 10 + minor (90 for H100/H200), or -1 without CUDA. */
  public int capability() {
    return cudaCapability();
  }

  /** Name of CUDA device 0, or "" without CUDA. */
  public String deviceName() {
    return cudaDeviceName();
  }

  /** Lets fp32 matmuls and convolutions use TF32 tensor cores (GPUs of compute capability 8.0 and up). */
  public void tf32(boolean on) {
    allowTf32(on);
  }

  /** {@code x} in bf16, on the autograd graph: gradients of the result reach {@code x} in its own dtype. */
  public NDArray toBf16(NDArray x) {
    return wrap(x, cast(handle(x), BF16));
  }

  /** {@code x} in fp32, on the autograd graph. */
  public NDArray toFp32(NDArray x) {
    return wrap(x, cast(handle(x), FP32));
  }

  /** GPT-2's tanh GELU in one kernel (same dtype as {@code x}). */
  public NDArray gelu(NDArray x) {
    return wrap(x, geluTanh(handle(x)));
  }

  /** Mean cross-entropy (fp32) of logits [B, T, V] against int64 targets [B, T], ignoring -100; 0 with no target. */
  public NDArray crossEntropy(NDArray logits, NDArray targets) {
    return wrap(logits, crossEntropy(handle(logits), handle(targets)));
  }

  /** Causal attention softmax(q k^T / sqrt(hd)) v of [B, H, T, hd] inputs without materialising T x T. */
  public NDArray causalAttention(NDArray q, NDArray k, NDArray v, double dropout) {
    return wrap(q, causalAttention(handle(q), handle(k), handle(v), dropout));
  }

  /** One fused AdamW update of all parameters in place ({@code step} counts from 1), as torch.optim.AdamW(fused=True). */
  public void adamW(List<NDArray> params, List<NDArray> grads, List<NDArray> m, List<NDArray> v, double lr,
      double beta1, double beta2, double weightDecay, double eps, long step) {
    fusedAdamW(handles(params), handles(grads), handles(m), handles(v), lr, beta1, beta2, weightDecay, eps, step);
  }

  /** Whether the library was built with c10d (data-parallel training over Gloo, and NCCL when {@link #nccl()}). */
  public boolean distributed() {
    return hasDistributed();
  }

  /** Whether it has ProcessGroupGloo (CPU tensors; CUDA tensors through host memory). */
  public boolean gloo() {
    return hasGloo();
  }

  /** Whether it has ProcessGroupNCCL (a CUDA libtorch with NCCL). */
  public boolean nccl() {
    return hasNccl();
  }

  /**
   * Joins the process group ({@code backend} gloo or nccl): rank 0 serves the TCPStore rendezvous at host:port; every
   * collective fails after {@code timeoutMs}, and at once when a peer's connection closes.
   */
  public void joinGroup(String backend, String host, int port, int rank, int size, long timeoutMs) {
    distInit(backend, host, port, rank, size, timeoutMs);
  }

  /** Sums the arrays over all ranks in place, in flattened buckets of at most {@code bucketBytes}. */
  public void allReduceSum(List<NDArray> arrays, long bucketBytes) {
    distAllReduce(handles(arrays), bucketBytes);
  }

  /**
   * Arms the gradient all-reduce of the next backward pass over {@code params} (the trainable parameters, in model
   * order): hooks on their gradient accumulators start each bucket of at most {@code bucketBytes} as soon as the
   * backward pass has filled it. Returns the number of buckets.
   */
  public int armGradientSync(Collection<NDArray> params, long bucketBytes) {
    return distGradSyncArm(handles(List.copyOf(params)), bucketBytes);
  }

  /**
   * Ends the armed gradient all-reduce: starts the buckets still waiting, waits for all and writes the sums into the
   * gradients. Returns how many buckets had started during the backward pass.
   */
  public int finishGradientSync() {
    return distGradSyncFinish();
  }

  /** Overwrites the arrays on every rank with rank {@code root}'s, in place. */
  public void broadcast(List<NDArray> arrays, int root, long bucketBytes) {
    distBroadcast(handles(arrays), root, bucketBytes);
  }

  /** Leaves the process group. */
  public void leaveGroup() {
    distClose();
  }

  private static long handle(NDArray a) {
    return ((PtNDArray) a).getHandle();
  }

  private static long[] handles(List<NDArray> list) {
    return list.stream().mapToLong(TorchNative::handle).toArray();
  }

  /** A new tensor handle as an NDArray on the manager of {@code like} (which then closes it). */
  private static NDArray wrap(NDArray like, long handle) {
    return new PtNDArray((PtNDManager) like.getManager(), handle);
  }

  private static native String torchVersion();

  private static native boolean hasAttention();

  private static native boolean hasFusedAdamW();

  private static native int cudaCapability();

  private static native String cudaDeviceName();

  private static native void allowTf32(boolean on);

  private static native long cast(long x, int dtype);

  private static native long geluTanh(long x);

  private static native long crossEntropy(long logits, long targets);

  private static native long causalAttention(long q, long k, long v, double dropout);

  private static native boolean hasDistributed();

  private static native boolean hasGloo();

  private static native boolean hasNccl();

  private static native void distInit(String backend, String host, int port, int rank, int size, long timeoutMs);

  private static native void distAllReduce(long[] handles, long bucketBytes);

  private static native void distBroadcast(long[] handles, int root, long bucketBytes);

  private static native int distGradSyncArm(long[] handles, long bucketBytes);

  private static native int distGradSyncFinish();

  private static native void distClose();

  private static native void fusedAdamW(long[] params, long[] grads, long[] m, long[] v, double lr, double beta1,
      double beta2, double weightDecay, double eps, long step);
}
