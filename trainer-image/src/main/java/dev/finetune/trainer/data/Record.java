package dev.finetune.trainer.data;

/**
 * One instruction example; {@code input} is empty when the task has none. {@code source} says where it was
 * read ("data.jsonl line 57"), null for generated records; it is not part of the record's value (equals).
 */
public record Record(String instruction, String input, String output, String source) {
  public Record(String instruction, String input, String output) {
    this(instruction, input, output, null);
  }

  /** Where the record is, for messages: its source, else its instruction. */
  public String where() {
    return source != null ? source : "record \"" + (instruction.length() > 40 ? instruction.substring(0, 40) + "..." : instruction) + "\"";
  }

  @Override
  public boolean equals(Object o) {
    return o instanceof Record r && instruction.equals(r.instruction) && input.equals(r.input) && output.equals(r.output);
  }

  @Override
  public int hashCode() {
    return java.util.Objects.hash(instruction, input, output);
  }
}
