package dev.finetune.operator.observer;

import dev.finetune.api.CheckpointStatus;
import dev.finetune.api.EpochRecord;
import dev.finetune.api.FineTuneJobStatus;
import dev.finetune.api.trainer.TrainerContract;
import dev.finetune.api.trainer.TrainerReport;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/** Copies what the trainer reports ({@link TrainerReport}: {@code /progress} or its summary) into a job's status. */
public final class TrainerStatus {
  private TrainerStatus() {}

  /**
   * Fields the report leaves out keep their status value; the history merges by epoch. A progress report of phase
   * Downloading also sets the reason (Downloading) and the message (the trainer's: what it downloads, how far, how
   * fast), so the poller sees each step of a download as a change to show.
   */
  public static void apply(FineTuneJobStatus status, TrainerReport r) {
    if (TrainerContract.PHASE_DOWNLOADING.equals(r.phase)) {
      status.reason = TrainerContract.PHASE_DOWNLOADING;
      status.message = r.message == null || r.message.isBlank() ? "the trainer is downloading from the hub"
          : r.message.strip();
    }
    mergeHistory(status, r.history);
    Integer finished = finishedEpoch(r);
    if (finished != null) {
      status.epoch = max(status.epoch, finished);
    }
    if (r.epochs != null) {
      status.epochs = r.epochs;
    }
    EpochRecord last = lastRecord(r.history);
    copyLosses(status, r.trainLoss != null ? r.trainLoss : last == null ? null : last.trainLoss,
        r.validationLoss != null ? r.validationLoss : last == null ? null : last.validationLoss,
        r.bestValidationLoss, r.bestEpoch);
    mergeCheckpoint(status, r.checkpoint);
    if (r.earlyStopped != null) {
      status.earlyStopped = r.earlyStopped;
    }
    if (r.evaluation != null) {
      status.evaluation = r.evaluation;
    }
    if (r.precision != null) {
      status.precision = r.precision;
    }
    if (r.device != null) {
      status.device = r.device;
    }
  }

  /**
   * The last finished epoch: the newest in the history; a summary (it has a reason) counts its epoch as
   * finished, while a progress report's epoch may still be running and counts only when it has losses and the
   * history is empty.
   */
  private static Integer finishedEpoch(TrainerReport r) {
    Integer finished = lastEpoch(r.history);
    if (r.reason != null) {
      return r.epoch == null ? finished : finished == null ? r.epoch : Math.max(finished, r.epoch);
    }
    if (finished == null && r.trainLoss != null && r.epoch != null && r.epoch > 0) {
      return r.epoch;
    }
    return finished;
  }

  /** "e/E" for the printer column. */
  public static String progress(FineTuneJobStatus status) {
    if (status.epochs == null) {
      return null;
    }
    return (status.epoch == null ? 0 : status.epoch) + "/" + status.epochs;
  }

  private static void copyLosses(FineTuneJobStatus status, Double train, Double val, Double best, Integer bestEpoch) {
    if (train != null) {
      status.trainLoss = train;
    }
    if (val != null) {
      status.validationLoss = val;
    }
    if (best != null) {
      status.bestValidationLoss = best;
    }
    if (bestEpoch != null && bestEpoch > 0) {
      status.bestEpoch = bestEpoch;
    }
  }

  private static void mergeCheckpoint(FineTuneJobStatus status, CheckpointStatus c) {
    if (c == null) {
      return;
    }
    CheckpointStatus merged = new CheckpointStatus();
    CheckpointStatus old = status.checkpoint;
    merged.latest = c.latest != null ? c.latest : old == null ? null : old.latest;
    merged.best = c.best != null ? c.best : old == null ? null : old.best;
    merged.restoredFrom = c.restoredFrom != null ? c.restoredFrom : old == null ? null : old.restoredFrom;
    status.checkpoint = merged;
  }

  /** Merges by epoch (newer reports win) and keeps the newest {@link FineTuneJobStatus#MAX_HISTORY}. */
  static void mergeHistory(FineTuneJobStatus status, List<EpochRecord> reported) {
    if (reported == null || reported.isEmpty()) {
      return;
    }
    Map<Integer, EpochRecord> byEpoch = new TreeMap<>();
    if (status.history != null) {
      status.history.stream().filter(r -> r.epoch != null).forEach(r -> byEpoch.put(r.epoch, r));
    }
    reported.stream().filter(r -> r != null && r.epoch != null).forEach(r -> byEpoch.put(r.epoch, r));
    List<EpochRecord> all = new ArrayList<>(byEpoch.values());
    int from = Math.max(0, all.size() - FineTuneJobStatus.MAX_HISTORY);
    status.history = new ArrayList<>(all.subList(from, all.size()));
  }

  private static EpochRecord lastRecord(List<EpochRecord> history) {
    return history == null ? null : history.stream().filter(r -> r != null && r.epoch != null)
        .max((a, b) -> Integer.compare(a.epoch, b.epoch)).orElse(null);
  }

  private static Integer lastEpoch(List<EpochRecord> history) {
    if (history == null) {
      return null;
    }
    return history.stream().filter(r -> r != null && r.epoch != null).map(r -> r.epoch).max(Integer::compare).orElse(null);
  }

  private static Integer max(Integer a, int b) {
    return a == null ? b : Math.max(a, b);
  }
}
