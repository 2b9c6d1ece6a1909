package dev.finetune.operator.observer;

import dev.finetune.api.FineTuneJob;
import dev.finetune.api.FineTuneJobStatus;
import dev.finetune.api.FineTuneJobStatus.Phase;
import dev.finetune.operator.observer.TerminationMessages.Termination;
import dev.finetune.operator.resources.Names;
import dev.finetune.operator.resources.SpecHash;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.api.model.batch.v1.JobCondition;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.Optional;

/**
 * Brings a FineTuneJob's status up to date with a {@link Snapshot}: phase, reason and message, conditions,
 * restarts, start and completion time, and the trainer's numbers. It reads nothing and changes nothing but the
 * status it is given; acting on the cluster and recording Events is the reconciler's.
 */
public final class JobObserver {
  private JobObserver() {}

  public static void observe(FineTuneJob ftj, FineTuneJobStatus st, Snapshot seen) {
    Long generation = ftj.getMetadata().getGeneration();
    if (seen.job().isEmpty()) {
      if (st.jobName != null) {
        jobDeleted(st, generation);
      }
      return; // nothing made yet
    }
    Job job = seen.job().get();
    List<Pod> pods = seen.pods();
    st.jobName = job.getMetadata().getName();
    st.model = model(ftj);
    st.results = "pvc/" + Names.checkpointClaim(ftj) + ":" + Names.runDir(ftj);
    specChange(ftj, job, st, generation);
    st.restarts = restarts(st, job, pods);
    Phase phase = phase(ftj, job, pods);
    Optional<Job> failedWorkers = seen.workers().filter(w -> hasCondition(w, "Failed"));
    if (!phase.isTerminal() && failedWorkers.isPresent()) { // the workers gave up: so does the job
      finish(failedWorkers.get(), seen.workerPods(), Phase.Failed, st, generation);
      st.message = "worker Job " + failedWorkers.get().getMetadata().getName() + " failed, so the job stops: "
          + st.message;
    } else {
      switch (phase) {
        case Pending -> pending(ftj, job, pods, st, generation);
        case Suspended -> suspended(st, generation);
        case Running -> running(seen, st, generation);
        // a failed JobSet stops its running Jobs (their Pods go): the failure shows on any node's Pod
        case Succeeded, Failed -> finish(job, phase == Phase.Failed && seen.jobSet().isPresent() ? seen.allPods() : pods,
            phase, st, generation);
      }
    }
    ranks(ftj, st, seen);
    if (Boolean.TRUE.equals(st.earlyStopped) && !Conditions.isTrue(st, Conditions.EARLY_STOPPED)) {
      Conditions.set(st, Conditions.EARLY_STOPPED, true, "EarlyStopped", "validation loss stopped improving; the best"
          + " epoch is " + st.bestEpoch + (st.bestValidationLoss == null ? "" : " (validation loss "
          + String.format(Locale.ROOT, "%.4f", st.bestValidationLoss) + ")"), generation);
    }
    if (st.epochs == null && ftj.getSpec().training != null) {
      st.epochs = ftj.getSpec().training.epochs;
    }
  }

  /** What trains, for {@code kubectl get ftj -o wide}: the hub repository (@revision unless main), the path, or scratch. */
  static String model(FineTuneJob ftj) {
    var m = ftj.getSpec().model;
    if (m == null) {
      return null;
    }
    if (m.hub != null) {
      return m.hub + (m.revision == null || m.revision.equals("main") ? "" : "@" + m.revision);
    }
    return m.path != null ? m.path : m.scratch != null ? "scratch" : null;
  }

  /** At most this many failures are kept in {@code status.failedRanks}: the newest ones. */
  static final int MAX_FAILED_RANKS = 100;

  /**
   * With more than one rank: the ranks running of the world size, and each trainer Pod that failed on any node, once
   * (the list is kept when their Pods are gone).
   */
  private static void ranks(FineTuneJob ftj, FineTuneJobStatus st, Snapshot seen) {
    int perNode = Names.ranksPerNode(ftj);
    int world = Names.nodes(ftj) * perNode;
    if (world == 1) {
      return;
    }
    long running = seen.allPods().stream().filter(p -> TrainerPods.inPhase(p, "Running")).count();
    st.ranks = running * perNode + "/" + world;
    List<String> failed = new ArrayList<>(st.failedRanks == null ? List.of() : st.failedRanks);
    int before = failed.size();
    seen.allPods().stream().filter(p -> TrainerPods.inPhase(p, "Failed"))
        .sorted(Comparator.comparing((Pod p) -> TerminationMessages.of(p).map(Termination::finishedAt).orElse(""))
            .thenComparing(TrainerPods::nodeRank))
        .map(p -> TrainerPods.failure(p, perNode))
        .flatMap(Optional::stream)
        .filter(f -> !failed.contains(f))
        .forEach(failed::add);
    st.rankFailures = nz(st.rankFailures) + failed.size() - before;
    st.failedRanks = failed.isEmpty() ? null
        : new ArrayList<>(failed.subList(Math.max(0, failed.size() - MAX_FAILED_RANKS), failed.size()));
  }

