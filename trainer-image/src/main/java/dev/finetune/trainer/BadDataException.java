package dev.finetune.trainer;

/** A data set that cannot be trained on (exit code 3, reason InvalidData): the message names file, line and field. */
public class BadDataException extends BadJobException {
  public BadDataException(String message) {
    super(message);
  }
}
