package dev.finetune.trainer.train;

/** The loss became NaN or infinite (exit code 4): retrying from the same checkpoint would diverge again. */
public class DivergedException extends RuntimeException {
  public DivergedException(String message) {
    super(message);
  }
}
