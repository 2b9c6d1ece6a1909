package dev.finetune.api;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonPropertyDescription;
import io.fabric8.generator.annotation.Max;
import io.fabric8.generator.annotation.Min;
import io.fabric8.generator.annotation.ValidationRule;

/** Shape of a randomly initialised GPT-2; the tokenizer is byte-level (256 bytes plus end-of-text). */
@JsonInclude(JsonInclude.Include.NON_NULL)
@ValidationRule(value = "self.heads < 1 || self.embeddingDim % self.heads == 0", fieldPath = ".embeddingDim",
    messageExpression = "'%d is not divisible by heads (%d); choose a multiple of heads, e.g. %d'.format([self.embeddingDim,"
        + " self.heads, self.heads * (self.embeddingDim / self.heads > 1 ? self.embeddingDim / self.heads : 1)])")
public class ScratchModelSpec {

  @Min(1)
  @Max(96)
  @JsonPropertyDescription("Number of transformer blocks.")
  public Integer layers = 2;

  @Min(8)
  @Max(8192)
  @JsonPropertyDescription("Embedding width; must be divisible by heads.")
  public Integer embeddingDim = 64;

  @Min(1)
  @Max(128)
  @JsonPropertyDescription("Attention heads per block.")
  public Integer heads = 4;

  @Min(8)
  @Max(32768)
  @JsonPropertyDescription("Maximum sequence length (positions) the model supports.")
  public Integer contextLength = 256;

  @JsonPropertyDescription("Seed of the random initialisation.")
  public Long seed = 42L;
}