  /** The Job has condition Complete or Failed: it starts no more Pods. */
  public static boolean ended(Job job) {
    return hasCondition(job, "Complete") || hasCondition(job, "Failed");
  }

  /**
   * Suspended when the Job is and the user asked for it (or the operator applied it and has not yet resumed the
   * Job); a Job suspended by someone else, such as a queue, is Pending.
   */
  private static Phase phase(FineTuneJob ftj, Job job, List<Pod> pods) {
    String applied = job.getMetadata().getAnnotations() == null ? null
        : job.getMetadata().getAnnotations().get(Names.SUSPEND_ANNOTATION);
    boolean suspendAsked = Boolean.TRUE.equals(ftj.getSpec().suspend) || Boolean.parseBoolean(applied);
    Phase phase;
    if (hasCondition(job, "Complete")) {
      phase = Phase.Succeeded;
    } else if (hasCondition(job, "Failed")) {
      phase = Phase.Failed;
    } else if (Boolean.TRUE.equals(job.getSpec().getSuspend()) && suspendAsked) {
      phase = Phase.Suspended;
    } else if (TrainerPods.running(pods).isPresent() || TrainerPods.finishing(pods)) {
      phase = Phase.Running;
    } else {
      phase = Phase.Pending;
    }
    return phase; // a bad-job exit code fails the Job at once (its podFailurePolicy): condition Failed
  }

  /** Each Pod after the first is a restart; so is each attempt the Job counted beyond the first. */
  private static int restarts(FineTuneJobStatus st, Job job, List<Pod> pods) {
    var js = job.getStatus();
    int byJob = js == null ? 0 : nz(js.getFailed()) + nz(js.getSucceeded()) + nz(js.getActive());
    return Math.max(nz(st.restarts), Math.max(pods.size(), byJob) - 1);
  }

  private static void pending(FineTuneJob ftj, Job job, List<Pod> pods, FineTuneJobStatus st, Long generation) {
    st.phase = Phase.Pending;
    if (Boolean.TRUE.equals(job.getSpec().getSuspend())) {
      st.reason = "Queued";
      st.message = "the training Job is held suspended by its queue (e.g. Kueue) until it is admitted";
    } else if (pods.isEmpty()) {
      st.reason = "WaitingForPod";
      st.message = "waiting for the Job to create the trainer Pod";
    } else {
      Pod pod = TrainerPods.last(pods);
      st.reason = waitingReason(pod);
      st.message = "trainer Pod " + pod.getMetadata().getName() + " is not running yet"
          + waitingMessage(pod).map(m -> " (" + st.reason + "): " + m + secretHint(ftj, st.reason, m)).orElse("");
    }
    Conditions.set(st, Conditions.RUNNING, false, st.reason, st.message, generation);
    Conditions.clear(st, Conditions.SUSPENDED, "Resumed", "the training Job is not suspended", generation);
  }

  private static void suspended(FineTuneJobStatus st, Long generation) {
    st.phase = Phase.Suspended;
    st.reason = "Suspended";
    st.message = "the training Job is suspended; set spec.suspend to false to resume from the latest checkpoint";
    Conditions.set(st, Conditions.SUSPENDED, true, "Suspended", st.message, generation);
    Conditions.set(st, Conditions.RUNNING, false, "Suspended", st.message, generation);
  }

