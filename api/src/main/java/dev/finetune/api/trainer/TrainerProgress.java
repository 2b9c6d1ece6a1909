package dev.finetune.api.trainer;

import com.fasterxml.jackson.annotation.JsonIgnoreProperties;
import com.fasterxml.jackson.annotation.JsonInclude;
import dev.finetune.api.CheckpointStatus;
import dev.finetune.api.EpochRecord;
import java.util.ArrayList;
import java.util.List;

/** The trainer's {@code /progress} document, polled by the operator while the Pod runs. */
@JsonInclude(JsonInclude.Include.NON_NULL)
@JsonIgnoreProperties(ignoreUnknown = true)
public class TrainerProgress {
  /** Starting, Training, Evaluating, Succeeded, Failed. */
  public String phase;
  /** Epoch in progress or last finished, 1-based; 0 before the first. */
  public Integer epoch;
  public Integer epochs;
  /** Optimiser steps done in all, and planned in all. */
  public Long step;
  public Long steps;
  public Double stepLoss;
  public Double learningRate;
  /** Of the last finished epoch. */
  public Double trainLoss;
  public Double validationLoss;
  public Double bestValidationLoss;
  public Integer bestEpoch;
  public Double tokensPerSecond;
  public Double etaSeconds;
  public Boolean earlyStopped;
  public List<EpochRecord> history = new ArrayList<>();
  public CheckpointStatus checkpoint;
}
