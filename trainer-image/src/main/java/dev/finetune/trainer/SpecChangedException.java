package dev.finetune.trainer;

/**
 * A rerun whose spec differs from the one its run folder was trained with, in a way that changes the result
 * (exit code 3, reason InvalidSpec): the message lists the fields and the ways out.
 */
public class SpecChangedException extends BadJobException {
  public SpecChangedException(String message) {
    super(message);
  }
}
