package dev.finetune.operator.observer;

import dev.finetune.api.FineTuneJob;
import dev.finetune.api.FineTuneJobStatus;
import dev.finetune.api.trainer.TrainerReport;
import dev.finetune.operator.resources.JobSet;
import dev.finetune.operator.resources.Names;
import io.fabric8.kubernetes.api.model.Condition;
import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.api.model.batch.v1.JobBuilder;
import io.fabric8.kubernetes.api.model.batch.v1.JobCondition;
import io.fabric8.kubernetes.api.model.batch.v1.JobConditionBuilder;
import io.fabric8.kubernetes.api.model.batch.v1.JobStatus;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.javaoperatorsdk.operator.api.reconciler.Context;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.Optional;

/**
 * What the observer sees of one FineTuneJob: its training Job, the Job's Pods (oldest first) and the trainer's
 * latest progress; for a job with several nodes also the workers' Job and its Pods. A job with several nodes that runs
 * as a JobSet is seen as {@link #jobSet}, with {@link #job} the JobSet read as a Job ({@link #asJob}), {@link #pods}
 * the leader Job's and {@link #workerPods} the workers' (the JobSet, not the operator, acts on a failed workers'
 * Job, so {@link #workers} is empty). Read from the informer caches and the progress poller; the API server is asked
 * only where a cache can lag behind: a Job the status names but the cache lacks, and the Pods at the end of a Job.
 */
