package dev.finetune.trainer;

import java.io.IOException;

/**
 * A failure that a later attempt may not meet (the network, a volume that went away): exit code 1, so the Job
 * retries and the run resumes from its last checkpoint. The message is one paragraph for a person, no stack trace.
 */
public class TransientException extends IOException {
  public TransientException(String message, Throwable cause) {
    super(message, cause);
  }
}
