package dev.finetune.api;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonPropertyDescription;
import io.fabric8.generator.annotation.Default;
import io.fabric8.generator.annotation.Max;
import io.fabric8.generator.annotation.Min;
import java.util.List;

/**
 * LoRA (low-rank adapters, as PEFT computes them): the base model stays frozen and only small matrices beside the
 * targeted linear layers train. The result is a PEFT adapter and the merged full model.
 */
@JsonInclude(JsonInclude.Include.NON_NULL)
public class LoraSpec {
  /** Module names an adapter may target, as HF/PEFT name them (Llama family, then GPT-2). */
  public static final List<String> MODULES = List.of("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
      "down_proj", "c_attn", "c_proj", "c_fc");

  @Min(1)
  @Max(1024)
  @Default("8")
  @JsonPropertyDescription("Rank of the adapter matrices (PEFT's r).")
  public Integer r = 8;

  @Min(0)
  @Default("8.0")
  @JsonPropertyDescription("Scaling numerator (PEFT's lora_alpha): the update is multiplied by alpha / r.")
  public Double alpha = 8.0;

  @Min(0)
  @Max(1)
  @Default("0.0")
  @JsonPropertyDescription("Dropout on the adapter's input during training (PEFT's lora_dropout).")
  public Double dropout = 0.0;

  @JsonPropertyDescription("Linear layers to adapt, as HF/PEFT name them: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj (Llama family); c_attn, c_proj, c_fc (GPT-2). Empty: PEFT's default for the model (q_proj and v_proj; c_attn for GPT-2).")
  public List<String> targetModules;

  @JsonPropertyDescription("A PEFT adapter folder (adapter_config.json, adapter_model.safetensors) to continue training; its r, alpha and targetModules are used. Resolved like spec.model.path. Empty: a new adapter, initialised as PEFT does from spec.training.seed.")
  public String initAdapter;
}
