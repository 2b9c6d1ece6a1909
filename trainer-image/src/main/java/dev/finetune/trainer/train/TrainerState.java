package dev.finetune.trainer.train;

import com.fasterxml.jackson.annotation.JsonIgnoreProperties;
import dev.finetune.api.EpochRecord;
import java.util.ArrayList;
import java.util.List;

/**
 * Everything besides weights and moments that a resumed run needs to continue exactly: where in the data
 * order it is (epoch, batch), counters, the running epoch loss, early-stopping state and the history. The
 * data order itself is a function of the seed and the epoch, so no RNG state has to be stored.
 */
@JsonIgnoreProperties(ignoreUnknown = true)
public class TrainerState {
  /** Epochs fully finished (with validation). */
  public int epochsCompleted;
  /** Micro-batches of the current epoch already trained (0 at an epoch boundary). */
  public int batchInEpoch;
  /** Optimizer steps taken (AdamW's step count). */
  public long step;
  /** Training tokens seen. */
  public long tokens;
  /** Sum and count of the current epoch's batch losses so far. */
  public double epochLossSum;
  public int epochBatches;
  /** Seconds spent in the current epoch before the checkpoint. */
  public double epochSeconds;
  public double bestValidationLoss = Double.POSITIVE_INFINITY;
  public int bestEpoch;
  public int epochsWithoutImprovement;
  public boolean earlyStopped;
  public List<EpochRecord> history = new ArrayList<>();
  /** What the run computes from: {@link TrainedWith#of}; null in checkpoints of older trainers. */
  public java.util.Map<String, String> trainedWith;
}
