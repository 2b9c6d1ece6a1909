package dev.finetune.trainer.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.finetune.trainer.nativelib.TorchNative;
import java.util.Map;

/**
 * The dtype each weight lives in. Float32 whenever weights train or the run computes in fp32. When only a LoRA adapter
 * trains in bf16 mixed precision, the frozen base lives in bf16 as PEFT users load it: its matrices (embeddings,
 * projections, head) take 2 bytes a parameter with no fp32 copy and no per-step cast, while the norms and biases, a
 * sliver of the model, stay in float32 for the fp32 ops that read them. The adapter keeps fp32 master weights.
 */
public enum WeightStorage {
  FP32,
  BF16_BASE;

  /** A frozen base in bf16 for a LoRA run in bf16; float32 otherwise. */
  public static WeightStorage forRun(boolean lora, boolean bf16) {
    return lora && bf16 ? BF16_BASE : FP32;
  }

  /** The dtype a weight of this shape is stored in. */
  public DataType of(Shape shape) {
    return this == BF16_BASE && shape.dimension() >= 2 ? DataType.BFLOAT16 : DataType.FLOAT32;
  }

  /** Bytes that weights of these shapes take. */
  public long bytes(Map<String, Shape> weights) {
    return weights.values().stream().mapToLong(s -> s.size() * of(s).getNumOfBytes()).sum();
  }

  /** A weight as float32, for the arithmetic and files that want it: itself, or a float32 copy of a bf16 one. */
  public static NDArray float32(NDArray a) {
    return a.getDataType() == DataType.FLOAT32 ? a : a.toType(DataType.FLOAT32, true);
  }

  /**
   * Stores built float32 weights (a seeded scratch model) as this says, in place, through the native library's cast
   * (DJL's stock JNI has no bf16); each replaced array is freed at once.
   */
  public void apply(Map<String, NDArray> weights) {
    if (this == FP32) {
      return;
    }
    TorchNative lib = TorchNative.get().orElseThrow(() -> new IllegalStateException("a bf16 base needs the native library"));
    weights.replaceAll((name, a) -> {
      if (of(a.getShape()) != DataType.BFLOAT16) {
        return a;
      }
      NDArray stored = lib.toBf16(a);
      stored.setName(a.getName());
      a.close();
      return stored;
    });
  }
}
