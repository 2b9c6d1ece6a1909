package dev.finetune.api.trainer;

import com.fasterxml.jackson.annotation.JsonIgnoreProperties;
import com.fasterxml.jackson.annotation.JsonInclude;
import dev.finetune.api.CheckpointStatus;
import dev.finetune.api.EpochRecord;
import dev.finetune.api.EvaluationStatus;
import java.util.ArrayList;
import java.util.List;

/**
 * What the trainer reports about its run, in one shape wherever it goes: {@code /progress} while it runs
 * (polled by the operator), and at the end {@code summary.json} and the same document cut to 4 KiB in the
 * termination log, which the operator reads when the Pod is gone. The summary is the progress plus the end
 * (reason, message, evaluation) without the per-step fields, which only mean something while training runs.
 */
@JsonInclude(JsonInclude.Include.NON_NULL)
@JsonIgnoreProperties(ignoreUnknown = true)
public class TrainerReport {
  /**
   * Starting, Downloading (fetching the model or data from the HuggingFace hub; {@link #message} says what, how far,
   * how fast and how long is left, and the operator shows it as the job's reason and message), Training, Evaluating,
   * Succeeded, Failed; a summary is Succeeded or Failed.
   */
  public String phase;
  /** The summary's: Completed, EarlyStopped, InvalidSpec, InvalidData, Diverged, Interrupted, Error. */
  public String reason;
  /**
   * A summary's outcome in words; while Downloading, the download, e.g. "downloading model.safetensors of org/name:
   * 1.2 of 5.0 GB, 45 MB/s, about 2 min left". Never a secret: the operator copies it into the status.
   */
  public String message;
  /** While running the epoch in progress (or the last finished), 1-based; in a summary the last finished; 0 before the first. */
  public Integer epoch;
  public Integer epochs;
  /** While running: optimiser steps done in all, and planned in all. */
  public Long step;
  public Long steps;
  public Double stepLoss;
  public Double learningRate;
  /** Of the last finished epoch. */
  public Double trainLoss;
  public Double validationLoss;
  public Double bestValidationLoss;
  public Integer bestEpoch;
  public Double tokensPerSecond;
  public Double etaSeconds;
  public Boolean earlyStopped;
  /** The precision training ran in (fp32, tf32 or bf16; what spec.training.precision auto resolved to). */
  public String precision;
  /** The commit a hub model's revision resolved to (once: a restart trains on the same one). */
  public String modelCommit;
  /** The commit a hub dataset's revision resolved to. */
  public String datasetCommit;
  /** The device training ran on, e.g. cpu or cuda:0, with the GPU's name when there is one. */
  public String device;
  public CheckpointStatus checkpoint;
  public EvaluationStatus evaluation;
  /** Per-epoch losses; the oldest entries are dropped first when the summary must fit the termination message. */
  public List<EpochRecord> history = new ArrayList<>();
}
