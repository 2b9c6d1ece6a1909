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

  @JsonPropertyDescription("Extended resource name of the GPUs.")
  public String gpuResource = "nvidia.com/gpu";

  @Pattern(QUANTITY)
  @JsonPropertyDescription("CPU for the trainer, e.g. 4 or 3500m. Empty: the operator's default.")
  public String cpu;

  @Pattern(QUANTITY)
  @JsonPropertyDescription("Memory for the trainer, e.g. 16Gi. Empty: the operator's default.")
  public String memory;
}
