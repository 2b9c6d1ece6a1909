package dev.finetune.api;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonPropertyDescription;
import io.fabric8.generator.annotation.Min;
import io.fabric8.generator.annotation.ValidationRule;

/** Stop after {@code patience} epochs in which validation loss did not beat the best by more than {@code minDelta}. */
@JsonInclude(JsonInclude.Include.NON_NULL)
public class EarlyStoppingSpec {

  @Min(1)
  @JsonPropertyDescription("Epochs without improvement of validation loss before training stops.")
  public Integer patience = 3;

  @Min(0)
  @ValidationRule(value = Float32.RULE, messageExpression = Float32.SMALL + "0 or 0.001" + Float32.LARGE + "0 or 0.001" + Float32.END)
  @JsonPropertyDescription("An epoch improves only when validation loss falls below the best by more than this.")
  public Double minDelta = 0.0;
}
