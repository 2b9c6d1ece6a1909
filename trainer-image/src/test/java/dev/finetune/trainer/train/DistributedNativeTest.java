package dev.finetune.trainer.train;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.finetune.api.EpochRecord;
import dev.finetune.api.testing.Holds;
import dev.finetune.api.testing.TinyJob;
import dev.finetune.api.trainer.TrainerContract;
import dev.finetune.api.trainer.TrainerContract.ExitCodes;
import dev.finetune.trainer.Fixtures;
import dev.finetune.trainer.Jobs;
import dev.finetune.trainer.Launcher;
import dev.finetune.trainer.Main;
import dev.finetune.trainer.nativelib.TorchNative;
import java.io.IOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Data-parallel training on c10d's Gloo, for real, with ranks as child JVMs launched as torchrun launches them (the
 * native library built against Debian's libtorch by .ci/run): 2 ranks give the one-process losses to float rounding
 * (GPT-2 from scratch; the Llama fixture with a LoRA adapter on an odd batch) with their gradient all-reduce started
 * inside the backward pass, rank 0 alone writes the run folder, a
 * SIGKILLed rank makes the other exit with the retry code, and SIGTERM to one rank stops both after a checkpoint,
 * from which a rerun of both resumes exactly (with AdamW's state sharded over the ranks, gathered into the checkpoint
 * and handed out again on resume).
 */
class DistributedNativeTest {
  /** What "the same result" means across rank counts: float rounding of a differently split batch. */
  static final double SAME = 1e-5;

  @TempDir
  Path dir;

  @BeforeEach
  void needsC10d() {
    Assumptions.assumeTrue(TorchNative.get().map(TorchNative::distributed).orElse(false),
        () -> "skipped: no native library with c10d (" + TorchNative.unavailableReason() + ")");
  }

  @Test
  void twoRanksTrainAsOneProcessAndOnlyRankZeroWrites() throws Exception {
    Path job = Jobs.write(dir.resolve("job"), TinyJob.yaml("dp", "ns", 3).replace("  namespace: ns\n", ""));
    double diff = oneAgainstTwoRanks(job, Map.of());
    Path one = dir.resolve("one");
    Path two = dir.resolve("two");
    assertThat(log(0)).startsWith("rank 0 of 2 (local 0 of 2, rendezvous at 127.0.0.1:");
    assertThat(log(1)).startsWith("rank 1 of 2");
    // The model's gradients fit one 25 MB bucket, whose all-reduce starts inside the backward pass, not after it.
    for (int r = 0; r < 2; r++) {
      assertThat(log(r)).contains("rank " + r + " of 2: gradients all-reduced in 1 bucket of up to 25 MB, 1 started"
          + " during the backward pass");
    }
    // Every weight trains, so AdamW's state is sharded (ZeRO-1): each rank keeps about half of it, and the
    // checkpoints still hold all of it (rank 0 gathers it), in the one-process layout.
    long[] kept = new long[2];
    long all = 0;
    for (int r = 0; r < 2; r++) {
      Matcher shard = Pattern.compile("rank " + r + " of 2: AdamW state sharded \\(ZeRO-1\\): this rank keeps the moments"
          + " of \\d+ of \\d+ parameter tensors, ([\\d,]+) of ([\\d,]+) values").matcher(log(r));
      assertThat(shard.find()).as(log(r)).isTrue();
      kept[r] = Long.parseLong(shard.group(1).replace(",", ""));
      all = Long.parseLong(shard.group(2).replace(",", ""));
    }
    assertThat(kept[0] + kept[1]).isEqualTo(all);
    for (long k : kept) {
      assertThat(k).isBetween(all / 3, all * 2 / 3);
    }
    Path latest = new Checkpoints(two.resolve(TrainerContract.CHECKPOINTS_DIR)).latest().orElseThrow().dir();
    Path optimizer = two.relativize(latest.resolve(Checkpoints.OPTIMIZER));
    assertThat(Files.size(two.resolve(optimizer))).isEqualTo(Files.size(one.resolve(optimizer)));
    System.out.printf("DIST-FIGURE gpt2-scratch 1 vs 2 ranks: largest loss difference %.3g%n", diff);
    assertThat(diff).isLessThan(SAME);
    // Rank 0 alone wrote the run folder: the same files as the one-process run, and rank 1's scratch folder is elsewhere.
    assertThat(files(two)).isEqualTo(files(one));
    assertThat(dir.resolve("tmp-1/finetune-rank-1/two")).isDirectory();
    assertThat(dir.resolve("tmp-1/finetune-rank-1/two/" + TrainerContract.CHECKPOINTS_DIR)).doesNotExist();
  }

