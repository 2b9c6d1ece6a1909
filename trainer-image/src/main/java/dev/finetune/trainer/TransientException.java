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
   * How a run goes on after exit code 1, from where: in a Pod the Job retries, locally the person reruns, so a
   * local run's messages do not speak of a Job. {@code resumes} ends the sentence, e.g. "where it stopped".
   */
  public static String retry(String resumes) {
    return retry(resumes, System.getenv());
  }

  static String retry(String resumes, java.util.Map<String, String> env) {
    return env.get("KUBERNETES_SERVICE_HOST") != null
        ? "the Job retries (exit code 1) and the run resumes " + resumes
        : "rerun the same command (the exit code is 1) and the run resumes " + resumes;
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
    boolean pod = System.getenv("KUBERNETES_SERVICE_HOST") != null;
    return new TransientException("cannot write to " + folder + " (" + detail + "): the folder or its volume is gone,"
        + " read-only or full. This may pass: " + (pod ? "" : "make the folder writable (or free space), then ")
        + retry("from its last complete checkpoint"), cause);
  }
}
