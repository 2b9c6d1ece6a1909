package dev.finetune.trainer.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import ai.djl.pytorch.jni.JniUtils;

/** Turns PyTorch's autograd recording off for evaluation and generation (no graph kept: less memory, faster). */
public final class NoGrad implements AutoCloseable {
  private static final NDIndex ALL = new NDIndex("...");
  private final boolean previous = JniUtils.isGradMode();

  public NoGrad() {
    JniUtils.setGradMode(false);
  }

  /**
   * Writes {@code from}'s values into {@code into} (same shape and device) in place, unrecorded by autograd. Not
   * DJL's copyTo: its JNI takes libtorch's deprecated AutoNonVariableTypeMode, whose warning would reach the console
   * of every run that resumes or evaluates.
   */
  public static void copy(NDArray from, NDArray into) {
    if (from.getDataType() != DataType.FLOAT32 || into.getDataType() != DataType.FLOAT32) {
      from.copyTo(into); // other dtypes (a bf16 base, which the stock JNI cannot name) as DJL copies them
      return;
    }
    try (NoGrad g = new NoGrad()) {
      into.set(ALL, from);
    }
  }

  @Override
  public void close() {
    JniUtils.setGradMode(previous);
  }
}