  @Test
  void loraOnTheLlamaFixtureWithABatchThatDoesNotDivide() throws Exception {
    // batch 5 over 2 ranks: shares of 2 and 3 records, weighted by their target tokens
    Path job = Jobs.write(dir.resolve("job"), String.format(LoraTrainingTest.JOB, "dp-lora", Fixtures.tinyLlama(),
        Fixtures.tinyLlama().resolve("lora-init")).replace("batchSize: 4", "batchSize: 5"));
    // Buckets of about 1 kB: every adapter matrix is a bucket of its own, each all-reduced as the backward pass fills it.
    double diff = oneAgainstTwoRanks(job, Map.of(Distributed.ENV_BUCKET_MB, "0.001"));
    System.out.printf("DIST-FIGURE llama-lora 1 vs 2 ranks (batch 5): largest loss difference %.3g%n", diff);
    assertThat(diff).isLessThan(SAME);
    Matcher buckets = Pattern.compile("rank 0 of 2: gradients all-reduced in (\\d+) buckets of up to 0.001 MB, (\\d+)"
        + " started during the backward pass").matcher(log(0));
    assertThat(buckets.find()).as(log(0)).isTrue();
    assertThat(Integer.parseInt(buckets.group(1))).isGreaterThan(2);
    assertThat(buckets.group(2)).isEqualTo(buckets.group(1));
  }

  /**
   * Gradient checkpointing and a chunked loss over two ranks: a weight gets gradients in several backward passes (the
   * tied head, every chunk), so they are summed over the ranks once the micro-batch is done, not bucket by bucket.
   */
  @Test
  void checkpointingAndAChunkedLossOverTwoRanks() throws Exception {
    Path job = Jobs.write(dir.resolve("job"), TinyJob.yaml("dp-ckpt", "ns", 2).replace("  namespace: ns\n", "")
        .replace("  training:\n", "  training:\n    gradientCheckpointing: true\n    lossChunkTokens: 50\n"));
    double diff = oneAgainstTwoRanks(job, Map.of());
    System.out.printf("DIST-FIGURE gpt2-scratch checkpointed, loss in chunks of 50, 1 vs 2 ranks: largest loss"
        + " difference %.3g%n", diff);
    assertThat(diff).isLessThan(SAME);
    assertThat(log(0)).doesNotContain("started during the backward pass");
  }

  /** A LoRA run in bf16 keeps its frozen base in bf16, and rank 0 still hands that base to the other rank. */
  @Test
  void loraOnABf16BaseOverTwoRanks() throws Exception {
    Path job = Jobs.write(dir.resolve("job"), String.format(LoraTrainingTest.JOB, "dp-lora-bf16", Fixtures.tinyLlama(),
        Fixtures.tinyLlama().resolve("lora-init")).replace("seed: 11\n", "seed: 11\n    precision: bf16\n"));
    double diff = oneAgainstTwoRanks(job, Map.of());
    System.out.printf("DIST-FIGURE llama-lora bf16 base 1 vs 2 ranks: largest loss difference %.3g%n", diff);
    assertThat(diff).as("bf16 sums in another order, not another result").isLessThan(1e-3);
    assertThat(log(0)).contains("frozen, in bf16 but for the norms and biases)");
  }

  @Test
  void aKilledRankMakesTheOtherExitWithTheRetryCode() throws Exception {
    Path job = Jobs.write(dir.resolve("job"), TinyJob.yaml("dp-kill", "ns", 3).replace("  namespace: ns\n", ""));
    Path holds = dir.resolve("holds-1");
    List<Process> ranks = launch(job, dir.resolve("run"), 2, Map.of(1, Holds.env(holds, List.of("epoch-1-step-2"))));
    Holds.awaitHeld(holds, "epoch-1-step-2", ranks.get(1)::isAlive, () -> logs(2));
    long killed = System.nanoTime();
    ranks.get(1).destroyForcibly(); // SIGKILL, as an OOM kill would
    assertThat(ranks.get(0).waitFor(Holds.HANG_GUARD.toSeconds(), TimeUnit.SECONDS)).as("rank 0 noticed").isTrue();
    Duration noticed = Duration.ofNanos(System.nanoTime() - killed);
    System.out.printf("DIST-FIGURE a SIGKILLed peer noticed in %.2f s%n", noticed.toMillis() / 1000.0);
    assertThat(ranks.get(0).exitValue()).as(log(0)).isEqualTo(ExitCodes.CRASHED);
    assertThat(log(0)).contains("rank 0 of 2: the gradient all-reduce failed", "another rank died");
    assertThat(noticed).isLessThan(Duration.ofMinutes(2));
  }

