package dev.finetune.trainer.train;

import dev.finetune.api.TrainingSpec;

/**
 * Learning rate per optimizer step: linear warm-up from 0 over {@code warmupSteps}, then constant, linear or
 * cosine decay to {@code minLearningRate} at the last step.
 */
public record LrSchedule(double peak, double min, long warmup, long total, TrainingSpec.Schedule kind) {

  public static LrSchedule of(TrainingSpec t, long totalSteps) {
    return new LrSchedule(t.learningRate, t.minLearningRate, t.warmupSteps, totalSteps, t.schedule);
  }

  /** The rate of step {@code step} (0-based: the step about to be taken). */
  public double at(long step) {
    if (step < warmup) {
      return peak * (step + 1) / warmup;
    }
    if (kind == TrainingSpec.Schedule.CONSTANT) {
      return peak;
    }
    long span = Math.max(1, total - warmup - 1);
    double progress = Math.min(1.0, (double) (step - warmup) / span);
    if (kind == TrainingSpec.Schedule.LINEAR) {
      return peak + (min - peak) * progress;
    }
    return min + (peak - min) * 0.5 * (1 + Math.cos(Math.PI * progress));
  }
}