public record Snapshot(Optional<Job> job, List<Pod> pods, Optional<TrainerReport> progress, Optional<Job> workers,
    List<Pod> workerPods, Optional<JobSet> jobSet) {

  /** A Job just made: no Pods and no progress yet. */
  public static Snapshot of(Job job) {
    return new Snapshot(Optional.of(job), List.of(), Optional.empty(), Optional.empty(), List.of(), Optional.empty());
  }

  /** A JobSet just made. */
  public static Snapshot of(JobSet set) {
    return new Snapshot(Optional.of(asJob(set, Optional.empty())), List.of(), Optional.empty(), Optional.empty(),
        List.of(), Optional.of(set));
  }

  /**
   * @param jobSets whether the operator watches JobSets (it does when it makes them)
   */
  public static Snapshot read(FineTuneJob ftj, FineTuneJobStatus status, Context<FineTuneJob> ctx, boolean jobSets) {
    String name = Names.job(ftj);
    Optional<JobSet> set = jobSets ? cached(ctx, JobSet.class, name) : Optional.empty();
    Optional<Job> job = set.isPresent() ? Optional.empty() : cached(ctx, Job.class, name);
    if (set.isEmpty() && job.isEmpty() && status.jobName != null) {
      // made before but not in the cache: ask the server before concluding it is gone
      String ns = ftj.getMetadata().getNamespace();
      if (Names.nodes(ftj) > 1) { // a JobSet, also one made before the operator was told not to use them
        set = fromServer(() -> ctx.getClient().resources(JobSet.class).inNamespace(ns).withName(status.jobName).get());
      }
      if (set.isEmpty()) {
        job = Optional.ofNullable(ctx.getClient().batch().v1().jobs().inNamespace(ns).withName(status.jobName).get());
      }
    }
    if (set.isPresent()) {
      return ofJobSet(ftj, set.get(), ctx);
    }
    if (job.isEmpty()) {
      return new Snapshot(Optional.empty(), List.of(), Optional.empty(), Optional.empty(), List.of(), Optional.empty());
    }
    Optional<Job> workers = Names.nodes(ftj) > 1 ? cached(ctx, Job.class, Names.workersJob(ftj)) : Optional.empty();
    return new Snapshot(job, pods(ftj, job.get(), ctx), ctx.getSecondaryResource(TrainerReport.class), workers,
        workers.map(w -> pods(ftj, w, ctx)).orElse(List.of()), Optional.empty());
  }

  /** The object, or empty where the server has no such API (a cluster without JobSet) or none of that name. */
  private static <R> Optional<R> fromServer(java.util.function.Supplier<R> get) {
    try {
      return Optional.ofNullable(get.get());
    } catch (KubernetesClientException e) {
      if (e.getCode() == 404) {
        return Optional.empty();
      }
      throw e;
    }
  }

  /** Every trainer Pod of the job, the leader's and the workers', oldest first within each. */
  public List<Pod> allPods() {
    return workerPods.isEmpty() ? pods : java.util.stream.Stream.concat(pods.stream(), workerPods.stream()).toList();
  }

  /** The JobSet, and the Pods of the Jobs its controller made for it now (a restart makes them anew). */
  private static Snapshot ofJobSet(FineTuneJob ftj, JobSet set, Context<FineTuneJob> ctx) {
    String name = set.getMetadata().getName();
    Optional<Job> leader = child(ctx, set, JobSet.childJob(name, Names.LEADER, 0));
    Optional<Job> workers = child(ctx, set, JobSet.childJob(name, Names.WORKERS, 0));
    return new Snapshot(Optional.of(asJob(set, leader)), leader.map(j -> pods(ftj, j, ctx)).orElse(List.of()),
        ctx.getSecondaryResource(TrainerReport.class), Optional.empty(),
        workers.map(j -> pods(ftj, j, ctx)).orElse(List.of()), Optional.of(set));
  }

  private static Optional<Job> child(Context<FineTuneJob> ctx, JobSet set, String name) {
    return cached(ctx, Job.class, name).filter(j -> j.getMetadata().getOwnerReferences() != null && j.getMetadata()
        .getOwnerReferences().stream().anyMatch(o -> Objects.equals(o.getUid(), set.getMetadata().getUid())));
  }

  /**
   * A JobSet read as the Job it stands for: its name, annotations and suspend; its conditions Completed and Failed as
   * Complete and Failed; each restart as a failed attempt before the current one; the leader Job's start.
   */
  static Job asJob(JobSet set, Optional<Job> leader) {
    JobStatus status = new JobStatus();
    List<JobCondition> conditions = new ArrayList<>();
    set.condition("Completed").ifPresent(c -> conditions.add(jobCondition("Complete", c)));
    set.condition("Failed").ifPresent(c -> conditions.add(jobCondition("Failed", c)));
    status.setConditions(conditions);
    int restarts = set.getStatus() == null || set.getStatus().restarts == null ? 0 : set.getStatus().restarts;
    status.setFailed(restarts);
    status.setActive(1);
    status.setStartTime(leader.map(Job::getStatus).map(JobStatus::getStartTime).orElse(null));
    set.condition("Completed").ifPresent(c -> status.setCompletionTime(c.getLastTransitionTime()));
    return new JobBuilder()
        .withMetadata(set.getMetadata())
        .withNewSpec().withSuspend(Boolean.TRUE.equals(set.getSpec().suspend)).endSpec()
        .withStatus(status)
        .build();
  }

  private static JobCondition jobCondition(String type, Condition c) {
    return new JobConditionBuilder().withType(type).withStatus("True").withReason(c.getReason())
        .withMessage(c.getMessage()).withLastTransitionTime(c.getLastTransitionTime()).build();
  }

  private static <R extends HasMetadata> Optional<R> cached(Context<FineTuneJob> ctx, Class<R> type, String name) {
    return ctx.getSecondaryResources(type).stream().filter(j -> name.equals(j.getMetadata().getName())).findFirst();
  }

  private static List<Pod> pods(FineTuneJob ftj, Job job, Context<FineTuneJob> ctx) {
    List<Pod> pods = TrainerPods.of(job, ctx.getSecondaryResources(Pod.class));
    if (JobObserver.ended(job) && !TrainerPods.endShown(pods)) {
      // The Job informer can be ahead of the Pod informer (the Job controller marks the Job complete right
      // after it sees the Pod end): read the trainer's termination message from the server, once, at the end.
      pods = TrainerPods.of(job, ctx.getClient().pods().inNamespace(ftj.getMetadata().getNamespace())
          .withLabel(Names.JOB_LABEL, ftj.getMetadata().getName()).list().getItems());
    }
    return pods;
  }
}