  @Test
  void sigtermToOneRankStopsBothAfterACheckpointAndBothResumeExactly() throws Exception {
    Path job = Jobs.write(dir.resolve("job"), TinyJob.yaml("dp-term", "ns", 3).replace("  namespace: ns\n", ""));
    Path whole = dir.resolve("whole");
    for (Process p : launch(job, whole, 2, Map.of())) {
      assertThat(p.waitFor(10, TimeUnit.MINUTES)).isTrue();
      assertThat(p.exitValue()).as(logs(2)).isZero();
    }

    Path run = dir.resolve("run");
    Path holds = dir.resolve("holds-1");
    List<Process> ranks = launch(job, run, 2, Map.of(1, Holds.env(holds, List.of("epoch-2-step-1"))));
    Holds.awaitHeld(holds, "epoch-2-step-1", ranks.get(1)::isAlive, () -> logs(2));
    ranks.get(1).destroy(); // SIGTERM to rank 1 alone
    for (Process p : ranks) {
      assertThat(p.waitFor(Holds.HANG_GUARD.toSeconds(), TimeUnit.SECONDS)).isTrue();
    }
    assertThat(ranks).extracting(Process::exitValue).as(logs(2))
        .containsExactly(ExitCodes.INTERRUPTED, ExitCodes.INTERRUPTED);
    assertThat(log(0)).contains("stopped by request (SIGTERM) in epoch 2 after step 8; checkpoint checkpoints/step-");
    TrainerState saved = new Checkpoints(run.resolve(TrainerContract.CHECKPOINTS_DIR)).latest().orElseThrow().state();
    Path latestCheckpoint = new Checkpoints(run.resolve(TrainerContract.CHECKPOINTS_DIR)).latest().orElseThrow().dir();
    assertThat(saved.step).isEqualTo(8);

    for (Process p : launch(job, run, 2, Map.of())) {
      assertThat(p.waitFor(10, TimeUnit.MINUTES)).isTrue();
      assertThat(p.exitValue()).as(logs(2)).isZero();
    }
    assertThat(log(0)).contains("resuming from " + latestCheckpoint + ": in epoch 2 after step 8 (");
    assertThat(Jobs.history(run)).usingRecursiveFieldByFieldElementComparatorIgnoringFields("seconds")
        .isEqualTo(Jobs.history(whole));
    assertThat(Files.readAllBytes(run.resolve("best/model.safetensors")))
        .isEqualTo(Files.readAllBytes(whole.resolve("best/model.safetensors")));
  }

