package dev.finetune.trainer;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.finetune.api.testing.Holds;
import dev.finetune.api.testing.TinyJob;
import dev.finetune.api.trainer.TrainerContract;
import dev.finetune.api.trainer.TrainerContract.ExitCodes;
import dev.finetune.trainer.hub.Hub;
import dev.finetune.trainer.hub.HubSettings;
import dev.finetune.trainer.hub.RepoKind;
import dev.finetune.trainer.train.Checkpoints;
import dev.finetune.trainer.train.TrainingListener;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.Map;
import java.util.concurrent.atomic.AtomicReference;
import java.util.stream.Stream;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A failure that may pass (no network, a lost volume) exits 1, the retry code, with one paragraph that says so,
 * and leaves nothing half-written that a retry would take for whole. Hosts under .invalid never resolve (RFC
 * 2606), network or not. A lost volume is simulated by taking write permission away mid-run, which root ignores.
 */
class TransientFailureTest {
  /** These tests are about training's writes; answering the test split would only take time. */
  static final Map<String, Object> NO_EVALUATION = Map.of("spec.evaluation.enabled", false);

  @Test
  void aRetryIsTheJobsInAPodAndThePersonsLocally() {
    assertThat(TransientException.retry("where it stopped", Map.of("KUBERNETES_SERVICE_HOST", "10.96.0.1")))
        .isEqualTo("the Job retries (exit code 1) and the run resumes where it stopped");
    assertThat(TransientException.retry("where it stopped", Map.of()))
        .isEqualTo("rerun the same command (the exit code is 1) and the run resumes where it stopped");
  }

  @Test
  void anUnreachableDatasetUrlIsARetryWithAParagraphAndNoEmptyCache(@TempDir Path dir) throws Exception {
    Path job = Jobs.write(dir, TinyJob.yamlWith("offline", 1, Map.of("spec.dataset.synthetic", TinyJob.UNSET,
        "spec.dataset.url", "https://data.example.invalid/tasks.jsonl")));
    MainTest.Errors e = new MainTest.Errors();
    assertThat(MainTest.run(e, job.toString())).isEqualTo(ExitCodes.CRASHED);
    assertThat(e.errors.get(0)).isInstanceOf(TransientException.class);
    // "the host name does not resolve", or with a resolver that answers everything, "the connection was refused"
    assertThat(e.errors.get(0).getMessage()).startsWith("cannot download https://data.example.invalid/tasks.jsonl: the ")
        .contains(". This may pass: rerun the same command (the exit code is 1) and the run resumes where it stopped")
        .doesNotContain("\n", "Exception");
    assertThat(dir.resolve("runs/offline/data-cache")).doesNotExist();
  }

  /** A trainer that cannot reach the hub learns how to give it the model another way; nothing is left behind. */
  @Test
  void anUnreachableHubSaysHowToFetchTheModelElsewhereAndLeavesNoCache(@TempDir Path dir) {
    HubSettings unreachable = HubSettings.from(Map.of("HF_ENDPOINT", "https://hub.example.invalid"));
    Path cache = dir.resolve("run/model-cache");
    assertThatThrownBy(() -> new Hub(unreachable, cache, RepoKind.MODEL, "owner/model", "v1", null).file("config.json"))
        .isInstanceOf(TransientException.class)
        .hasMessageStartingWith("cannot reach the hub for owner/model@v1 (https://hub.example.invalid/owner/model/resolve/v1/config.json): the ")
        .hasMessageContaining("This may pass: rerun the same command")
        .hasMessageContaining("set HF_ENDPOINT to a mirror")
        .hasMessageContaining("huggingface-cli download owner/model --revision v1")
        .hasMessageContaining("HF_HUB_CACHE (spec.model.cacheClaim on Kubernetes)")
        .hasMessageContaining("config.json, tokenizer.json, model.safetensors")
        .hasMessageContaining("spec.model.path");
    assertThat(dir.resolve("run")).doesNotExist();
  }

