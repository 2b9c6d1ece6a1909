package dev.finetune.api;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonPropertyDescription;

/** One finished epoch: a line of history.jsonl, an entry of status.history and of /progress. */
@JsonInclude(JsonInclude.Include.NON_NULL)
public class EpochRecord {
  @JsonPropertyDescription("Epoch number, 1-based.")
  public Integer epoch;

  @JsonPropertyDescription("Mean of the epoch's batch losses.")
  public Double trainLoss;

  @JsonPropertyDescription("Mean of the validation split's batch losses after the epoch.")
  public Double validationLoss;

  @JsonPropertyDescription("Optimiser steps done when the epoch ended.")
  public Long step;

  @JsonPropertyDescription("Learning rate at the epoch's last step.")
  public Double learningRate;

  @JsonPropertyDescription("Training tokens seen when the epoch ended.")
  public Long tokens;

  @JsonPropertyDescription("Wall-clock seconds the epoch took.")
  public Double seconds;

  public EpochRecord() {}

  public EpochRecord(int epoch, double trainLoss, double validationLoss) {
    this.epoch = epoch;
    this.trainLoss = trainLoss;
    this.validationLoss = validationLoss;
  }
}
