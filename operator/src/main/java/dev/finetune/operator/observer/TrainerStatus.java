package dev.finetune.operator.observer;

import dev.finetune.api.CheckpointStatus;
import dev.finetune.api.EpochRecord;
import dev.finetune.api.FineTuneJobStatus;
import dev.finetune.api.trainer.TrainerProgress;
import dev.finetune.api.trainer.TrainerSummary;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/** Copies what the trainer reports ({@code /progress} or its summary) into a FineTuneJob's status. */
public final class TrainerStatus {
  private TrainerStatus() {}

  public static void apply(FineTuneJobStatus status, TrainerProgress p) {
    mergeHistory(status, p.history);
    Integer finished = lastEpoch(p.history);
    if (finished == null && p.trainLoss != null && p.epoch != null && p.epoch > 0) {
      finished = p.epoch;
    }
    if (finished != null) {
      status.epoch = max(status.epoch, finished);
    }
    if (p.epochs != null) {
      status.epochs = p.epochs;
    }
    EpochRecord last = lastRecord(p.history);
    copyLosses(status, p.trainLoss != null ? p.trainLoss : last == null ? null : last.trainLoss,
        p.validationLoss != null ? p.validationLoss : last == null ? null : last.validationLoss,
        p.bestValidationLoss, p.bestEpoch);
    mergeCheckpoint(status, p.checkpoint);
    if (p.earlyStopped != null) {
      status.earlyStopped = p.earlyStopped;
    }
  }

  public static void apply(FineTuneJobStatus status, TrainerSummary s) {
    mergeHistory(status, s.history);
    Integer finished = lastEpoch(s.history);
    if (s.epoch != null) {
      finished = finished == null ? s.epoch : Math.max(finished, s.epoch);
    }
    if (finished != null) {
      status.epoch = max(status.epoch, finished);
    }
    if (s.epochs != null) {
      status.epochs = s.epochs;
    }
    EpochRecord last = lastRecord(s.history);
    copyLosses(status, s.trainLoss != null ? s.trainLoss : last == null ? null : last.trainLoss,
        s.validationLoss != null ? s.validationLoss : last == null ? null : last.validationLoss,
        s.bestValidationLoss, s.bestEpoch);
    mergeCheckpoint(status, s.checkpoint);
    if (s.earlyStopped != null) {
      status.earlyStopped = s.earlyStopped;
    }
    if (s.evaluation != null) {
      status.evaluation = s.evaluation;
    }
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
