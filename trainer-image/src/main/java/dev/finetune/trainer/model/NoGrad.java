package dev.finetune.trainer.model;

import ai.djl.pytorch.jni.JniUtils;

/** Turns PyTorch's autograd recording off for evaluation and generation (no graph kept: less memory, faster). */
public final class NoGrad implements AutoCloseable {
  private final boolean previous = JniUtils.isGradMode();

  public NoGrad() {
    JniUtils.setGradMode(false);
  }

  @Override
  public void close() {
    JniUtils.setGradMode(previous);
  }
}