  @Test
  void aRunFolderThatBecomesReadOnlyIsARetryAndTheRunResumesOnceItIsWritable(@TempDir Path dir) throws Exception {
    skipAsRoot(dir);
    Path job = Jobs.write(dir, TinyJob.yamlWith("volume", 2, NO_EVALUATION));
    Path run = dir.resolve("runs/volume");
    AtomicReference<Map<String, String>> atLoss = new AtomicReference<>();
    TrainingListener loseTheVolume = new TrainingListener() {
      @Override
      public void onCheckpoint(CheckpointInfo c) {
        if (c.name().endsWith(Checkpoints.epochName(1))) {
          atLoss.set(snapshot(run));
          writable(run, false); // as a volume remounted read-only
        }
      }
    };
    RerunTest.Ran lost;
    try {
      lost = RerunTest.main(loseTheVolume, job.toString());
      assertThat(lost.code()).isEqualTo(ExitCodes.CRASHED);
      Throwable error = lost.errors().errors.get(0);
      assertThat(error).isInstanceOf(TransientException.class);
      assertThat(error.getMessage()).isEqualTo("cannot write to " + run + " (" + run.resolve(TrainerContract.HISTORY_FILE)
          + ": permission denied): the folder or its volume is gone, read-only or full. This may pass: make the folder"
          + " writable (or free space), then rerun the same command (the exit code is 1) and the run resumes from its last"
          + " complete checkpoint");
      assertThat(snapshot(run)).isEqualTo(atLoss.get());
    } finally {
      writable(run, true);
    }
    RerunTest.Ran resumed = RerunTest.main(job.toString());
    assertThat(resumed.code()).isEqualTo(ExitCodes.SUCCEEDED);
    assertThat(resumed.out()).contains("resuming from " + run.resolve("checkpoints/" + Checkpoints.epochName(1))
        + ": after epoch 1 (step ");
    assertThat(Files.readString(run.resolve(TrainerContract.HISTORY_FILE)).lines()).hasSize(2);
  }

  @Test
  void aRunFolderDeletedMidRunIsARetry(@TempDir Path dir) throws Exception {
    Path job = Jobs.write(dir, TinyJob.yamlWith("deleted", 2, NO_EVALUATION));
    Path run = dir.resolve("runs/deleted");
    TrainingListener deleteTheFolder = new TrainingListener() {
      @Override
      public void onCheckpoint(CheckpointInfo c) {
        if (c.name().endsWith(Checkpoints.epochName(1))) {
          deleteTree(run); // as a volume that went away
        }
      }
    };
    RerunTest.Ran lost = RerunTest.main(deleteTheFolder, job.toString());
    assertThat(lost.code()).isEqualTo(ExitCodes.CRASHED);
    assertThat(lost.errors().errors.get(0)).isInstanceOf(TransientException.class);
    assertThat(lost.errors().errors.get(0).getMessage()).isEqualTo("cannot write to " + run + " ("
        + run.resolve(TrainerContract.HISTORY_FILE) + ": no such file or folder): the folder or its volume is gone,"
        + " read-only or full. This may pass: make the folder writable (or free space), then rerun the same command (the"
        + " exit code is 1) and the run resumes from its last complete checkpoint");
    assertThat(run.resolve(TrainerContract.CHECKPOINTS_DIR)).doesNotExist();

    RerunTest.Ran again = RerunTest.main(job.toString()); // a new, empty volume: the run starts over
    assertThat(again.code()).isEqualTo(ExitCodes.SUCCEEDED);
    assertThat(again.out()).doesNotContain("resuming from");
    assertThat(Files.readString(run.resolve(TrainerContract.HISTORY_FILE)).lines()).hasSize(2);
  }

