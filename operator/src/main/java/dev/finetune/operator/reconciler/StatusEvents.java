package dev.finetune.operator.reconciler;

import dev.finetune.api.EpochRecord;
import dev.finetune.api.FineTuneJob;
import dev.finetune.api.FineTuneJobStatus;
import dev.finetune.api.FineTuneJobStatus.Phase;
import dev.finetune.operator.observer.Conditions;
import dev.finetune.operator.observer.Snapshot;
import dev.finetune.operator.observer.TerminationMessages;
import dev.finetune.operator.observer.TrainerPods;
import dev.finetune.operator.observer.TrainerStatus;
import dev.finetune.operator.resources.Names;
import io.fabric8.kubernetes.api.model.Condition;
import io.fabric8.kubernetes.api.model.Pod;
import java.util.List;
import java.util.Locale;
import java.util.Objects;
import java.util.Optional;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The Events of a reconciliation, computed from the difference between the status before and after it, so that
 * each fact (created, started, an epoch finished, restarted, suspended, finished...) is recorded once, when it
 * first shows. The snapshot only names the Pods a message talks about.
 */
class StatusEvents {
  private static final Logger LOG = LoggerFactory.getLogger(StatusEvents.class);
  /** At most this many EpochFinished events per reconciliation (e.g. after the operator was down a while). */
  private static final int MAX_EPOCH_EVENTS = 10;
  private final EventRecorder events;
  private final boolean jobSets;

  /**
   * @param jobSets whether a job with several nodes runs as a JobSet
   */
  StatusEvents(EventRecorder events, boolean jobSets) {
    this.events = events;
    this.jobSets = jobSets;
  }

  void record(FineTuneJob ftj, FineTuneJobStatus old, FineTuneJobStatus st, Snapshot seen) {
    jobEvents(ftj, old, st);
    trainerEvents(ftj, old, st, seen);
    outcome(ftj, old, st);
    if (!Objects.equals(old.phase, st.phase)) {
      LOG.info("msg=\"phase\" namespace={} name={} from={} to={} reason={}", ftj.getMetadata().getNamespace(),
          ftj.getMetadata().getName(), old.phase, st.phase, st.reason);
    }
  }

  /** "JobSet NAME" for a job with several nodes where the operator uses JobSets, else "training Job NAME". */
  private String run(FineTuneJob ftj, FineTuneJobStatus st) {
    return (jobSets && Names.nodes(ftj) > 1 ? "JobSet " : "training Job ") + st.jobName;
  }

  /** What happened to the training Job: created, spec change refused, suspended, resumed. */
  private void jobEvents(FineTuneJob ftj, FineTuneJobStatus old, FineTuneJobStatus st) {
    if (old.jobName == null && st.jobName != null) {
      int nodes = Names.nodes(ftj);
      String made = nodes == 1 ? run(ftj, st)
          : jobSets ? run(ftj, st) + " (Jobs " + Names.LEADER + ": node 0, " + Names.WORKERS + ": nodes 1-" + (nodes - 1)
              + "), Service " + Names.rendezvous(ftj)
          : run(ftj, st) + " (node 0), worker Job " + Names.workersJob(ftj) + " (nodes 1-" + (nodes - 1)
              + "), Service " + Names.rendezvous(ftj);
      events.normal(ftj, "Created", "Created " + made
          + (Names.createsClaim(ftj) ? ", PersistentVolumeClaim " + Names.claim(ftj) : "")
          + ", ConfigMap " + Names.configMap(ftj) + (st.phase == Phase.Suspended ? " (suspended)" : ""));
      return;
    }
    Optional<Condition> refused = Conditions.find(st, Conditions.SPEC_CHANGE_REFUSED)
        .filter(c -> "True".equals(c.getStatus()));
    boolean toldBefore = refused.isPresent() && Conditions.find(old, Conditions.SPEC_CHANGE_REFUSED)
        .map(c -> "True".equals(c.getStatus())
            && Objects.equals(c.getObservedGeneration(), refused.get().getObservedGeneration()))
        .orElse(false);
    if (refused.isPresent() && !toldBefore) {
      events.warning(ftj, "SpecChangeRefused", refused.get().getMessage());
    }
    if (st.phase == Phase.Suspended && old.phase != Phase.Suspended) {
      events.normal(ftj, "Suspended", "Suspended " + run(ftj, st) + "; the trainer checkpoints and stops");
    } else if (old.phase == Phase.Suspended && st.phase != Phase.Suspended && !st.phase.isTerminal()) {
      events.normal(ftj, "Resumed", "Resumed " + run(ftj, st)
          + "; the trainer resumes from the latest checkpoint");
    }
    if (suspendDropped(st) && !suspendDropped(old)) {
      events.warning(ftj, "SuspendNotSupported", Conditions.find(st, Conditions.SUSPENDED).get().getMessage());
    }
  }

