package dev.finetune.api.validation;

/**
 * One thing wrong with a FineTuneJob: the field's path ({@code spec.dataset.split}) and what is wrong,
 * worded so that it also says how to fix it.
 */
public record Problem(String field, String message) {
  @Override
  public String toString() {
    return field == null || field.isEmpty() ? message : field + ": " + message;
  }
}
