package dev.finetune.trainer.observe;

import dev.finetune.trainer.train.TrainingListener;
import java.io.PrintStream;

/** The console progress line: epoch, step, loss, learning rate, tokens/s and ETA, at most every few seconds. */
public final class ProgressPrinter implements TrainingListener {
  private final PrintStream out;
  private final long intervalNanos;
  private long last;
  private int epochs;

  public ProgressPrinter(PrintStream out, double intervalSeconds) {
    this.out = out;
    this.intervalNanos = (long) (intervalSeconds * 1e9);
  }

  @Override
  public void onStart(RunInfo run) {
    epochs = run.epochs();
    out.printf("training %,d parameters on %d records (validation %d, test %d): %d epochs x %d steps into %s%n",
        run.parameters(), run.trainRecords(), run.validationRecords(), run.test().size(), run.epochs(),
        run.stepsPerEpoch(), run.outputDir());
  }

  @Override
  public void onStep(StepInfo s) {
    long now = System.nanoTime();
    if (last != 0 && now - last < intervalNanos && s.step() != s.totalSteps()) {
      return;
    }
    last = now;
    out.printf("epoch %d/%d | step %d/%d | loss %.4f | lr %.2e | %.0f tok/s | ETA %s%n", s.epoch(), epochs, s.step(),
        s.totalSteps(), s.loss(), s.learningRate(), s.tokensPerSecond(), duration(s.etaSeconds()));
  }

  @Override
  public void onCheckpoint(CheckpointInfo c) {
    out.printf("checkpoint %s written (%.1f s)%n", c.name(), c.seconds());
  }

  static String duration(double seconds) {
    long s = Math.round(seconds);
    if (s >= 3600) {
      return String.format("%dh%02dm", s / 3600, s % 3600 / 60);
    }
    return s >= 60 ? String.format("%dm%02ds", s / 60, s % 60) : s + "s";
  }
}
