package dev.finetune.trainer.train;

import dev.finetune.api.EpochRecord;
import dev.finetune.api.FineTuneJob;
import dev.finetune.trainer.data.Record;
import dev.finetune.trainer.hub.DownloadListener;
import dev.finetune.trainer.hub.RepoKind;
import dev.finetune.trainer.model.Model;
import java.nio.file.Path;
import java.util.List;

/**
 * The seam for observability (metrics, /progress, summary.json, termination log, plots, test answers): the
 * trainer calls these on its training thread, in order. Implementations should be quick and must not throw;
 * an exception thrown here fails the run.
 */
public interface TrainingListener extends DownloadListener {

  /**
   * While the model or data downloads from the hub (before {@link #onStart}): what, how far, how fast; and
   * {@link #onResolved}, the commit a hub revision resolved to, for the run's record.
   */
  @Override
  default void onDownload(String message, boolean finished) {}

  /** Model and data are ready; training (or resuming) begins. */
  default void onStart(RunInfo run) {}

  /** After each optimizer step. */
  default void onStep(StepInfo step) {}

  /** After each epoch's validation; {@code record} is also the line appended to history.jsonl. */
  default void onEpoch(EpochInfo epoch) {}

  /** After a checkpoint directory was completed (renamed into place). */
  default void onCheckpoint(CheckpointInfo checkpoint) {}

  /** Training ended normally: completed, early-stopped or interrupted by a stop request (SIGTERM). */
  default void onFinish(Result result) {}

  /** Training failed; {@code exitCode} is what the process will exit with (1, 3 or 4). */
  default void onError(Throwable error, int exitCode) {}

  /**
   * What is being trained. {@code model} is live (use it only on the calling thread); test may be empty;
   * {@code precision} (fp32, tf32, bf16) and {@code device} say how it computes (null when unknown).
   */
  record RunInfo(FineTuneJob job, Path outputDir, int epochs, long stepsPerEpoch, long totalSteps,
      int trainRecords, int validationRecords, List<Record> test, long parameters, Model model,
      String restoredFrom, int startEpoch, long startStep, List<EpochRecord> history, String precision,
      String device) {
    public RunInfo(FineTuneJob job, Path outputDir, int epochs, long stepsPerEpoch, long totalSteps, int trainRecords,
        int validationRecords, List<Record> test, long parameters, Model model, String restoredFrom, int startEpoch,
        long startStep, List<EpochRecord> history) {
      this(job, outputDir, epochs, stepsPerEpoch, totalSteps, trainRecords, validationRecords, test, parameters, model,
          restoredFrom, startEpoch, startStep, history, null, null);
    }
  }

  /** One optimizer step: epoch is 1-based, step counts optimizer steps from 1. */
  record StepInfo(int epoch, long step, long totalSteps, double loss, double learningRate, long tokens,
      double tokensPerSecond, double etaSeconds, double gradNorm) {}

  record EpochInfo(EpochRecord record, double bestValidationLoss, int bestEpoch, boolean improved,
      int epochsWithoutImprovement) {}

  /** {@code name} is e.g. checkpoints/epoch-0003 (relative to the run directory). */
  record CheckpointInfo(Path dir, String name, double seconds, String best) {}

  enum Outcome { COMPLETED, EARLY_STOPPED, INTERRUPTED }

  /** How training ended; {@code bestModel} is the HF-layout best/ directory (null if no epoch finished). */
  record Result(Outcome outcome, String message, int epochsCompleted, int epochs, int bestEpoch,
      double bestValidationLoss, List<EpochRecord> history, Path bestModel, String latestCheckpoint) {}

  /** Calls several listeners in order. */
  static TrainingListener all(List<TrainingListener> listeners) {
    return new TrainingListener() {
      @Override
      public void onDownload(String message, boolean finished) {
        listeners.forEach(l -> l.onDownload(message, finished));
      }

      @Override
      public void onResolved(RepoKind kind, String repo, String revision, String commit) {
        listeners.forEach(l -> l.onResolved(kind, repo, revision, commit));
      }

      @Override
      public void onStart(RunInfo run) {
        listeners.forEach(l -> l.onStart(run));
      }

      @Override
      public void onStep(StepInfo step) {
        listeners.forEach(l -> l.onStep(step));
      }

      @Override
      public void onEpoch(EpochInfo epoch) {
        listeners.forEach(l -> l.onEpoch(epoch));
      }

      @Override
      public void onCheckpoint(CheckpointInfo checkpoint) {
        listeners.forEach(l -> l.onCheckpoint(checkpoint));
      }

      @Override
      public void onFinish(Result result) {
        listeners.forEach(l -> l.onFinish(result));
      }

      @Override
      public void onError(Throwable error, int exitCode) {
        listeners.forEach(l -> l.onError(error, exitCode));
      }
    };
  }
}
