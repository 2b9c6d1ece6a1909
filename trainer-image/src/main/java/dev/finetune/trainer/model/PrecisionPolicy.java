package dev.finetune.trainer.model;

import ai.djl.Device;
import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.finetune.api.TrainingSpec.Precision;
import dev.finetune.trainer.BadJobException;
import dev.finetune.trainer.nativelib.TorchNative;
import java.util.IdentityHashMap;
import java.util.Map;
import java.util.Optional;

/**
 * How a network computes: in fp32 (DJL's own operations, the reference path), fp32 with TF32 matmuls, or bf16
 * mixed precision as PyTorch's autocast does it: fp32 master weights (and optimizer state); matmuls and attention
 * in bf16 on bf16 casts of the activations and weights that stay on the autograd graph, so gradients land on the
 * fp32 weights; layer norm, softmax, the loss and the residual stream in fp32.
 *
 * <p>On GPUs, and always in bf16, the trainer's native library ({@link TorchNative}) supplies single-kernel tanh
 * GELU, cross-entropy and (libtorch 2.0+) scaled-dot-product attention; without it the pure-DJL operations run.
 * On CPUs in fp32 the pure-DJL path runs whatever is installed, so CPU results stay those of the reference.
 */
public final class PrecisionPolicy {
  /** fp32 with DJL's operations only: the reference path. */
  public static final PrecisionPolicy FP32 = new PrecisionPolicy(Precision.FP32, null, "cpu");

  private final Precision precision;
  private final TorchNative fast;
  private final String device;

  private PrecisionPolicy(Precision precision, TorchNative fast, String device) {
    this.precision = precision;
    this.fast = fast;
    this.device = device;
  }

  /**
   * Resolves {@code spec.training.precision} on the engine's default device: auto is bf16 on GPUs of compute
   * capability 8.0 and up when the native library is there (else fp32), fp32 on CPUs; bf16 without the native
   * library is a bad job with a message saying what is missing; tf32 is switched on here.
   */
  public static PrecisionPolicy resolve(Precision requested) {
    Device dev = Engine.getInstance().defaultDevice();
    boolean gpu = dev.isGpu();
    Optional<TorchNative> lib = TorchNative.get();
    int capability = lib.map(TorchNative::capability).orElse(-1);
    String name = lib.map(TorchNative::deviceName).filter(s -> !s.isEmpty()).map(s -> " " + s).orElse("");
    String where = name(dev) + name + (capability > 0 ? " (compute capability " + capability / 10 + "." + capability % 10 + ")" : "");
    Precision p = requested == null ? Precision.AUTO : requested;
    if (p == Precision.AUTO) {
      p = gpu && capability >= 80 ? Precision.BF16 : Precision.FP32;
      if (gpu && lib.isEmpty()) {
        System.out.println("precision auto: fp32, because " + TorchNative.unavailableReason());
      }
    }
    if (p == Precision.BF16 && lib.isEmpty()) {
      throw new BadJobException("spec.training.precision bf16 needs the trainer's native library for casts that keep"
          + " gradients: " + TorchNative.unavailableReason() + "; or set precision fp32");
    }
    if (p == Precision.BF16 && gpu && capability > 0 && capability < 80) {
      throw new BadJobException("spec.training.precision bf16 needs a GPU of compute capability 8.0 or later (A100, H100,"
          + " L4, ...); " + where + " has none; set precision fp32 or tf32");
    }
    if (p == Precision.TF32) {
      if (lib.isPresent()) {
        lib.get().tf32(true);
      } else if (gpu && !"1".equals(System.getenv("TORCH_ALLOW_TF32_CUBLAS_OVERRIDE"))) {
        throw new BadJobException("spec.training.precision tf32 needs the trainer's native library or"
            + " TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1 in the environment: " + TorchNative.unavailableReason());
      }
    }
    TorchNative fast = p == Precision.BF16 || gpu ? lib.orElse(null) : null;
    return new PrecisionPolicy(p, fast, where);
  }

  /** fp32, tf32 or bf16: what ran. */
  public Precision precision() {
    return precision;
  }

