package dev.finetune.api;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonPropertyDescription;
import io.fabric8.generator.annotation.Max;
import io.fabric8.generator.annotation.Min;
import io.fabric8.generator.annotation.Pattern;
import io.fabric8.generator.annotation.ValidationRule;

/** Resources of the trainer container; requests equal limits so the Pod is not squeezed mid-epoch. */
@JsonInclude(JsonInclude.Include.NON_NULL)
@ValidationRule(value = "self.gpus == 0 || (has(self.gpuResource) && self.gpuResource.trim() != '')", fieldPath = ".gpuResource",
    message = "is empty; write the GPU resource name, e.g. nvidia.com/gpu")
public class ResourcesSpec {
  static final String QUANTITY = "^[0-9]+(\\.[0-9]+)?(m|Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$";

  @Min(0)
  @Max(64)
  @JsonPropertyDescription("GPUs for the trainer (limit of gpuResource). 0: train on the CPU. Above 1: one data-parallel"
      + " rank per GPU in the Pod (torchrun --nproc-per-node), the result the same as on one.")
  public Integer gpus = 0;

  @Min(1)
  @Max(64)
  @JsonPropertyDescription("Nodes (Pods) the job trains on, each with the gpus, cpu and memory above. Above 1: data-parallel"
      + " ranks on every node (world size nodes x max(gpus, 1)) in one rendezvous. The first Pod (a one-Pod Job) holds the"
      + " checkpoint volume and writes the run folder; the others (an Indexed Job, '<name>-workers') need no shared volume."
      + " A rank that fails restarts them all, and they resume from the latest checkpoint.")
  public Integer nodes = 1;

  @JsonPropertyDescription("Extended resource name of the GPUs.")
  public String gpuResource = "nvidia.com/gpu";

  @Pattern(QUANTITY)
  @JsonPropertyDescription("CPU for the trainer, e.g. 4 or 3500m. Empty: the operator's default.")
  public String cpu;

  @Pattern(QUANTITY)
  @JsonPropertyDescription("Memory for the trainer, e.g. 16Gi. Empty: the operator's default.")
  public String memory;
}
