package dev.finetune.trainer.train;

import dev.finetune.api.trainer.TrainerContract;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Arrays;
import java.util.function.BooleanSupplier;

/**
 * A test-only hook, inert unless {@code FINETUNE_TEST_HOLD_AT} (or the system property {@code finetune.test.holdAt})
 * names points: the training thread holds at each named point until the test releases it, so a test that interrupts
 * a run (SIGKILL mid-epoch, SIGTERM, an eviction, a write failing half-way) gets the run to the moment it needs on
 * any machine, fast or loaded, instead of racing a poll against it.
 *
 * <p>The points ({@link TrainerContract#TEST_HOLD_AT}): {@code epoch-E-step-K} (epoch E, 1-based, after its K-th
 * optimizer step, where a stop request is honoured), {@code epoch-E-end} (epoch E validated, recorded, reported and
 * checkpointed) and {@code checkpoint-NAME} (that checkpoint's weights and moments written, its state.json not yet).
 * At a point the trainer writes {@code DIR/POINT.held} (DIR: {@code FINETUNE_TEST_HOLD_DIR}) and waits until
 * {@code DIR/POINT.release} exists or a stop is requested (SIGTERM or SIGINT end the hold, as they end a step).
 */
public final class TestHold {
  private TestHold() {}

  /** Holds here if the test named this point; returns at once otherwise. */
  public static void at(String point, BooleanSupplier stopRequested) {
    String[] points = setting(TrainerContract.TEST_HOLD_AT, "finetune.test.holdAt");
    if (points == null || Arrays.stream(points).map(String::trim).noneMatch(point::equals)) {
      return;
    }
    String[] dir = setting(TrainerContract.TEST_HOLD_DIR, "finetune.test.holdDir");
    if (dir == null) {
      throw new IllegalStateException(TrainerContract.TEST_HOLD_AT + " is set but " + TrainerContract.TEST_HOLD_DIR
          + " (the folder of the .held and .release files) is not");
    }
    Path folder = Path.of(dir[0]);
    Path release = folder.resolve(point + TrainerContract.TEST_RELEASE_SUFFIX);
    try {
      Files.createDirectories(folder);
      // Several processes (the ranks of one run) may hold at one point in one folder: each writes its own temp file.
      Path tmp = folder.resolve("." + point + "." + ProcessHandle.current().pid() + ".tmp");
      Files.writeString(tmp, ProcessHandle.current().pid() + "\n", StandardCharsets.UTF_8);
      Files.move(tmp, folder.resolve(point + TrainerContract.TEST_HELD_SUFFIX), StandardCopyOption.ATOMIC_MOVE,
          StandardCopyOption.REPLACE_EXISTING);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    System.out.println("test hold: held at " + point + " until " + release + " exists");
    while (!Files.exists(release) && !stopRequested.getAsBoolean()) {
      try {
        Thread.sleep(10);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        return;
      }
    }
    System.out.println("test hold: " + point + " released");
  }

  /** A comma-separated setting from the environment, else the system property; null when neither is set. */
  private static String[] setting(String env, String property) {
    String v = System.getenv(env);
    if (v == null || v.isBlank()) {
      v = System.getProperty(property);
    }
    return v == null || v.isBlank() ? null : v.split(",");
  }
}