  /** The device as PyTorch names it ({@code cpu}, {@code cuda:0}): what users know, not DJL's {@code gpu(0)}. */
  static String name(Device dev) {
    return dev.isGpu() ? "cuda:" + dev.getDeviceId() : dev.getDeviceType();
  }

  /** The device, e.g. {@code cpu} or {@code cuda:0 NVIDIA H200 (compute capability 9.0)}. */
  public String device() {
    return device;
  }

  public boolean bf16() {
    return precision == Precision.BF16;
  }

  /** The native library when its kernels are in use. */
  public Optional<TorchNative> nativeOps() {
    return Optional.ofNullable(fast);
  }

  /** One line for the run's log. */
  public String describe() {
    String tf32Note = precision == Precision.TF32 && device.startsWith("cpu") ? " (no tensor cores on a CPU: fp32)" : "";
    return "precision " + precision + tf32Note + " on " + device + (fast == null ? "" : ", native kernels from libtorch "
        + fast.version() + (fast.attention() ? " with fused attention" : ""));
  }

  /** An activation as a matmul input: bf16 in mixed precision, unchanged otherwise. */
  public NDArray operand(NDArray x) {
    return bf16() ? fast.toBf16(x) : x;
  }

  /**
   * A weight as a matmul input: in mixed precision its bf16 cast, made once per step (autocast's cast cache) and
   * kept in {@code cache}, which lives as long as the step.
   */
  public NDArray weight(NDArray w, Map<NDArray, NDArray> cache) {
    return bf16() && !isBf16(w) ? cache.computeIfAbsent(w, x -> Gpt2.Consts.stepLong(fast.toBf16(x))) : w;
  }

  /** A weight read outside a matmul (an embedding row) in float32, also where the frozen base lives in bf16. */
  public NDArray upcast(NDArray w) {
    return isBf16(w) ? fast.toFp32(w) : w;
  }

  /**
   * Whether an array is bf16. DJL's stock JNI (the CUDA image's) has no bf16 and reads its dtype back as UNKNOWN, which
   * no other array of the trainer has (notes on DJL: a bf16 array is only ever made by the native library).
   */
  public static boolean isBf16(NDArray a) {
    DataType t = a.getDataType();
    return t == DataType.BFLOAT16 || t == DataType.UNKNOWN;
  }

  /** {@code x w + b}, with x [.., in], w [in, out] (HF's Conv1D orientation, GPT-2). */
  public NDArray conv1d(NDArray x, NDArray w, NDArray b, Map<NDArray, NDArray> cache) {
    return operand(x).matMul(weight(w, cache)).add(weight(b, cache));
  }

  /** {@code x w^T + b}, with x [.., in], w [out, in] and an optional bias (nn.Linear, the Llama family). */
  public NDArray linear(NDArray x, NDArray w, NDArray b, Map<NDArray, NDArray> cache) {
    NDArray in = operand(x);
    return in.getNDArrayInternal().linear(in, weight(w, cache), b == null ? null : weight(b, cache)).singletonOrThrow();
  }

  /** An activation back in fp32 (for layer norm, softmax and the residual stream); unchanged in fp32. */
  public NDArray fp32(NDArray x) {
    return bf16() ? fast.toFp32(x) : x;
  }

  /** Whether attention goes through the fused kernel (native library built against libtorch 2.0+). */
  public boolean fusedAttention() {
    return fast != null && fast.attention();
  }

  /** A new identity-keyed cast cache for one step. */
  public static Map<NDArray, NDArray> newCache() {
    return new IdentityHashMap<>();
  }

  /** Flattened int64 targets [B, T] (-100 where ignored) on {@code m}, for the native cross-entropy. */
  public static NDArray targets(NDManager m, long[][] targets) {
    int b = targets.length;
    int t = targets[0].length;
    long[] flat = new long[b * t];
    for (int i = 0; i < b; i++) {
      System.arraycopy(targets[i], 0, flat, i * t, t);
    }
    return m.create(flat, new Shape(b, t));
  }
}
