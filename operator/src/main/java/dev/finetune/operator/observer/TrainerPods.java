package dev.finetune.operator.observer;

import dev.finetune.operator.resources.JobSet;
import dev.finetune.operator.resources.Names;
import io.fabric8.kubernetes.api.model.OwnerReference;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import java.util.Collection;
import java.util.Comparator;
import java.util.List;
import java.util.Objects;
import java.util.Optional;
import java.util.function.Predicate;

/** Questions about a training Job's Pods, oldest first (the last one is the current attempt). */
public final class TrainerPods {
  private static final Comparator<Pod> OLDEST_FIRST = Comparator
      .comparing((Pod p) -> Objects.toString(p.getMetadata().getCreationTimestamp(), ""))
      .thenComparing(p -> p.getMetadata().getName());

  private TrainerPods() {}

  /** The Pods the Job made, oldest first. */
  public static List<Pod> of(Job job, Collection<Pod> pods) {
    return pods.stream()
        .filter(ownedBy(o -> Objects.equals(o.getUid(), job.getMetadata().getUid())))
        .sorted(OLDEST_FIRST)
        .toList();
  }

  /**
   * The Pods of rank 0, which serve /progress and /metrics, oldest first: those the Job of this name made, or, when
   * it is a JobSet, its leader Job (for readers that have no Job at hand).
   */
  public static List<Pod> rankZero(String jobName, Collection<Pod> pods) {
    String leader = JobSet.childJob(jobName, Names.LEADER, 0);
    return pods.stream()
        .filter(ownedBy(o -> "Job".equals(o.getKind()) && (jobName.equals(o.getName()) || leader.equals(o.getName()))))
        .filter(p -> p.getMetadata().getLabels() != null
            && "true".equals(p.getMetadata().getLabels().get(Names.METRICS_LABEL)))
        .sorted(OLDEST_FIRST)
        .toList();
  }

  /** The newest Pod in phase Running. */
  public static Optional<Pod> running(List<Pod> pods) {
    return pods.stream().filter(p -> inPhase(p, "Running")).reduce((a, b) -> b);
  }

  /** The trainer of the current attempt exited 0 (the Job controller may not have marked the Job complete yet). */
  public static boolean finishing(List<Pod> pods) {
    return !pods.isEmpty() && inPhase(last(pods), "Succeeded");
  }

  /** The current attempt ended and left a termination message to read. */
  public static boolean endShown(List<Pod> pods) {
    return !pods.isEmpty() && (inPhase(last(pods), "Succeeded") || inPhase(last(pods), "Failed"))
        && TerminationMessages.of(last(pods)).isPresent();
  }

  /** The port of the trainer container's metrics port (which serves /progress), else the default. */
  public static int port(Pod pod, int fallback) {
    return pod.getSpec() == null || pod.getSpec().getContainers() == null ? fallback
        : pod.getSpec().getContainers().stream()
            .filter(c -> Names.CONTAINER.equals(c.getName()) && c.getPorts() != null)
            .flatMap(c -> c.getPorts().stream())
            .filter(p -> Names.METRICS_PORT_NAME.equals(p.getName()) && p.getContainerPort() != null)
            .map(p -> p.getContainerPort())
            .findFirst().orElse(fallback);
  }

  /** The node rank of a trainer Pod: a worker's completion index + 1; 0 for the leader or the only Pod. */
  public static int nodeRank(Pod pod) {
    var meta = pod.getMetadata();
    boolean worker = meta.getLabels() != null && Names.WORKER.equals(meta.getLabels().get(Names.ROLE_LABEL));
    String index = meta.getAnnotations() == null ? null : meta.getAnnotations().get(Names.COMPLETION_INDEX_ANNOTATION);
    try {
      return worker && index != null ? Integer.parseInt(index) + 1 : 0;
    } catch (NumberFormatException e) {
      return 0;
    }
  }

  /**
   * "Ranks 8-11 on node 2 (Pod p) exited with code 137", with the trainer's reason and message, or the last line of its
   * log; empty while the Pod shows no termination.
   */
  public static Optional<String> failure(Pod pod, int ranksPerNode) {
    int node = nodeRank(pod);
    String ranks = ranksPerNode == 1 ? "Rank " + node
        : "Ranks " + node * ranksPerNode + "-" + (node * ranksPerNode + ranksPerNode - 1);
    return TerminationMessages.of(pod).map(t -> ranks + " on node " + node + " (Pod " + t.podName()
        + ") exited with code " + t.exitCode() + TerminationMessages.explanation(t));
  }

  public static Pod last(List<Pod> pods) {
    return pods.get(pods.size() - 1);
  }

  public static boolean inPhase(Pod pod, String phase) {
    return pod.getStatus() != null && phase.equals(pod.getStatus().getPhase());
  }

  private static Predicate<Pod> ownedBy(Predicate<OwnerReference> owner) {
    return p -> p.getMetadata().getOwnerReferences() != null
        && p.getMetadata().getOwnerReferences().stream().anyMatch(owner);
  }
}