  @Test
  void aCheckpointWriteThatFailsHalfWayIsARetryAndNeverTakenForACheckpoint(@TempDir Path dir) throws Exception {
    skipAsRoot(dir);
    Path job = Jobs.write(dir, TinyJob.yamlWith("halfway", 2, NO_EVALUATION));
    Path run = dir.resolve("runs/halfway");
    Path checkpoints = run.resolve(TrainerContract.CHECKPOINTS_DIR);
    Path half = checkpoints.resolve(".tmp-" + Checkpoints.epochName(2));
    AtomicReference<Map<String, String>> before = new AtomicReference<>();
    // Epoch 2's checkpoint holds after its weights and moments (a test hold point); meanwhile its folder becomes
    // read-only, so state.json, written last, fails.
    Path holds = dir.resolve("holds");
    String halfWay = "checkpoint-" + Checkpoints.epochName(2);
    TrainingListener failTheCheckpoint = new TrainingListener() {
      @Override
      public void onEpoch(EpochInfo epoch) {
        if (epoch.record().epoch == 2) {
          before.set(snapshot(checkpoints));
          Thread watcher = new Thread(() -> {
            Holds.awaitHeld(holds, halfWay, () -> true, () -> "");
            writable(half, false);
            Holds.release(holds, halfWay);
          });
          watcher.setDaemon(true);
          watcher.start();
        }
      }
    };
    RerunTest.Ran failed;
    System.setProperty("finetune.test.holdAt", halfWay);
    System.setProperty("finetune.test.holdDir", holds.toString());
    try {
      failed = RerunTest.main(failTheCheckpoint, job.toString());
    } finally {
      System.clearProperty("finetune.test.holdAt");
      System.clearProperty("finetune.test.holdDir");
    }
    try {
      assertThat(failed.code()).isEqualTo(ExitCodes.CRASHED);
      assertThat(failed.errors().errors.get(0)).isInstanceOf(TransientException.class);
      assertThat(failed.errors().errors.get(0).getMessage()).startsWith("cannot write to " + checkpoints + " ("
          + half.resolve("state.json") + ": permission denied): the folder or its volume is gone, read-only or full. This"
          + " may pass: make the folder writable").doesNotContain("\n", "Exception", "Job");
      // the half-written folder is there (its folder could not be cleared) but is no checkpoint
      assertThat(half.resolve("model.safetensors")).exists();
      assertThat(half.resolve("state.json")).doesNotExist();
      assertThat(new Checkpoints(checkpoints).latest().orElseThrow().dir()).isEqualTo(checkpoints.resolve(
          Checkpoints.epochName(1)));
    } finally {
      writable(half, true);
    }
    Map<String, String> after = snapshot(checkpoints);
    after.keySet().removeIf(f -> f.startsWith(half.getFileName().toString()));
    assertThat(after).isEqualTo(before.get());

    RerunTest.Ran resumed = RerunTest.main(job.toString());
    assertThat(resumed.code()).isEqualTo(ExitCodes.SUCCEEDED);
    assertThat(resumed.out()).contains("resuming from " + checkpoints.resolve(Checkpoints.epochName(1)));
    assertThat(half).doesNotExist();
    assertThat(checkpoints.resolve(Checkpoints.epochName(2) + "/state.json")).exists();
  }

  /** Permissions do not bind root: these tests then prove nothing, so they are skipped. */
  static void skipAsRoot(Path dir) throws IOException {
    Path probe = Files.createDirectories(dir.resolve("probe"));
    writable(probe, false);
    boolean ignored = Files.isWritable(probe);
    writable(probe, true);
    Files.delete(probe);
    Assumptions.assumeFalse(ignored, "TransientFailureTest: write permission does not bind this user (root?), so a"
        + " read-only folder cannot be simulated");
  }

  /** Takes write permission from a folder tree (as a read-only remount does) or gives it back. */
  static void writable(Path root, boolean writable) {
    try (Stream<Path> walk = Files.walk(root)) {
      for (Path p : walk.toList()) {
        boolean folder = Files.isDirectory(p);
        Files.setPosixFilePermissions(p, PosixFilePermissions.fromString(
            (writable ? "rw" : "r-") + (folder ? "x" : "-") + "r-" + (folder ? "x" : "-") + "r-" + (folder ? "x" : "-")));
      }
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  static void deleteTree(Path root) {
    try (Stream<Path> walk = Files.walk(root)) {
      for (Path p : walk.sorted(java.util.Comparator.reverseOrder()).toList()) {
        Files.delete(p);
      }
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  static Map<String, String> snapshot(Path folder) {
    try {
      return BadInputTest.snapshot(folder);
    } catch (Exception e) {
      throw new IllegalStateException(e);
    }
  }
}
