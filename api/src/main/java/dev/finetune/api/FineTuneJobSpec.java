package dev.finetune.api;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonPropertyDescription;
import io.fabric8.generator.annotation.Min;
import io.fabric8.generator.annotation.Required;
import io.fabric8.generator.annotation.Size;
import io.fabric8.generator.annotation.ValidationRule;
import io.fabric8.kubernetes.api.model.Affinity;
import io.fabric8.kubernetes.api.model.Toleration;
import java.util.List;
import java.util.Map;

/** What to fine-tune, on which data, how, and where the trainer Pod runs. */
@JsonInclude(JsonInclude.Include.NON_NULL)
@ValidationRule(value = "!has(self.model.scratch) || self.dataset.maxLength <= self.model.scratch.contextLength",
    fieldPath = ".dataset.maxLength",
    messageExpression = "\"%d exceeds the model's context length (%d); lower maxLength or raise spec.model.scratch.contextLength\""
        + ".format([self.dataset.maxLength, self.model.scratch.contextLength])")
public class FineTuneJobSpec {
  private static final String LABEL_KEY = "^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$";

  @Required
  @JsonPropertyDescription("The pretrained model to start from: exactly one of hub, path or scratch.")
  public ModelSpec model;

  @Required
  @JsonPropertyDescription("The instruction data (instruction, input, output records), how prompts are built and how the data is split.")
  public DatasetSpec dataset;

  @JsonPropertyDescription("Optimiser and schedule: epochs, batch size, learning rate, AdamW, warm-up, clipping, accumulation.")
  public TrainingSpec training = new TrainingSpec();

  @JsonPropertyDescription("Stop when validation loss stops improving. Absent: train all epochs. The best epoch's weights are the result either way.")
  public EarlyStoppingSpec earlyStopping;

  @JsonPropertyDescription("Where checkpoints and results are written and how many checkpoints are kept.")
  public CheckpointSpec checkpoints = new CheckpointSpec();

  @JsonPropertyDescription("Answers for the test split after training, and optional scoring by a judge model.")
  public EvaluationSpec evaluation = new EvaluationSpec();

  @JsonPropertyDescription("GPUs, CPU and memory for the trainer Pod.")
  public ResourcesSpec resources = new ResourcesSpec();

  @JsonPropertyDescription("Trainer container image. Empty: the operator's default trainer image.")
  public String image;

  @ValidationRule(value = "self in ['Always', 'IfNotPresent', 'Never']",
      messageExpression = "\"is '\" + self + \"', must be Always, IfNotPresent or Never\"")
  @JsonPropertyDescription("Image pull policy of the trainer container (Always, IfNotPresent, Never). Empty: Kubernetes' default.")
  public String imagePullPolicy;

  @JsonPropertyDescription("Node labels the trainer Pod must match, e.g. a GPU node pool.")
  public Map<String, String> nodeSelector;

  @JsonPropertyDescription("Tolerations of the trainer Pod, e.g. for tainted GPU nodes.")
  public List<Toleration> tolerations;

  @JsonPropertyDescription("Affinity rules of the trainer Pod.")
  public Affinity affinity;

  @JsonPropertyDescription("PriorityClass of the trainer Pod.")
  public String priorityClassName;

  @JsonPropertyDescription("ServiceAccount the trainer Pod runs as. Empty: the namespace's default account.")
  public String serviceAccountName;

  @ValidationRule(value = "self.all(k, k.matches('" + LABEL_KEY + "'))",
      messageExpression = "\"'\" + self.filter(k, !k.matches('" + LABEL_KEY + "'))[0] + \"' is not a valid label key\"")
  @Size(max = 64)
  @JsonPropertyDescription("Labels added to the training Job and its Pod, e.g. kueue.x-k8s.io/queue-name.")
  public Map<String, String> labels;

  @JsonPropertyDescription("Suspend training: the trainer checkpoints and stops; set back to false to resume from the checkpoint.")
  public Boolean suspend = false;

  @Min(0)
  @JsonPropertyDescription("How many times a crashed or evicted trainer is restarted (it resumes from the latest checkpoint). Bad input is never retried.")
  public Integer backoffLimit = 3;

  @Min(1)
  @JsonPropertyDescription("Fail the job when it has run this many seconds in all. Empty: no deadline.")
  public Long activeDeadlineSeconds;

  @Min(0)
  @JsonPropertyDescription("Delete the finished training Job (not this FineTuneJob or its results) this many seconds after it ends. Empty: keep it.")
  public Integer ttlSecondsAfterFinished;
}
