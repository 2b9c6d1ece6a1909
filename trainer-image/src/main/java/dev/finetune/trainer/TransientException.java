package dev.finetune.trainer;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.AccessDeniedException;
import java.nio.file.FileSystemException;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;

/**
 * A failure that a later attempt may not meet (the network, a volume that went away): exit code 1, so the Job
 * retries and the run resumes from its last checkpoint. The message is one paragraph for a person, no stack trace.
 */
public class TransientException extends IOException {
  public TransientException(String message, Throwable cause) {
    super(message, cause);
  }

  /**
   * Writing into {@code folder} failed (deleted, read-only or full; on a Pod, a lost checkpoint volume): a retry,
   * which resumes from the last complete checkpoint once the volume is back.
   */
  public static TransientException lostVolume(Path folder, Exception cause) {
    Throwable c = cause instanceof UncheckedIOException u ? u.getCause() : cause;
    String detail;
    if (c instanceof FileSystemException f && f.getFile() != null) {
      String why = c instanceof AccessDeniedException ? "permission denied"
          : c instanceof NoSuchFileException ? "no such file or folder"
          : f.getReason() != null ? f.getReason() : c.getClass().getSimpleName().replace("Exception", "");
      detail = f.getFile() + ": " + why;
    } else {
      detail = c.getMessage() != null ? c.getMessage() : c.getClass().getSimpleName().replace("Exception", "");
    }
    return new TransientException("cannot write to " + folder + " (" + detail + "): the folder or its volume is gone,"
        + " read-only or full. This may pass: the Job retries (exit code 1) and the run resumes from its last complete"
        + " checkpoint; locally, make the folder writable (or free space) and rerun", cause);
  }
}
