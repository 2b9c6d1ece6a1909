package dev.finetune.api.trainer;

import com.fasterxml.jackson.annotation.JsonIgnoreProperties;
import com.fasterxml.jackson.annotation.JsonInclude;
import dev.finetune.api.CheckpointStatus;
import dev.finetune.api.EpochRecord;
import dev.finetune.api.EvaluationStatus;
import java.util.ArrayList;
import java.util.List;

/**
 * What the trainer leaves behind at exit: {@code summary.json}, and the same document cut to 4 KiB in the
 * termination log, which the operator reads when the Pod is gone.
 */
@JsonInclude(JsonInclude.Include.NON_NULL)
@JsonIgnoreProperties(ignoreUnknown = true)
public class TrainerSummary {
  /** Succeeded or Failed. */
  public String phase;
  /** Completed, EarlyStopped, InvalidSpec, InvalidData, Diverged, Interrupted, Error. */
  public String reason;
  public String message;
  public Integer epoch;
  public Integer epochs;
  public Double trainLoss;
  public Double validationLoss;
  public Double bestValidationLoss;
  public Integer bestEpoch;
  public Boolean earlyStopped;
  /** The precision training ran in (fp32, tf32 or bf16; what spec.training.precision auto resolved to). */
  public String precision;
  /** The device training ran on, e.g. cpu() or gpu(0), with the GPU's name when there is one. */
  public String device;
  public CheckpointStatus checkpoint;
  public EvaluationStatus evaluation;
  /** Per-epoch losses; the oldest entries are dropped first when the summary must fit the termination message. */
  public List<EpochRecord> history = new ArrayList<>();
}
