package dev.finetune.operator.observer;

import dev.finetune.api.FineTuneJobs;
import dev.finetune.api.trainer.TrainerReport;
import dev.finetune.operator.resources.Names;
import io.fabric8.kubernetes.api.model.ContainerStatus;
import io.fabric8.kubernetes.api.model.Pod;
import java.io.IOException;
import java.util.Collection;
import java.util.Comparator;
import java.util.Objects;
import java.util.Optional;

/**
 * The trainer's summary from a terminated Pod's termination message. The kubelet falls back to the log's
 * tail when the trainer wrote nothing (FallbackToLogsOnError), so a message that is not a summary is kept
 * as plain text.
 */
public final class TerminationMessages {
  private TerminationMessages() {}

  /** What a terminated trainer container left: exit code, raw message and the parsed summary if any. */
  public record Termination(String podName, int exitCode, String reason, String message, TrainerReport summary,
      String finishedAt) {}

  public static Optional<Termination> of(Pod pod) {
    if (pod.getStatus() == null || pod.getStatus().getContainerStatuses() == null) {
      return Optional.empty();
    }
    return pod.getStatus().getContainerStatuses().stream()
        .filter(cs -> Names.CONTAINER.equals(cs.getName()))
        .map(ContainerStatus::getState)
        .filter(s -> s != null && s.getTerminated() != null)
        .map(s -> s.getTerminated())
        .findFirst()
        .map(t -> new Termination(pod.getMetadata().getName(), t.getExitCode() == null ? -1 : t.getExitCode(),
            t.getReason(), t.getMessage(), parse(t.getMessage()), t.getFinishedAt()));
  }

  /** The newest terminated trainer among the Pods (by finish time, then creation time). */
  public static Optional<Termination> latest(Collection<Pod> pods) {
    // newest finish first; within the same second (timestamps have second precision) the newer Pod, then one
    // that left a summary
    return pods.stream()
        .sorted(Comparator.comparing((Pod p) -> finishedAt(p))
            .thenComparing(p -> Objects.toString(p.getMetadata().getCreationTimestamp(), ""))
            .thenComparing(p -> of(p).map(t -> t.summary() != null).orElse(false))
            .reversed())
        .map(TerminationMessages::of)
        .flatMap(Optional::stream)
        .findFirst();
  }

  private static String finishedAt(Pod p) {
    return of(p).map(Termination::finishedAt).filter(s -> s != null)
        .orElse(p.getMetadata().getCreationTimestamp() == null ? "" : p.getMetadata().getCreationTimestamp());
  }

  /**
   * " (reason: message)" from the trainer's summary; else ": " and the last line of a plain message (the log's tail,
   * the trainer's own words); else nothing.
   */
  public static String explanation(Termination t) {
    if (t.summary() != null && t.summary().reason != null) {
      return " (" + t.summary().reason + (t.summary().message == null ? "" : ": " + t.summary().message) + ")";
    }
    if (t.summary() != null || t.message() == null || t.message().isBlank()) {
      return "";
    }
    String[] lines = t.message().strip().split("\n");
    String last = lines[lines.length - 1];
    return ": " + (last.length() > 300 ? last.substring(0, 297) + "..." : last);
  }

  static TrainerReport parse(String message) {
    if (message == null || message.isBlank()) {
      return null;
    }
    String text = message.strip();
    if (!text.startsWith("{")) {
      return null;
    }
    try {
      return FineTuneJobs.json().readValue(text, TrainerReport.class);
    } catch (IOException e) {
      return null;
    }
  }

}
