package dev.finetune.trainer.observe;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.finetune.api.FineTuneJobStatus;
import dev.finetune.api.FineTuneJobs;
import dev.finetune.api.testing.Holds;
import dev.finetune.api.trainer.TrainerContract;
import dev.finetune.api.trainer.TrainerContract.ExitCodes;
import dev.finetune.api.trainer.TrainerReport;
import java.io.IOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The trainer as the Pod runs it: a child JVM with {@code FINETUNE_PORT} and {@code FINETUNE_TERMINATION_LOG}
 * set, exit codes, the port serving while it trains, and what it leaves behind on success, on an invalid spec
 * (exit 3, before any run directory exists) and on invalid data (exit 3, summary.json too).
 */
class MainWiringTest {
  static final ObjectMapper JSON = new ObjectMapper();
  static final String JOB = """
      apiVersion: finetune.dev/v1alpha1
      kind: FineTuneJob
      metadata:
        name: wired
        namespace: ns1
      spec:
        model:
          scratch:
            layers: 1
            embeddingDim: 16
            heads: 2
            contextLength: 96
        dataset:
          %s
          promptStyle: phi3
          maxLength: 96
        training:
          epochs: %d
          batchSize: 8
          learningRate: 0.003
        evaluation:
          maxNewTokens: 4
      """;

  @TempDir
  Path dir;

  record Run(int exit, String output, List<String> progress) {}

