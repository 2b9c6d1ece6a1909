package dev.finetune.trainer;

/** Invalid spec or data: retrying cannot help (exit code 3). The message says what, where and how to fix it. */
public class BadJobException extends RuntimeException {
  public BadJobException(String message) {
    super(message);
  }

  public BadJobException(String message, Throwable cause) {
    super(message, cause);
  }
}
