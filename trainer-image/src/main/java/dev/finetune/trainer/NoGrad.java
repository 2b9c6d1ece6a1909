package dev.finetune.trainer;

import ai.djl.pytorch.jni.JniUtils;

/** Turns PyTorch's autograd recording off for evaluation and generation (no graph kept: less memory, faster). */
final class NoGrad implements AutoCloseable {
  private final boolean previous = JniUtils.isGradMode();

  NoGrad() {
    JniUtils.setGradMode(false);
  }

  @Override
  public void close() {
    JniUtils.setGradMode(previous);
  }
}
