package dev.finetune.api;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonProperty;
import com.fasterxml.jackson.annotation.JsonPropertyDescription;
import io.fabric8.generator.annotation.Max;
import io.fabric8.generator.annotation.Min;
import io.fabric8.generator.annotation.ValidationRule;

/** Optimisation: AdamW with PyTorch's semantics, warm-up and decay, global-norm clipping, accumulation. */
@JsonInclude(JsonInclude.Include.NON_NULL)
@ValidationRule(value = "self.schedule == 'constant' || self.minLearningRate < self.learningRate", fieldPath = ".minLearningRate",
    messageExpression = "'is %s, must be at least 0 and below learningRate (%s)'.format([self.minLearningRate, self.learningRate])")
public class TrainingSpec {

  @Min(1)
  @Max(100000)
  @JsonPropertyDescription("Passes over the training split.")
  public Integer epochs = 2;

  @Min(1)
  @Max(65536)
  @JsonPropertyDescription("Records per batch (per optimiser step unless gradientAccumulationSteps is above 1).")
  public Integer batchSize = 8;

  @Min(value = 0, inclusive = false)
  @Max(10)
  @ValidationRule(value = "self >= 1e-9", messageExpression = "'is %s, too small to change float32 weights (an AdamW step moves"
      + " a weight by about learningRate; a weight of 0.02 moves only by 2e-9 or more); typical: 5e-5 to 1e-3'.format([self])")
  @JsonPropertyDescription("Peak learning rate of AdamW; must be above 0.")
  public Double learningRate = 5e-5;

  @Min(0)
  @ValidationRule(value = Float32.RULE, messageExpression = Float32.SMALL + "0.01 to 0.1" + Float32.LARGE + "0.01 to 0.1" + Float32.END)
  @JsonPropertyDescription("AdamW's decoupled weight decay.")
  public Double weightDecay = 0.1;

  @Min(0)
  @Max(value = 1, inclusive = false)
  @ValidationRule(value = "self < 0.9999999701976776", messageExpression = "'is %s, which is 1 in float32 (the optimiser would"
      + " stop averaging); use at most 0.9999999 (typical: 0.9 for beta1, 0.999 for beta2)'.format([self])")
  @JsonPropertyDescription("AdamW beta1; below 1.")
  public Double beta1 = 0.9;

  @Min(0)
  @Max(value = 1, inclusive = false)
  @ValidationRule(value = "self < 0.9999999701976776", messageExpression = "'is %s, which is 1 in float32 (the optimiser would"
      + " stop averaging); use at most 0.9999999 (typical: 0.9 for beta1, 0.999 for beta2)'.format([self])")
  @JsonPropertyDescription("AdamW beta2; below 1.")
  public Double beta2 = 0.999;

  @Min(value = 0, inclusive = false)
  @ValidationRule(value = Float32.RULE, messageExpression = Float32.SMALL + "1e-8" + Float32.LARGE + "1e-8" + Float32.END)
  @JsonPropertyDescription("AdamW epsilon; above 0.")
  public Double epsilon = 1e-8;

  @Min(0)
  @JsonPropertyDescription("Optimiser steps over which the learning rate rises linearly from 0 to learningRate.")
  public Integer warmupSteps = 0;

  @JsonPropertyDescription("Learning rate after warm-up: constant, linear (to minLearningRate at the last step) or cosine (to minLearningRate).")
  public Schedule schedule = Schedule.CONSTANT;

  @Min(0)
  @ValidationRule(value = Float32.RULE, messageExpression = Float32.SMALL + "0 or about a tenth of learningRate" + Float32.LARGE + "0 or about a tenth of learningRate" + Float32.END)
  @JsonPropertyDescription("Final learning rate of the linear and cosine schedules; below learningRate.")
  public Double minLearningRate = 0.0;

  @Min(value = 0, inclusive = false)
  @ValidationRule(value = Float32.RULE, messageExpression = Float32.SMALL + "1.0" + Float32.LARGE + "1.0" + Float32.END)
  @JsonPropertyDescription("Clip the gradients' global L2 norm to this value (PyTorch clip_grad_norm_). Empty: no clipping.")
  public Double maxGradNorm;

  @Min(1)
  @Max(4096)
  @JsonPropertyDescription("Batches whose gradients are summed (averaged) before one optimiser step.")
  public Integer gradientAccumulationSteps = 1;

  @JsonPropertyDescription("Shuffle the training split every epoch (seeded, so a resumed run sees the same order).")
  public Boolean shuffle = true;

  @JsonPropertyDescription("Seed of training: batch order, dropout.")
  public Long seed = 123L;

  @Min(0)
  @Max(value = 1, inclusive = false)
  @ValidationRule(value = Float32.RULE, messageExpression = Float32.SMALL + "0 to 0.2" + Float32.LARGE + "0 to 0.2" + Float32.END)
  @JsonPropertyDescription("Dropout probability; 0 disables dropout (the default, like the reference's fine-tuning).")
  public Double dropout = 0.0;

  @JsonPropertyDescription("Recompute each decoder layer's activations in the backward pass instead of keeping them from the forward pass (activation checkpointing): the activations of a batch shrink to one layer's plus each layer's input, for about a third more compute. It changes no number: the same dropout masks are drawn again.")
  public Boolean gradientCheckpointing = false;

  @Min(0)
  @Max(1048576)
  @JsonPropertyDescription("The loss is computed over this many tokens of the batch at a time, so the output layer's logits (tokens x vocabulary, in float32) exist for one chunk only; 0 computes them for the whole batch at once. The loss is the same mean either way.")
  public Integer lossChunkTokens = 1024;

  @JsonPropertyDescription("Arithmetic of training: auto (bf16 on GPUs of compute capability 8.0 and up, such as A100,"
      + " H100 and H200; fp32 elsewhere), fp32, tf32 (fp32 with tensor-core matmuls on GPUs; fp32 on CPUs) or bf16"
      + " (mixed precision: fp32 master weights, optimizer state and checkpoints, matmuls and attention in bf16).")
  public Precision precision = Precision.AUTO;

  /** Numeric precision of training; what {@code auto} resolved to is in the run's log and summary.json. */
  public enum Precision {
    @JsonProperty("auto")
    AUTO,
    @JsonProperty("fp32")
    FP32,
    @JsonProperty("tf32")
    TF32,
    @JsonProperty("bf16")
    BF16;

    /** The name as written in a job (auto, fp32, tf32, bf16). */
    @Override
    public String toString() {
      return name().toLowerCase(java.util.Locale.ROOT);
    }
  }

  @JsonPropertyDescription("Train a LoRA adapter instead of every weight (the base model stays frozen). Empty: full fine-tune.")
  public LoraSpec lora;

  /** Learning-rate decay after warm-up. */
  public enum Schedule {
    @JsonProperty("constant")
    CONSTANT,
    @JsonProperty("linear")
    LINEAR,
    @JsonProperty("cosine")
    COSINE
  }
}
