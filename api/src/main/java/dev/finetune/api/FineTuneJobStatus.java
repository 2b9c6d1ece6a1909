package dev.finetune.api;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonPropertyDescription;
import io.fabric8.kubernetes.api.model.Condition;
import java.util.ArrayList;
import java.util.List;

/** Observed state, written by the operator from the Job, its Pod and the trainer's progress and summary. */
@JsonInclude(JsonInclude.Include.NON_NULL)
public class FineTuneJobStatus {
  /** At most this many epochs are kept in {@link #history}: the newest ones. */
  public static final int MAX_HISTORY = 100;

  @JsonPropertyDescription("Pending, Running, Succeeded, Failed or Suspended. Succeeded and Failed are final.")
  public Phase phase;

  @JsonPropertyDescription("Conditions: Running, Succeeded, Failed, Suspended, EarlyStopped, SpecChangeRefused, and Ready=False with reason ReconcileError while the operator cannot reach or update what the job needs.")
  public List<Condition> conditions = new ArrayList<>();

  @JsonPropertyDescription("The metadata.generation this status describes.")
  public Long observedGeneration;

  @JsonPropertyDescription("Name of the training Job.")
  public String jobName;

  @JsonPropertyDescription("Last finished epoch (1-based).")
  public Integer epoch;

  @JsonPropertyDescription("Planned epochs.")
  public Integer epochs;

  @JsonPropertyDescription("epoch/epochs, for kubectl get.")
  public String progress;

  @JsonPropertyDescription("Training loss of the last finished epoch.")
  public Double trainLoss;

  @JsonPropertyDescription("Validation loss of the last finished epoch.")
  public Double validationLoss;

  @JsonPropertyDescription("Lowest validation loss so far.")
  public Double bestValidationLoss;

  @JsonPropertyDescription("Epoch of the lowest validation loss; its weights are the result.")
  public Integer bestEpoch;

  @JsonPropertyDescription("Losses per finished epoch, the newest 100.")
  public List<EpochRecord> history;

  @JsonPropertyDescription("Paths of the latest and the best checkpoint on the checkpoint volume.")
  public CheckpointStatus checkpoint;

  @JsonPropertyDescription("True when training stopped early because validation loss stopped improving.")
  public Boolean earlyStopped;

  @JsonPropertyDescription("Test-split answers and judge scores.")
  public EvaluationStatus evaluation;

  @JsonPropertyDescription("How many times the trainer Pod was restarted (crash or eviction); each restart resumes from a checkpoint.")
  public Integer restarts;

  @JsonPropertyDescription("Data-parallel ranks running of the world size, e.g. 16/16 (nodes x GPUs a node); set when the job has more than one rank.")
  public String ranks;

  @JsonPropertyDescription("The model that trains: the hub repository (with @revision when not main), the path on the model volume, or scratch.")
  public String model;

  @JsonPropertyDescription("The device training runs on as the trainer reports it, e.g. cpu or cuda:0 NVIDIA H100 80GB HBM3 (compute capability 9.0).")
  public String device;

  @JsonPropertyDescription("The precision training runs in (fp32, tf32 or bf16): what spec.training.precision resolved to.")
  public String precision;

  @JsonPropertyDescription("Where the results are: the checkpoint volume's claim and the run folder on it, e.g. pvc/my-job-checkpoints:my-job (best/, adapter/, checkpoints/, responses.jsonl, summary.json).")
  public String results;

  @JsonPropertyDescription("Trainer Pods of a job with several nodes that have failed so far, on every node (a rank that fails stops the others too).")
  public Integer rankFailures;

  @JsonPropertyDescription("The newest 100 of those failures, oldest first: the ranks, node and Pod, and the exit code.")
  public List<String> failedRanks;

  @JsonPropertyDescription("When the trainer started (RFC 3339).")
  public String startTime;

  @JsonPropertyDescription("When the job reached Succeeded or Failed (RFC 3339).")
  public String completionTime;

  @JsonPropertyDescription("Machine-readable reason of the current phase: Created, WaitingForPod, Queued (held suspended by a queue such as Kueue), a reason the trainer Pod waits for (e.g. Unschedulable, ImagePullBackOff, CreateContainerConfigError: a Secret or key it needs is missing), Downloading (the trainer downloads from the hub; the message says how far), Training, Finishing, Completed, EarlyStopped, Suspended; when Failed: InvalidSpec, InvalidData, Diverged, Rejected (the API server refused an object the job needs), NameConflict (an object with the needed name belongs to someone else), JobDeleted, or the Job's reason.")
  public String reason;

  @JsonPropertyDescription("Human-readable detail of the current phase.")
  public String message;

  /** The lifecycle of a FineTuneJob. */
  public enum Phase {
    Pending,
    Running,
    Succeeded,
    Failed,
    Suspended;

    public boolean isTerminal() {
      return this == Succeeded || this == Failed;
    }
  }
}