  /**
   * The trainer runs; while its progress says it downloads from the hub, reason Downloading and the download in the
   * message (what, how far, how fast, how long), then Training.
   */
  private static void running(Snapshot seen, FineTuneJobStatus st, Long generation) {
    st.phase = Phase.Running;
    Optional<Pod> running = TrainerPods.running(seen.pods());
    if (running.isEmpty()) {
      st.reason = "Finishing";
      st.message = "the trainer exited successfully; waiting for the Job to complete";
      return;
    }
    Pod pod = running.get();
    st.reason = "Training";
    st.message = "trainer Pod " + pod.getMetadata().getName() + " is running";
    seen.progress().ifPresent(p -> TrainerStatus.apply(st, p)); // may say Downloading
    Conditions.set(st, Conditions.RUNNING, true, st.reason, st.message, generation);
    Conditions.clear(st, Conditions.SUSPENDED, "Resumed", "the training Job is not suspended", generation);
    if (st.startTime == null) {
      st.startTime = pod.getStatus().getStartTime() != null ? pod.getStatus().getStartTime() : Conditions.now();
    }
  }

  /** Succeeded or Failed, with the trainer's own reason and numbers from its summary when it left one. */
  private static void finish(Job job, List<Pod> pods, Phase phase, FineTuneJobStatus st, Long generation) {
    Optional<Termination> t = TerminationMessages.latest(pods);
    var summary = t.map(Termination::summary).orElse(null);
    if (summary != null) {
      TrainerStatus.apply(st, summary);
    }
    JobCondition jc = job.getStatus() == null || job.getStatus().getConditions() == null ? null
        : job.getStatus().getConditions().stream()
            .filter(c -> (phase == Phase.Succeeded ? "Complete" : "Failed").equals(c.getType())
                && "True".equals(c.getStatus()))
            .findFirst().orElse(null);
    st.phase = phase;
    if (summary != null && summary.reason != null) {
      st.reason = summary.reason;
    } else if (phase == Phase.Succeeded) {
      st.reason = Boolean.TRUE.equals(st.earlyStopped) ? "EarlyStopped" : "Completed";
    } else {
      st.reason = jc != null && jc.getReason() != null ? jc.getReason() : "Failed";
    }
    if (summary != null && summary.message != null) {
      st.message = summary.message;
    } else if (phase == Phase.Succeeded) {
      st.message = "training finished";
    } else {
      st.message = t.map(Termination::message).filter(m -> m != null && !m.isBlank())
          .map(m -> "trainer exited with code " + t.get().exitCode() + ": " + m.strip())
          .or(() -> Optional.ofNullable(jc == null ? null : jc.getMessage()))
          .orElse("the training Job failed");
    }
    st.completionTime = job.getStatus() != null && job.getStatus().getCompletionTime() != null
        ? job.getStatus().getCompletionTime()
        : jc != null && jc.getLastTransitionTime() != null ? jc.getLastTransitionTime() : Conditions.now();
    if (st.startTime == null) {
      st.startTime = job.getStatus() != null && job.getStatus().getStartTime() != null
          ? job.getStatus().getStartTime() : st.completionTime;
    }
    Conditions.set(st, Conditions.RUNNING, false, phase.name(), st.message, generation);
    Conditions.set(st, phase == Phase.Succeeded ? Conditions.SUCCEEDED : Conditions.FAILED, true, st.reason,
        st.message, generation);
  }

  private static void jobDeleted(FineTuneJobStatus st, Long generation) {
    String message = "the training Job " + st.jobName + " was deleted before it finished; it is not re-created."
        + " Create the FineTuneJob again to train again (it resumes from the checkpoints on its volume).";
    Conditions.set(st, Conditions.RUNNING, false, "JobDeleted", message, generation);
    Conditions.fail(st, "JobDeleted", message, generation);
  }

  /** A Job's Pod template is immutable: a spec that no longer matches the Job's is refused, not applied. */
  private static void specChange(FineTuneJob ftj, Job job, FineTuneJobStatus st, Long generation) {
    String made = job.getMetadata().getAnnotations() == null ? null
        : job.getMetadata().getAnnotations().get(Names.SPEC_HASH_ANNOTATION);
    if (made == null) {
      return;
    }
    if (made.equals(SpecHash.of(ftj.getSpec()))) {
      Conditions.clear(st, Conditions.SPEC_CHANGE_REFUSED, "SpecMatchesJob", "the spec matches the training Job",
          generation);
      return;
    }
    String message = "spec changed (generation " + generation + ") after training Job " + job.getMetadata().getName()
        + " was created; only spec.suspend can change because a Job's Pod template is immutable. The Job keeps"
        + " the spec it was created with; delete and re-create the FineTuneJob to change anything else. Its claim is"
        + " kept (spec.checkpoints.retainClaim, the default) and a re-created job of the same name continues its run"
        + " there: for other model, data or training settings, use another name or spec.checkpoints.path.";
    Conditions.set(st, Conditions.SPEC_CHANGE_REFUSED, true, "SpecChangeRefused", message, generation);
  }

