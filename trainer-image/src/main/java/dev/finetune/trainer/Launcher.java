package dev.finetune.trainer;

import dev.finetune.api.trainer.TrainerContract;
import dev.finetune.api.trainer.TrainerContract.ExitCodes;
import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;

/**
 * {@code --nproc-per-node N}: runs the job as N ranks on this node, one process per GPU, as torchrun's
 * {@code --nproc-per-node} does. Each rank is this trainer in a new JVM (same JVM options and class path) with
 * torchrun's environment: {@code RANK = NODE_RANK * N + i}, {@code WORLD_SIZE = NNODES * N}, {@code LOCAL_RANK i},
 * {@code LOCAL_WORLD_SIZE N}, {@code MASTER_ADDR} (default 127.0.0.1) and {@code MASTER_PORT} (default 29500), and
 * {@code CUDA_VISIBLE_DEVICES} naming its one GPU, so each rank's device 0 is its own.
 *
 * <p>One process per GPU rather than one JVM driving N devices: each rank is the one-device trainer that is already
 * measured, DJL's engine keeps one default device per JVM, NCCL expects a process per GPU, and a rank that dies
 * (an out-of-memory kill) is one process the others notice, not a JVM half alive.
 *
 * <p>SIGTERM and SIGINT go on to every rank (they agree to stop at the next step; rank 0 checkpoints). A rank that
 * fails stops the others. The exit code is the worst of the ranks': bad job (3) or diverged (4) first, then a
 * crash (1), then stopped (75), else 0.
 */
public final class Launcher {
  private static final String HEAP_PERCENT = "-XX:MaxRAMPercentage=";

  private Launcher() {}

  static int run(int nproc, List<String> args, Map<String, String> env) throws IOException, InterruptedException {
    int nodes = number(env, "NNODES", 1);
    int node = nodeRank(env);
    if (node >= nodes) {
      throw new BadJobException("NODE_RANK " + node + " is not below NNODES " + nodes);
    }
    String[] gpus = env.getOrDefault("CUDA_VISIBLE_DEVICES", "").isBlank() ? null
        : env.get("CUDA_VISIBLE_DEVICES").split(",");
    if (gpus != null && gpus.length < nproc) {
      throw new BadJobException("--nproc-per-node " + nproc + " but CUDA_VISIBLE_DEVICES names " + gpus.length
          + " GPU(s): one rank per GPU");
    }
    List<String> jvm = new ArrayList<>();
    jvm.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
    for (String option : ManagementFactory.getRuntimeMXBean().getInputArguments()) {
      // The ranks share the container's memory: each gets its share of a heap given as a percentage.
      jvm.add(option.startsWith(HEAP_PERCENT) ? HEAP_PERCENT + Double.parseDouble(option.substring(HEAP_PERCENT.length())) / nproc
          : option);
    }
    jvm.addAll(List.of("-cp", System.getProperty("java.class.path"), Main.class.getName()));
    jvm.addAll(args);
    System.out.println("launching " + nproc + " ranks on node " + node + " of " + nodes + " (world size " + nodes * nproc
        + ", rendezvous at " + env.getOrDefault("MASTER_ADDR", "127.0.0.1") + ":" + env.getOrDefault("MASTER_PORT", "29500")
        + ")");
    List<Process> ranks = new CopyOnWriteArrayList<>();
    // SIGTERM or SIGINT to the launcher: on to every rank; wait for their checkpoint; exit with their code.
    Thread forward = new Thread(() -> {
      ranks.forEach(Process::destroy);
      List<Integer> codes = new ArrayList<>();
      for (Process p : ranks) {
        try {
          codes.add(p.waitFor());
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          codes.add(ExitCodes.CRASHED);
        }
      }
      System.out.flush();
      Runtime.getRuntime().halt(worst(codes));
    }, "finetune-launcher-stop");
    Runtime.getRuntime().addShutdownHook(forward);
    for (int i = 0; i < nproc; i++) {
      ProcessBuilder pb = new ProcessBuilder(jvm).inheritIO();
      Map<String, String> e = pb.environment();
      e.put("WORLD_SIZE", Integer.toString(nodes * nproc));
      e.put("RANK", Integer.toString(node * nproc + i));
      e.put("LOCAL_RANK", Integer.toString(i));
      e.put("LOCAL_WORLD_SIZE", Integer.toString(nproc));
      e.putIfAbsent("MASTER_ADDR", "127.0.0.1");
      e.putIfAbsent("MASTER_PORT", "29500");
      e.put("CUDA_VISIBLE_DEVICES", gpus == null ? Integer.toString(i) : gpus[i].strip());
      ranks.add(pb.start());
    }
    // The first rank to fail stops the rest (their next collective would fail anyway).
    List<CompletableFuture<Process>> ends = ranks.stream().map(Process::onExit).toList();
    for (CompletableFuture<Process> end : ends) {
      end.thenAccept(p -> {
        if (p.exitValue() != ExitCodes.SUCCEEDED && p.exitValue() != ExitCodes.INTERRUPTED) {
          ranks.forEach(Process::destroy);
        }
      });
    }
    List<Integer> codes = new ArrayList<>();
    for (Process p : ranks) {
      codes.add(p.waitFor());
    }
    try {
      Runtime.getRuntime().removeShutdownHook(forward);
    } catch (IllegalStateException e) {
      // shutting down: the hook has run
    }
    return worst(codes);
  }

  /** The exit code of the node: bad job or diverged first, then a crash, then stopped, else done. */
  public static int worst(List<Integer> codes) {
    for (int code : List.of(ExitCodes.BAD_JOB, ExitCodes.DIVERGED)) {
      if (codes.contains(code)) {
        return code;
      }
    }
    if (codes.stream().anyMatch(c -> c != ExitCodes.SUCCEEDED && c != ExitCodes.INTERRUPTED)) {
      return ExitCodes.CRASHED;
    }
    return codes.contains(ExitCodes.INTERRUPTED) ? ExitCodes.INTERRUPTED : ExitCodes.SUCCEEDED;
  }

  /**
   * {@code NODE_RANK}; in a worker Pod of the operator's multi-node job, which cannot add to its completion index,
   * {@code FINETUNE_WORKER_INDEX} + 1 (node 0 is the leader Pod).
   */
  public static int nodeRank(Map<String, String> env) {
    String worker = env.get(TrainerContract.ENV_WORKER_INDEX);
    if (env.containsKey("NODE_RANK") || worker == null || worker.isBlank()) {
      return number(env, "NODE_RANK", 0);
    }
    return number(env, TrainerContract.ENV_WORKER_INDEX, 0) + 1;
  }

  private static int number(Map<String, String> env, String name, int fallback) {
    String v = env.get(name);
    try {
      int n = v == null || v.isBlank() ? fallback : Integer.parseInt(v.strip());
      if (n < 0) {
        throw new NumberFormatException();
      }
      return n;
    } catch (NumberFormatException e) {
      throw new BadJobException(name + " is '" + v + "', not a whole number");
    }
  }
}
