package dev.finetune.trainer.observe;

import dev.finetune.api.trainer.MetricNames;
import io.micrometer.core.instrument.FunctionCounter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.Tags;
import io.micrometer.core.instrument.Timer;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import java.time.Duration;
import java.util.concurrent.TimeUnit;

/**
 * The trainer's Prometheus metrics, named exactly as {@link MetricNames} (the Grafana dashboard's contract) and
 * labelled {@code finetune_job} and {@code finetune_namespace}.
 *
 * <p>Setters are cheap (a volatile write) so that they can run on the training thread after every step; the
 * values are read when {@code /metrics} is scraped. A gauge appears on {@code /metrics} only once it has a value
 * (the epoch losses after the first finished epoch, the step loss after the first step), so that no NaN sample
 * ever reaches Prometheus. The step and token counters count from the run's absolute position (a resumed run
 * continues from its checkpoint's counts; Prometheus treats the restart as a counter reset, so {@code rate()}
 * stays right).
 */
public final class TrainerMetrics {
  /** Micrometer names that the Prometheus naming convention turns into the contract's names. */
  static final String STEPS_COUNTER = stripSuffix(MetricNames.STEPS, "_total");
  static final String TOKENS_COUNTER = stripSuffix(MetricNames.TOKENS, "_total");
  static final String CHECKPOINT_TIMER = stripSuffix(MetricNames.CHECKPOINT_WRITE_SECONDS, "_seconds");

  private final PrometheusMeterRegistry registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
  private final Tags tags;

  private volatile double epoch;
  private volatile double epochs;
  private volatile double stepLoss = Double.NaN;
  private volatile double learningRate = Double.NaN;
  private volatile double tokensPerSecond = Double.NaN;
  private volatile double trainLoss = Double.NaN;
  private volatile double validationLoss = Double.NaN;
  private volatile double bestValidationLoss = Double.NaN;
  private volatile double earlyStopped;
  private volatile double exactMatch = Double.NaN;
  private volatile double meanScore = Double.NaN;
  private volatile long steps;
  private volatile long tokens;
  private final Timer checkpointWrite;

  private boolean stepGaugesRegistered;
  private boolean epochGaugesRegistered;
  private boolean exactMatchRegistered;
  private boolean meanScoreRegistered;

  public TrainerMetrics(String job, String namespace) {
    this.tags = Tags.of(MetricNames.LABEL_JOB, job, MetricNames.LABEL_NAMESPACE, namespace);
    Gauge.builder(MetricNames.EPOCH, this, m -> m.epoch).tags(tags)
        .description("Epoch in progress (1-based)").register(registry);
    Gauge.builder(MetricNames.EPOCHS, this, m -> m.epochs).tags(tags)
        .description("Planned epochs").register(registry);
    Gauge.builder(MetricNames.EARLY_STOPPED, this, m -> m.earlyStopped).tags(tags)
        .description("1 once training stopped early, else 0").register(registry);
    FunctionCounter.builder(STEPS_COUNTER, this, m -> m.steps).tags(tags)
        .description("Optimiser steps").register(registry);
    FunctionCounter.builder(TOKENS_COUNTER, this, m -> m.tokens).tags(tags)
        .description("Training tokens processed").register(registry);
    checkpointWrite = Timer.builder(CHECKPOINT_TIMER).tags(tags)
        .description("Seconds to write a checkpoint").register(registry);
  }

  private static String stripSuffix(String name, String suffix) {
    if (!name.endsWith(suffix)) {
      throw new IllegalStateException(name + " does not end with " + suffix);
    }
    return name.substring(0, name.length() - suffix.length());
  }

  public synchronized void plan(int currentEpoch, int plannedEpochs, long stepsDone, long tokensDone) {
    epoch = currentEpoch;
    epochs = plannedEpochs;
    steps = stepsDone;
    tokens = tokensDone;
  }

  public void step(int currentEpoch, long stepsDone, double loss, double lr, long tokensDone, double tokensPerSec) {
    epoch = currentEpoch;
    steps = stepsDone;
    stepLoss = loss;
    learningRate = lr;
    tokens = tokensDone;
    tokensPerSecond = tokensPerSec;
    if (!stepGaugesRegistered) {
      registerStepGauges();
    }
  }

  private synchronized void registerStepGauges() {
    if (stepGaugesRegistered) {
      return;
    }
    Gauge.builder(MetricNames.STEP_LOSS, this, m -> m.stepLoss).tags(tags)
        .description("Loss of the last optimiser step").register(registry);
    Gauge.builder(MetricNames.LEARNING_RATE, this, m -> m.learningRate).tags(tags)
        .description("Learning rate of the last step").register(registry);
    Gauge.builder(MetricNames.TOKENS_PER_SECOND, this, m -> m.tokensPerSecond).tags(tags)
        .description("Training throughput over the recent steps").register(registry);
    stepGaugesRegistered = true;
  }

  public synchronized void epoch(double train, double validation, double best) {
    trainLoss = train;
    validationLoss = validation;
    bestValidationLoss = best;
    if (!epochGaugesRegistered) {
      Gauge.builder(MetricNames.EPOCH_TRAIN_LOSS, this, m -> m.trainLoss).tags(tags)
          .description("Training loss of the last finished epoch").register(registry);
      Gauge.builder(MetricNames.EPOCH_VALIDATION_LOSS, this, m -> m.validationLoss).tags(tags)
          .description("Validation loss of the last finished epoch").register(registry);
      Gauge.builder(MetricNames.BEST_VALIDATION_LOSS, this, m -> m.bestValidationLoss).tags(tags)
          .description("Lowest validation loss so far").register(registry);
      epochGaugesRegistered = true;
    }
  }

  public void checkpointWritten(double seconds) {
    checkpointWrite.record(Duration.ofNanos((long) (seconds * 1e9)));
  }

  public void earlyStopped(boolean stopped) {
    earlyStopped = stopped ? 1 : 0;
  }

  /** The evaluation's results; each gauge appears once it has a value (a judge score only with a judge). */
  public synchronized void evaluation(Double exactMatchRate, Double meanJudgeScore) {
    if (exactMatchRate != null) {
      exactMatch = exactMatchRate;
      if (!exactMatchRegistered) {
        Gauge.builder(MetricNames.EVALUATION_EXACT_MATCH, this, m -> m.exactMatch).tags(tags)
            .description("Share of test prompts answered exactly right").register(registry);
        exactMatchRegistered = true;
      }
    }
    if (meanJudgeScore != null) {
      meanScore = meanJudgeScore;
      if (!meanScoreRegistered) {
        Gauge.builder(MetricNames.EVALUATION_MEAN_SCORE, this, m -> m.meanScore).tags(tags)
            .description("Mean judge score (0-100) of the test answers").register(registry);
        meanScoreRegistered = true;
      }
    }
  }

  /** Prometheus text exposition format 0.0.4. */
  public String scrape() {
    return registry.scrape();
  }

  public static String contentType() {
    return "text/plain; version=0.0.4; charset=utf-8";
  }

  PrometheusMeterRegistry registry() {
    return registry;
  }

  double checkpointSecondsSum() {
    return checkpointWrite.totalTime(TimeUnit.SECONDS);
  }
}