  /** What the trainer did: restarted, started, finished epochs, stopped early, resumed from a checkpoint. */
  private void trainerEvents(FineTuneJob ftj, FineTuneJobStatus old, FineTuneJobStatus st, Snapshot seen) {
    int restarts = st.restarts == null ? 0 : st.restarts;
    if (restarts > (old.restarts == null ? 0 : old.restarts)) {
      events.warning(ftj, "Restarted", "Trainer restarted (" + restarts + " of at most " + ftj.getSpec().backoffLimit
          + ")" + lastFailure(seen.pods()) + "; it resumes from the latest checkpoint");
    }
    rankFailures(ftj, old, st);
    if (old.startTime == null && st.startTime != null && st.phase == Phase.Running) {
      TrainerPods.running(seen.pods()).ifPresent(pod -> events.normal(ftj, "Started", "Trainer Pod "
          + pod.getMetadata().getName() + " is running" + (pod.getSpec() == null || pod.getSpec().getNodeName() == null
              ? "" : " on node " + pod.getSpec().getNodeName())));
    }
    int before = old.epoch == null ? 0 : old.epoch;
    int now = st.epoch == null ? 0 : st.epoch;
    if (now > before) {
      List<EpochRecord> fresh = st.history == null ? List.of() : st.history.stream()
          .filter(r -> r.epoch != null && r.epoch > before && r.epoch <= now).toList();
      if (fresh.isEmpty()) {
        events.normal(ftj, "EpochFinished", epochText(now, st.epochs, st.trainLoss, st.validationLoss));
      } else {
        fresh.stream().skip(Math.max(0, fresh.size() - MAX_EPOCH_EVENTS)).forEach(r ->
            events.normal(ftj, "EpochFinished", epochText(r.epoch, st.epochs, r.trainLoss, r.validationLoss)));
      }
    }
    if (Boolean.TRUE.equals(st.earlyStopped) && !Boolean.TRUE.equals(old.earlyStopped)) {
      events.normal(ftj, "EarlyStopped", "Training stopped early: "
          + Conditions.find(st, Conditions.EARLY_STOPPED).map(Condition::getMessage).orElse(""));
    }
    String restored = st.checkpoint == null ? null : st.checkpoint.restoredFrom;
    String wasRestored = old.checkpoint == null ? null : old.checkpoint.restoredFrom;
    if (restored != null && !restored.equals(wasRestored)) {
      events.normal(ftj, "CheckpointRestored", "Trainer resumed from checkpoint " + restored + " after a restart");
    }
  }

  /** With several nodes, one Warning per trainer Pod that failed, naming its node and ranks, when it first shows. */
  private void rankFailures(FineTuneJob ftj, FineTuneJobStatus old, FineTuneJobStatus st) {
    List<String> told = old.failedRanks == null ? List.of() : old.failedRanks;
    if (st.failedRanks != null) {
      st.failedRanks.stream().filter(f -> !told.contains(f)).forEach(f -> events.warning(ftj, "RankFailed", f));
    }
  }

  /** Refused (no Job was made), succeeded or failed: once, when the outcome first shows. */
  private void outcome(FineTuneJob ftj, FineTuneJobStatus old, FineTuneJobStatus st) {
    boolean news = st.phase != old.phase || !Objects.equals(st.reason, old.reason)
        || !Objects.equals(st.message, old.message);
    if (st.phase == null || !st.phase.isTerminal() || !news) {
      return;
    }
    String name = ftj.getMetadata().getName();
    if ("InvalidSpec".equals(st.reason)) {
      // the validator's (no Job), or the trainer's: e.g. a re-created job whose spec differs from its kept run's
      events.warning(ftj, "InvalidSpec", st.jobName == null
          ? "The spec is not valid, no training Job was created: " + st.message
          : "The trainer refused the spec (Job " + st.jobName + "): " + st.message);
    } else if (st.phase == Phase.Succeeded) {
      events.normal(ftj, "Succeeded", "Training finished (" + st.reason + "): epoch " + TrainerStatus.progress(st)
          + (st.bestEpoch == null ? "" : ", best epoch " + st.bestEpoch)
          + (st.bestValidationLoss == null ? "" : " with validation loss " + fmt(st.bestValidationLoss))
          + "; " + results(ftj));
      LOG.info("msg=\"succeeded\" namespace={} name={}", ftj.getMetadata().getNamespace(), name);
    } else {
      events.warning(ftj, "Failed", "Training failed (" + st.reason + "): " + st.message);
      LOG.info("msg=\"failed\" namespace={} name={} reason={}", ftj.getMetadata().getNamespace(), name, st.reason);
    }
  }

  /** Where the results are and whether they outlive the FineTuneJob (the README's "Getting the results"). */
  static String results(FineTuneJob ftj) {
    String where = "results in pvc/" + Names.checkpointClaim(ftj) + ":" + Names.runDir(ftj)
        + " (best/, checkpoints/, responses.jsonl, summary.json)";
    return Names.createsClaim(ftj) && !Names.retainsClaim(ftj)
        ? where + ", deleted with this FineTuneJob (spec.checkpoints.retainClaim: false)"
        : where + ", kept when this FineTuneJob is deleted";
  }

  private static boolean suspendDropped(FineTuneJobStatus st) {
    return Conditions.find(st, Conditions.SUSPENDED).map(c -> "SuspendNotSupported".equals(c.getReason()))
        .orElse(false);
  }

  /** " after Pod p exited with code c (reason: message)" of the newest failed trainer Pod. */
  private static String lastFailure(List<Pod> pods) {
    return pods.stream().filter(p -> TrainerPods.inPhase(p, "Failed")).reduce((a, b) -> b)
        .flatMap(TerminationMessages::of)
        .map(t -> " after Pod " + t.podName() + " exited with code " + t.exitCode() + TerminationMessages.explanation(t))
        .orElse("");
  }



  private static String epochText(int epoch, Integer epochs, Double train, Double val) {
    return "Epoch " + epoch + (epochs == null ? "" : "/" + epochs) + " finished: train loss " + fmt(train)
        + ", validation loss " + fmt(val);
  }

  private static String fmt(Double d) {
    return d == null ? "n/a" : String.format(Locale.ROOT, "%.4f", d);
  }
}
