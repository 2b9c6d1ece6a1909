package dev.finetune.api.trainer;

/**
 * Prometheus names of the trainer's metrics, as they appear on {@code /metrics}. They are a contract with
 * the Grafana dashboard and the README: a test checks that every dashboard query uses only exported names.
 * Every series carries the labels {@link #LABEL_JOB} and {@link #LABEL_NAMESPACE} (not {@code job} and
 * {@code namespace}, which Prometheus sets from the scrape target).
 */
public final class MetricNames {
  private MetricNames() {}

  public static final String LABEL_JOB = "finetune_job";
  public static final String LABEL_NAMESPACE = "finetune_namespace";

  /** Gauge: training loss of the last finished epoch. */
  public static final String EPOCH_TRAIN_LOSS = "finetune_epoch_train_loss";
  /** Gauge: validation loss of the last finished epoch. */
  public static final String EPOCH_VALIDATION_LOSS = "finetune_epoch_validation_loss";
  /** Gauge: lowest validation loss so far. */
  public static final String BEST_VALIDATION_LOSS = "finetune_best_validation_loss";
  /** Gauge: epoch in progress (1-based). */
  public static final String EPOCH = "finetune_epoch";
  /** Gauge: planned epochs. */
  public static final String EPOCHS = "finetune_epochs";
  /** Gauge: loss of the last optimiser step. */
  public static final String STEP_LOSS = "finetune_step_loss";
  /** Counter: optimiser steps. */
  public static final String STEPS = "finetune_steps_total";
  /** Counter: training tokens processed. */
  public static final String TOKENS = "finetune_tokens_total";
  /** Gauge: training throughput over the recent steps. */
  public static final String TOKENS_PER_SECOND = "finetune_tokens_per_second";
  /** Gauge: learning rate of the last step. */
  public static final String LEARNING_RATE = "finetune_learning_rate";
  /** Gauge: 1 once training stopped early, else 0. */
  public static final String EARLY_STOPPED = "finetune_early_stopped";
  /** Gauge: share (0-1) of test prompts answered exactly right, once the evaluation is done. */
  public static final String EVALUATION_EXACT_MATCH = "finetune_evaluation_exact_match_ratio";
  /** Gauge: mean judge score (0-100) of the test answers, once a judge scored them. */
  public static final String EVALUATION_MEAN_SCORE = "finetune_evaluation_mean_score";
  /** Summary: seconds to write a checkpoint ({@code _count}, {@code _sum}, {@code _max}). */
  public static final String CHECKPOINT_WRITE_SECONDS = "finetune_checkpoint_write_seconds";
}