  private static String waitingReason(Pod pod) {
    if (pod.getStatus() == null) {
      return "PodPending";
    }
    if (pod.getStatus().getContainerStatuses() != null) {
      for (var cs : pod.getStatus().getContainerStatuses()) {
        if (cs.getState() != null && cs.getState().getWaiting() != null && cs.getState().getWaiting().getReason() != null) {
          return cs.getState().getWaiting().getReason();
        }
      }
    }
    if (pod.getStatus().getConditions() != null) {
      for (var c : pod.getStatus().getConditions()) {
        if ("PodScheduled".equals(c.getType()) && "False".equals(c.getStatus()) && c.getReason() != null) {
          return c.getReason();
        }
      }
    }
    return "PodPending";
  }

  /**
   * What keeps a Pod from running, in the kubelet's or the scheduler's words: its container's waiting message (e.g.
   * CreateContainerConfigError: {@code secret "hf-token" not found}) or why it is not scheduled (e.g. {@code
   * persistentvolumeclaim "hub-cache" not found}).
   */
  private static Optional<String> waitingMessage(Pod pod) {
    if (pod.getStatus() == null) {
      return Optional.empty();
    }
    if (pod.getStatus().getContainerStatuses() != null) {
      for (var cs : pod.getStatus().getContainerStatuses()) {
        var waiting = cs.getState() == null ? null : cs.getState().getWaiting();
        if (waiting != null && waiting.getMessage() != null && !waiting.getMessage().isBlank()) {
          return Optional.of(waiting.getMessage().strip());
        }
      }
    }
    if (pod.getStatus().getConditions() != null) {
      for (var c : pod.getStatus().getConditions()) {
        if ("PodScheduled".equals(c.getType()) && "False".equals(c.getStatus()) && c.getMessage() != null
            && !c.getMessage().isBlank()) {
          return Optional.of(c.getMessage().strip());
        }
      }
    }
    return Optional.empty();
  }

  /**
   * A container that cannot start for a missing Secret or key (the kubelet retries it for ever: the Pod stays
   * Pending): which spec field names that Secret, and the fix.
   */
  static String secretHint(FineTuneJob ftj, String reason, String kubeletMessage) {
    if (!"CreateContainerConfigError".equals(reason)) {
      return "";
    }
    String ns = ftj.getMetadata().getNamespace();
    var model = ftj.getSpec().model;
    if (model != null && model.hubTokenSecret != null && model.hubTokenSecret.name != null
        && mentions(kubeletMessage, model.hubTokenSecret.name)) {
      String key = model.hubTokenSecret.key == null || model.hubTokenSecret.key.isBlank()
          ? dev.finetune.api.ModelSpec.HubTokenSecret.DEFAULT_KEY : model.hubTokenSecret.key;
      return "; spec.model.hubTokenSecret names Secret " + model.hubTokenSecret.name + " with key " + key
          + " in namespace " + ns + ": create it (kubectl create secret generic " + model.hubTokenSecret.name
          + " -n " + ns + " --from-literal=" + key + "=hf_...) or fix the spec";
    }
    var eval = ftj.getSpec().evaluation;
    if (eval != null && eval.judge != null && eval.judge.apiKeySecret != null && eval.judge.apiKeySecret.name != null
        && mentions(kubeletMessage, eval.judge.apiKeySecret.name)) {
      return "; spec.evaluation.judge.apiKeySecret names Secret " + eval.judge.apiKeySecret.name + " with key "
          + eval.judge.apiKeySecret.key + " in namespace " + ns + ": create it or fix the spec";
    }
    return "";
  }

  /** The kubelet names a Secret as {@code "NAME"} (not found) or {@code NAMESPACE/NAME} (a key missing in it). */
  private static boolean mentions(String kubeletMessage, String secret) {
    return java.util.regex.Pattern.compile("[\"/]" + java.util.regex.Pattern.quote(secret) + "(\"|$|[\\s,;:)])")
        .matcher(kubeletMessage).find();
  }

  static boolean hasCondition(Job job, String type) {
    return job.getStatus() != null && job.getStatus().getConditions() != null && job.getStatus().getConditions()
        .stream().anyMatch(c -> type.equals(c.getType()) && "True".equals(c.getStatus()));
  }

  private static int nz(Integer i) {
    return i == null ? 0 : i;
  }
}
