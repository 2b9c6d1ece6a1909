package dev.finetune.api.testing;

import dev.finetune.api.trainer.TrainerContract;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.function.BooleanSupplier;
import java.util.function.Supplier;

/**
 * The test side of the trainer's hold points ({@link TrainerContract#TEST_HOLD_AT}): a test names the points, waits
 * until the trainer holds at one, does what it needs at that exact moment (a signal, an eviction, a read-only
 * folder) and releases it, so that no test races a poll against a run. The timeout is a guard against a hang,
 * never what a test relies on.
 */
public final class Holds {
  private Holds() {}

  /** A guard against a hang: a loaded 2-core machine trains the e2e job in about 10 minutes. */
  public static final Duration HANG_GUARD = Duration.ofMinutes(15);

  /** The environment that makes a trainer process hold at {@code points}, with its hold files in {@code dir}. */
  public static Map<String, String> env(Path dir, List<String> points) {
    return Map.of(TrainerContract.TEST_HOLD_AT, String.join(",", points), TrainerContract.TEST_HOLD_DIR, dir.toString());
  }

  /** The same as JVM options, for a trainer in a child JVM. */
  public static List<String> jvmOptions(Path dir, String... points) {
    return List.of("-Dfinetune.test.holdAt=" + String.join(",", points), "-Dfinetune.test.holdDir=" + dir);
  }

  /** Whether the trainer whose hold files are in {@code dir} holds at {@code point} now (or held and was released). */
  public static boolean held(Path dir, String point) {
    return Files.exists(dir.resolve(point + TrainerContract.TEST_HELD_SUFFIX));
  }

  /**
   * Waits until the trainer holds at {@code point}; fails at once, with {@code diagnostics}, when it ends without
   * holding there ({@code alive} turns false), and after {@link #HANG_GUARD}.
   */
  public static void awaitHeld(Path dir, String point, BooleanSupplier alive, Supplier<String> diagnostics) {
    long deadline = System.nanoTime() + HANG_GUARD.toNanos();
    while (!held(dir, point)) {
      if (!alive.getAsBoolean() && !held(dir, point)) {
        throw new AssertionError("the trainer ended without holding at " + point + ":\n" + diagnostics.get());
      }
      if (System.nanoTime() > deadline) {
        throw new AssertionError("the trainer did not reach " + point + " within " + HANG_GUARD + " (a hang?):\n"
            + diagnostics.get());
      }
      sleep(20);
    }
  }

  /** Lets the trainer go on from {@code point}. */
  public static void release(Path dir, String point) {
    try {
      Files.createDirectories(dir);
      Files.writeString(dir.resolve(point + TrainerContract.TEST_RELEASE_SUFFIX), "");
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  private static void sleep(long ms) {
    try {
      Thread.sleep(ms);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new AssertionError("interrupted", e);
    }
  }
}
