package dev.finetune.operator.observer;

import dev.finetune.api.FineTuneJob;
import dev.finetune.api.FineTuneJobStatus;
import dev.finetune.api.trainer.TrainerReport;
import dev.finetune.operator.resources.Names;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.javaoperatorsdk.operator.api.reconciler.Context;
import java.util.List;
import java.util.Optional;

/**
 * What the observer sees of one FineTuneJob: its training Job, the Job's Pods (oldest first) and the trainer's
 * latest progress; for a job with several nodes also the workers' Job and its Pods. Read from the informer caches and
 * the progress poller; the API server is asked only where a cache can lag behind: a Job the status names but the
 * cache lacks, and the Pods at the end of a Job.
 */
public record Snapshot(Optional<Job> job, List<Pod> pods, Optional<TrainerReport> progress, Optional<Job> workers,
    List<Pod> workerPods) {

  /** A Job just made: no Pods and no progress yet. */
  public static Snapshot of(Job job) {
    return new Snapshot(Optional.of(job), List.of(), Optional.empty(), Optional.empty(), List.of());
  }

  public static Snapshot read(FineTuneJob ftj, FineTuneJobStatus status, Context<FineTuneJob> ctx) {
    Optional<Job> job = cached(ctx, Names.job(ftj));
    if (job.isEmpty() && status.jobName != null) {
      // made before but not in the cache: ask the server before concluding it is gone
      job = Optional.ofNullable(ctx.getClient().batch().v1().jobs()
          .inNamespace(ftj.getMetadata().getNamespace()).withName(status.jobName).get());
    }
    if (job.isEmpty()) {
      return new Snapshot(Optional.empty(), List.of(), Optional.empty(), Optional.empty(), List.of());
    }
    Optional<Job> workers = Names.nodes(ftj) > 1 ? cached(ctx, Names.workersJob(ftj)) : Optional.empty();
    return new Snapshot(job, pods(ftj, job.get(), ctx), ctx.getSecondaryResource(TrainerReport.class), workers,
        workers.map(w -> pods(ftj, w, ctx)).orElse(List.of()));
  }

  /** Every trainer Pod of the job, the leader's and the workers', oldest first within each. */
  public List<Pod> allPods() {
    return workerPods.isEmpty() ? pods : java.util.stream.Stream.concat(pods.stream(), workerPods.stream()).toList();
  }

  private static Optional<Job> cached(Context<FineTuneJob> ctx, String name) {
    return ctx.getSecondaryResources(Job.class).stream().filter(j -> name.equals(j.getMetadata().getName())).findFirst();
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
