package dev.finetune.trainer.observe;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import org.junit.jupiter.api.Test;

class ThroughputTest {
  private static final long SECOND = 1_000_000_000L;

  /** A slowdown shows once the window has passed it, however long the run was fast before. */
  @Test
  void theRateIsTheLastTwentyStepsNotTheRunsAverage() {
    Throughput t = new Throughput();
    assertThat(t.at(0, 0, 123.0)).as("one step: the trainer's own average").isEqualTo(123.0);
    long now = 0;
    long tokens = 0;
    double rate = 0;
    for (int i = 0; i < 500; i++) { // fast: 100 tokens a second
      now += SECOND;
      tokens += 100;
      rate = t.at(now, tokens, 0);
    }
    assertThat(rate).isCloseTo(100, within(1e-9));
    for (int i = 0; i < Throughput.WINDOW; i++) { // slow: 100 tokens every 4 seconds
      now += 4 * SECOND;
      tokens += 100;
      rate = t.at(now, tokens, 100);
    }
    assertThat(rate).as("the run's average would still be about 90").isCloseTo(25, within(1e-9));
  }
}
