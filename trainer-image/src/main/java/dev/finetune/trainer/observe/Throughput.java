package dev.finetune.trainer.observe;

/**
 * Tokens per second over the last {@link #WINDOW} optimizer steps, what {@code finetune_tokens_per_second} and
 * /progress show: the run's average hides a slowdown (a noisy neighbour, a throttled GPU) until long after it began.
 */
final class Throughput {
  /** Steps over which tokens/s is measured. */
  static final int WINDOW = 20;
  private final long[] nanos = new long[WINDOW + 1];
  private final long[] tokens = new long[WINDOW + 1];
  private int size;
  private int next;

  /**
   * Records a step that ended at {@code nowNanos} with {@code tokensSoFar} trained in all, and returns the rate over the
   * window; the trainer's run average until two steps are known.
   */
  double at(long nowNanos, long tokensSoFar, double runAverage) {
    int cap = nanos.length;
    nanos[next] = nowNanos;
    tokens[next] = tokensSoFar;
    next = (next + 1) % cap;
    size = Math.min(size + 1, cap);
    if (size < 2) {
      return runAverage;
    }
    int oldest = (next - size + cap) % cap;
    double seconds = (nowNanos - nanos[oldest]) / 1e9;
    return seconds <= 0 ? runAverage : (tokensSoFar - tokens[oldest]) / seconds;
  }
}
