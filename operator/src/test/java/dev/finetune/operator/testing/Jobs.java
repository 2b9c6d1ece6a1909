package dev.finetune.operator.testing;

import dev.finetune.api.EpochRecord;
import dev.finetune.api.FineTuneJob;
import dev.finetune.api.FineTuneJobs;
import dev.finetune.api.testing.TinyJob;
import dev.finetune.api.trainer.TrainerReport;
import dev.finetune.operator.resources.Names;
import io.fabric8.kubernetes.api.model.ContainerStatusBuilder;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.PodBuilder;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.List;

/** FineTuneJobs, trainer documents and kubelet-style Pod states for tests. */
public final class Jobs {
  private Jobs() {}

  /** The shared {@link TinyJob}, three epochs. */
  public static FineTuneJob small(String name, String namespace) {
    return TinyJob.job(name, namespace, 3);
  }

  public static TrainerReport progress(int epochsDone, int epochs) {
    TrainerReport p = new TrainerReport();
    p.phase = "Training";
    p.epoch = epochsDone + 1;
    p.epochs = epochs;
    p.step = 10L * epochsDone;
    p.history = history(epochsDone);
    if (epochsDone > 0) {
      EpochRecord last = p.history.get(p.history.size() - 1);
      p.trainLoss = last.trainLoss;
      p.validationLoss = last.validationLoss;
      p.bestValidationLoss = last.validationLoss;
      p.bestEpoch = epochsDone;
    }
    return p;
  }

  public static List<EpochRecord> history(int epochs) {
    List<EpochRecord> h = new ArrayList<>();
    for (int e = 1; e <= epochs; e++) {
      h.add(new EpochRecord(e, 3.0 / e, 3.5 / e));
    }
    return h;
  }

  public static TrainerReport summary(String phase, String reason, int epochsDone, int epochs) {
    TrainerReport s = new TrainerReport();
    s.phase = phase;
    s.reason = reason;
    s.message = reason + " after " + epochsDone + " epochs";
    s.epoch = epochsDone;
    s.epochs = epochs;
    s.history = history(epochsDone);
    EpochRecord last = s.history.get(s.history.size() - 1);
    s.trainLoss = last.trainLoss;
    s.validationLoss = last.validationLoss;
    s.bestValidationLoss = last.validationLoss;
    s.bestEpoch = epochsDone;
    return s;
  }

  /** A Pod as the Job controller makes it from the template. */
  public static Pod podFor(Job job, String suffix) {
    return new PodBuilder()
        .withNewMetadata()
        .withName(job.getMetadata().getName() + "-" + suffix)
        .withNamespace(job.getMetadata().getNamespace())
        .withLabels(job.getSpec().getTemplate().getMetadata().getLabels())
        .withAnnotations(job.getSpec().getTemplate().getMetadata().getAnnotations())
        .addNewOwnerReference()
        .withApiVersion("batch/v1").withKind("Job").withName(job.getMetadata().getName())
        .withUid(job.getMetadata().getUid()).withController(true).withBlockOwnerDeletion(true)
        .endOwnerReference()
        .endMetadata()
        .withSpec(job.getSpec().getTemplate().getSpec())
        .build();
  }

  /** The status a kubelet writes for a running trainer. */
  public static void running(Pod pod, String ip) {
    pod.setStatus(new io.fabric8.kubernetes.api.model.PodStatusBuilder()
        .withPhase("Running")
        .withPodIP(ip)
        .withHostIP(ip)
        .withStartTime(now())
        .withContainerStatuses(new ContainerStatusBuilder()
            .withName(Names.CONTAINER).withReady(true).withRestartCount(0).withImage("trainer").withImageID("")
            .withNewState().withNewRunning().withStartedAt(now()).endRunning().endState()
            .build())
        .build());
  }

  /** The status a kubelet writes for a trainer container it cannot start, e.g. CreateContainerConfigError. */
  public static void waiting(Pod pod, String reason, String message) {
    pod.setStatus(new io.fabric8.kubernetes.api.model.PodStatusBuilder()
        .withPhase("Pending")
        .withHostIP("127.0.0.1")
        .withStartTime(now())
        .withContainerStatuses(new ContainerStatusBuilder()
            .withName(Names.CONTAINER).withReady(false).withRestartCount(0).withImage("trainer").withImageID("")
            .withNewState().withNewWaiting().withReason(reason).withMessage(message).endWaiting().endState()
            .build())
        .build());
  }

  /** A /progress report while the trainer downloads from the hub. */
  public static TrainerReport downloading(String message, int epochs) {
    TrainerReport p = new TrainerReport();
    p.phase = "Downloading";
    p.message = message;
    p.epoch = 0;
    p.epochs = epochs;
    return p;
  }

  /** The status a kubelet writes when the trainer exited. */
  public static void terminated(Pod pod, int exitCode, String message) {
    pod.setStatus(new io.fabric8.kubernetes.api.model.PodStatusBuilder()
        .withPhase(exitCode == 0 ? "Succeeded" : "Failed")
        .withPodIP(pod.getStatus() == null ? null : pod.getStatus().getPodIP())
        .withStartTime(pod.getStatus() == null ? now() : pod.getStatus().getStartTime())
        .withContainerStatuses(new ContainerStatusBuilder()
            .withName(Names.CONTAINER).withReady(false).withRestartCount(0).withImage("trainer").withImageID("")
            .withNewState().withNewTerminated()
            .withExitCode(exitCode).withReason(exitCode == 0 ? "Completed" : "Error").withMessage(message)
            .withStartedAt(now()).withFinishedAt(now())
            .endTerminated().endState()
            .build())
        .build());
  }

  public static String now() {
    return Instant.now().truncatedTo(ChronoUnit.SECONDS).toString();
  }
}