  @Test
  void theLauncherRunsRanksOnThisNodeAndPassesSigtermOn() throws Exception {
    Path job = Jobs.write(dir.resolve("job"), TinyJob.yaml("dp-launch", "ns", 2).replace("  namespace: ns\n", ""));
    Path one = dir.resolve("one");
    assertThat(Main.run(new String[] {job.toString(), "--output", one.toString()}, List.of(), null)).isZero();
    int port;
    try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
      port = s.getLocalPort();
    }
    Path two = dir.resolve("two");
    Path holds = dir.resolve("holds");
    ProcessBuilder pb = new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-Xmx1g",
        "-cp", System.getProperty("java.class.path"), Main.class.getName(), job.toString(), "--output", two.toString(),
        "--nproc-per-node", "2").redirectErrorStream(true).redirectOutput(dir.resolve("rank-0.log").toFile());
    pb.environment().putAll(Map.of("DJL_OFFLINE", "true", TrainerContract.ENV_PORT, "0", "MASTER_PORT", Integer.toString(port)));
    pb.environment().putAll(Holds.env(holds, List.of("epoch-1-step-2")));
    Process launcher = pb.start();
    // Both ranks hold after step 2 of epoch 1; SIGTERM to the launcher reaches both, and they stop at the next step.
    Holds.awaitHeld(holds, "epoch-1-step-2", launcher::isAlive, () -> log(0));
    launcher.destroy();
    assertThat(launcher.waitFor(Holds.HANG_GUARD.toSeconds(), TimeUnit.SECONDS)).isTrue();
    assertThat(launcher.exitValue()).as(log(0)).isEqualTo(ExitCodes.INTERRUPTED);
    assertThat(log(0)).contains("launching 2 ranks on node 0 of 1 (world size 2", "rank 0 of 2", "rank 1 of 2",
        "stopped by request (SIGTERM) in epoch 1 after step 3");

    pb.environment().remove(TrainerContract.TEST_HOLD_AT);
    pb.redirectOutput(dir.resolve("rank-1.log").toFile());
    Process again = pb.start();
    assertThat(again.waitFor(10, TimeUnit.MINUTES)).isTrue();
    assertThat(again.exitValue()).as(log(1)).isZero();
    double diff = maxDifference(Jobs.history(one), Jobs.history(two));
    assertThat(diff).isLessThan(SAME);
  }

  @Test
  void theLauncherExitsWithTheWorstRanksCode() {
    assertThat(Launcher.worst(List.of(0, 0))).isEqualTo(ExitCodes.SUCCEEDED);
    assertThat(Launcher.worst(List.of(0, 75))).isEqualTo(ExitCodes.INTERRUPTED);
    assertThat(Launcher.worst(List.of(75, 137))).isEqualTo(ExitCodes.CRASHED);
    assertThat(Launcher.worst(List.of(1, 3))).isEqualTo(ExitCodes.BAD_JOB);
    assertThat(Launcher.worst(List.of(4, 1))).isEqualTo(ExitCodes.DIVERGED);
  }

  @Test
  void aWorkerPodsNodeRankIsItsIndexPlusOneAndNodeRankWins() {
    assertThat(Launcher.nodeRank(Map.of())).isZero();
    assertThat(Launcher.nodeRank(Map.of("NODE_RANK", "2"))).isEqualTo(2);
    assertThat(Launcher.nodeRank(Map.of(TrainerContract.ENV_WORKER_INDEX, "0"))).isEqualTo(1);
    assertThat(Launcher.nodeRank(Map.of(TrainerContract.ENV_WORKER_INDEX, "2", "NODE_RANK", "0"))).isZero();
    assertThatThrownBy(() -> Launcher.nodeRank(Map.of(TrainerContract.ENV_WORKER_INDEX, "x")))
        .hasMessageContaining("FINETUNE_WORKER_INDEX is 'x'");
  }

  /**
   * Runs the job as one process (in {@code one}) and as 2 ranks with {@code rankEnv} (in {@code two}): their largest
   * loss difference.
   */
  double oneAgainstTwoRanks(Path job, Map<String, String> rankEnv) throws Exception {
    Path one = dir.resolve("one");
    assertThat(Main.run(new String[] {job.toString(), "--output", one.toString()}, List.of(), null)).isZero();
    Path two = dir.resolve("two");
    List<Process> ranks = launch(job, two, 2, Map.of(0, rankEnv, 1, rankEnv));
    for (Process p : ranks) {
      assertThat(p.waitFor(10, TimeUnit.MINUTES)).isTrue();
    }
    assertThat(ranks).extracting(Process::exitValue).as(logs(2)).containsExactly(0, 0);
    return maxDifference(Jobs.history(one), Jobs.history(two));
  }

  /** The ranks of one run as child JVMs, with torchrun's environment; {@code extraEnv} by rank. */
  List<Process> launch(Path job, Path out, int world, Map<Integer, Map<String, String>> extraEnv) throws IOException {
    int port;
    try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
      port = s.getLocalPort();
    }
    List<Process> ranks = new ArrayList<>();
    for (int rank = 0; rank < world; rank++) {
      Path tmp = Files.createDirectories(dir.resolve("tmp-" + rank));
      ProcessBuilder pb = new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-Xmx1g",
          "-Djava.io.tmpdir=" + tmp, "-cp", System.getProperty("java.class.path"), Main.class.getName(), job.toString(),
          "--output", out.toString()).redirectErrorStream(true).redirectOutput(dir.resolve("rank-" + rank + ".log").toFile());
      Map<String, String> env = pb.environment();
      env.put("DJL_OFFLINE", "true");
      env.put(TrainerContract.ENV_PORT, "0");
      env.put("WORLD_SIZE", Integer.toString(world));
      env.put("RANK", Integer.toString(rank));
      env.put("LOCAL_RANK", Integer.toString(rank));
      env.put("LOCAL_WORLD_SIZE", Integer.toString(world));
      env.put("MASTER_ADDR", "127.0.0.1");
      env.put("MASTER_PORT", Integer.toString(port));
      env.putAll(extraEnv.getOrDefault(rank, Map.of()));
      ranks.add(pb.start());
    }
    return ranks;
  }

  static double maxDifference(List<EpochRecord> a, List<EpochRecord> b) {
    assertThat(b).hasSameSizeAs(a);
    double max = 0;
    for (int i = 0; i < a.size(); i++) {
      max = Math.max(max, Math.abs(a.get(i).trainLoss - b.get(i).trainLoss));
      max = Math.max(max, Math.abs(a.get(i).validationLoss - b.get(i).validationLoss));
    }
    return max;
  }

  static List<String> files(Path run) throws IOException {
    try (Stream<Path> s = Files.walk(run)) {
      return s.map(p -> run.relativize(p).toString()).sorted().toList();
    }
  }

  String log(int rank) {
    try {
      return Files.readString(dir.resolve("rank-" + rank + ".log"));
    } catch (IOException e) {
      return "(no log: " + e + ")";
    }
  }

  String logs(int world) {
    StringBuilder sb = new StringBuilder();
    for (int r = 0; r < world; r++) {
      sb.append("--- rank ").append(r).append('\n').append(log(r));
    }
    return sb.toString();
  }
}
