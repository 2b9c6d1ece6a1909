package dev.finetune.api.validation;

import java.util.List;
import java.util.stream.Collectors;

/** A FineTuneJob that cannot run, with every problem found. */
public class InvalidJobException extends RuntimeException {
  private final List<Problem> problems;
  private final String source;

  public InvalidJobException(List<Problem> problems) {
    this(problems, null);
  }

  private InvalidJobException(List<Problem> problems, String source) {
    super(format(problems, source));
    this.problems = List.copyOf(problems);
    this.source = source;
  }

  /** The same problems, said to be in a file. */
  public InvalidJobException in(String source) {
    return new InvalidJobException(problems, source);
  }

  public List<Problem> problems() {
    return problems;
  }

  public String source() {
    return source;
  }

  private static String format(List<Problem> problems, String source) {
    String head = (source == null ? "invalid FineTuneJob" : "invalid FineTuneJob in " + source)
        + (problems.size() == 1 ? ": " : " (" + problems.size() + " problems):\n  ");
    return head + problems.stream().map(Problem::toString).collect(Collectors.joining("\n  "));
  }
}