  static int freePort() throws IOException {
    try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
      return s.getLocalPort();
    }
  }

  /** Runs the trainer's Main in a child JVM; polls /progress while it runs. */
  Run trainer(Path jobFile, Path out, Path terminationLog) throws Exception {
    return trainer(jobFile, out, terminationLog, null);
  }

  /**
   * As above; with {@code holdAt}, the trainer holds at that point until /progress has answered there, so the run
   * is seen while it trains however fast it is.
   */
  Run trainer(Path jobFile, Path out, Path terminationLog, String holdAt) throws Exception {
    int port = freePort();
    List<String> cmd = List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-Xmx1g", "-cp",
        System.getProperty("java.class.path"), "dev.finetune.trainer.Main", jobFile.toString(), "--output",
        out.toString());
    Path log = dir.resolve("trainer-" + System.nanoTime() + ".log");
    ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile());
    pb.environment().put("DJL_OFFLINE", "true");
    pb.environment().put(TrainerContract.ENV_PORT, Integer.toString(port));
    pb.environment().put(TrainerContract.ENV_TERMINATION_LOG, terminationLog.toString());
    Path holds = dir.resolve("holds");
    if (holdAt != null) {
      pb.environment().putAll(Holds.env(holds, List.of(holdAt)));
    }
    Process p = pb.start();
    List<String> progress = new ArrayList<>();
    if (holdAt != null) {
      Holds.awaitHeld(holds, holdAt, p::isAlive, () -> read(log));
      var rsp = Http.get("http://127.0.0.1:" + port + TrainerContract.PROGRESS_PATH);
      assertThat(rsp.statusCode()).as("/progress at " + holdAt).isEqualTo(200);
      progress.add(rsp.body());
      Holds.release(holds, holdAt);
    }
    long deadline = System.nanoTime() + Holds.HANG_GUARD.toNanos();
    while (p.isAlive() && System.nanoTime() < deadline) {
      try {
        var rsp = Http.get("http://127.0.0.1:" + port + TrainerContract.PROGRESS_PATH);
        if (rsp.statusCode() == 200) {
          progress.add(rsp.body());
        }
      } catch (IOException e) {
        // not listening (yet, or any more)
      }
      p.waitFor(200, TimeUnit.MILLISECONDS);
    }
    if (p.isAlive()) {
      p.destroyForcibly().waitFor();
      throw new AssertionError("the trainer did not finish within " + Holds.HANG_GUARD + " (a hang?):\n" + read(log));
    }
    return new Run(p.exitValue(), Files.readString(log), progress);
  }

  @Test
  void aSuccessfulRunServesProgressAndLeavesItsResults() throws Exception {
    Path job = dir.resolve("job.yaml");
    Files.writeString(job, JOB.formatted("synthetic: {size: 80, seed: 4}", 2));
    Path out = dir.resolve("out");
    Path log = dir.resolve("termination-log");
    Run run = trainer(job, out, log, "epoch-1-end");
    assertThat(run.exit()).as(run.output()).isEqualTo(ExitCodes.SUCCEEDED);
    assertThat(run.progress()).as("/progress answered while the trainer ran").isNotEmpty();
    for (String body : run.progress()) {
      TrainerReport p = FineTuneJobs.json().readValue(body, TrainerReport.class);
      assertThat(p.phase).isIn(Observability.STARTING, Observability.TRAINING, Observability.EVALUATING,
          Observability.SUCCEEDED);
    }

    TrainerReport s = FineTuneJobs.json().readValue(out.resolve(TrainerContract.SUMMARY_FILE).toFile(),
        TrainerReport.class);
    assertThat(s.phase).isEqualTo("Succeeded");
    assertThat(s.reason).isEqualTo("Completed");
    assertThat(s.history).hasSize(2);
    assertThat(s.evaluation).isNotNull();
    List<String> responses = Files.readAllLines(out.resolve(TrainerContract.RESPONSES_FILE));
    assertThat(responses).hasSize(s.evaluation.responses).isNotEmpty();
    JsonNode first = JSON.readTree(responses.get(0));
    assertThat(first.has("instruction") && first.has("output") && first.has("model_response")).isTrue();
    assertThat(LossPlotTest.points(LossPlotTest.parse(Files.readString(out.resolve(TrainerContract.PLOT_FILE))),
        "train")).hasSize(2);
    String message = Files.readString(log);
    assertThat(message.getBytes(StandardCharsets.UTF_8).length).isLessThanOrEqualTo(
        TrainerContract.TERMINATION_MESSAGE_LIMIT);
    FineTuneJobStatus status = FineTuneJobs.json().readValue(message, FineTuneJobStatus.class);
    assertThat(status.phase).isEqualTo(FineTuneJobStatus.Phase.Succeeded);
    assertThat(status.evaluation.responses).isEqualTo(s.evaluation.responses);
  }

  @Test
  void ctrlCIsNamedSigintAndStopsAfterACheckpoint() throws Exception {
    Path job = dir.resolve("job.yaml");
    Files.writeString(job, JOB.formatted("synthetic: {size: 400, seed: 4}", 2));
    Path out = dir.resolve("out");
    Path log = dir.resolve("trainer.log");
    // SIGINT at its default disposition: a test run started in the background (a CI runner, nohup ... &) passes SIGINT
    // on as ignored, and a JVM that starts with SIGINT ignored installs no handler for it (as a shell's background job).
    ProcessBuilder pb = new ProcessBuilder("env", "--default-signal=INT",
        Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-Xmx1g",
        "-cp", System.getProperty("java.class.path"), "dev.finetune.trainer.Main", job.toString(), "--output",
        out.toString()).redirectErrorStream(true).redirectOutput(log.toFile());
    pb.environment().put("DJL_OFFLINE", "true");
    pb.environment().put(TrainerContract.ENV_PORT, "0");
    // Ctrl-C while it trains: the trainer holds after its first step until the signal.
    Path holds = dir.resolve("holds");
    pb.environment().putAll(Holds.env(holds, List.of("epoch-1-step-1")));
    Process p = pb.start();
    try {
      Holds.awaitHeld(holds, "epoch-1-step-1", p::isAlive, () -> read(log));
      new ProcessBuilder("kill", "-INT", Long.toString(p.pid())).start().waitFor();
      assertThat(p.waitFor(120, TimeUnit.SECONDS)).as(Files.readString(log)).isTrue();
    } finally {
      p.destroyForcibly();
    }
    String output = Files.readString(log);
    assertThat(p.exitValue()).as(output).isEqualTo(ExitCodes.INTERRUPTED);
    assertThat(output).contains("SIGINT: stopping at the next step boundary").doesNotContain("SIGTERM");
    TrainerReport s = FineTuneJobs.json().readValue(out.resolve(TrainerContract.SUMMARY_FILE).toFile(), TrainerReport.class);
    assertThat(s.reason).isEqualTo("Interrupted");
    assertThat(s.message).contains("stopped by request (SIGINT)");
  }

  @Test
  void anInvalidSpecExitsWithThreeAndSaysWhyInTheTerminationLog() throws Exception {
    Path job = dir.resolve("job.yaml");
    Files.writeString(job, JOB.formatted("synthetic: {size: 80}", 0));
    Path log = dir.resolve("termination-log");
    Run run = trainer(job, dir.resolve("out"), log);
    assertThat(run.exit()).as(run.output()).isEqualTo(ExitCodes.BAD_JOB);
    TrainerReport s = FineTuneJobs.json().readValue(log.toFile(), TrainerReport.class);
    assertThat(s.phase).isEqualTo("Failed");
    assertThat(s.reason).isEqualTo("InvalidSpec");
    assertThat(s.message).contains("spec.training.epochs");
  }

  @Test
  void invalidDataExitsWithThreeWithASummary() throws Exception {
    Path job = dir.resolve("job.yaml");
    Files.writeString(job, JOB.formatted("path: no-such-file.jsonl", 2));
    Path out = dir.resolve("out");
    Path log = dir.resolve("termination-log");
    Run run = trainer(job, out, log);
    assertThat(run.exit()).as(run.output()).isEqualTo(ExitCodes.BAD_JOB);
    for (Path p : List.of(log, out.resolve(TrainerContract.SUMMARY_FILE))) {
      TrainerReport s = FineTuneJobs.json().readValue(p.toFile(), TrainerReport.class);
      assertThat(s.phase).as(p.toString()).isEqualTo("Failed");
      assertThat(s.reason).as(p.toString()).isEqualTo("InvalidData");
      assertThat(s.message).contains("no-such-file.jsonl");
    }
  }

  private static String read(Path log) {
    try {
      return Files.readString(log);
    } catch (IOException e) {
      return "(no log: " + e + ")";
    }
  }
}
