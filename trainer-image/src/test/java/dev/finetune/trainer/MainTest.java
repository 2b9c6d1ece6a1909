package dev.finetune.trainer;

import static org.assertj.core.api.Assertions.assertThat;

import dev.finetune.api.trainer.TrainerContract.ExitCodes;
import dev.finetune.api.validation.InvalidJobException;
import dev.finetune.trainer.data.Record;
import dev.finetune.trainer.data.SyntheticTasks;
import dev.finetune.trainer.hub.FakeHub;
import dev.finetune.trainer.hub.HubSettings;
import dev.finetune.trainer.model.Model;
import dev.finetune.trainer.train.Checkpoints;
import dev.finetune.trainer.train.DivergedException;
import dev.finetune.trainer.train.TrainingListener;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.finetune.api.testing.TinyJob;
import dev.finetune.api.trainer.TrainerContract;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicReference;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The command line: exit codes, messages and where the run directory goes. */
class MainTest {

  static final class Errors implements TrainingListener {
    final List<Throwable> errors = new ArrayList<>();
    final List<Integer> codes = new ArrayList<>();
    Result result;

    @Override
    public void onError(Throwable error, int exitCode) {
      errors.add(error);
      codes.add(exitCode);
    }

    @Override
    public void onFinish(Result r) {
      result = r;
    }
  }

  static int run(Errors e, String... args) {
    return Main.run(args, List.of(e), null);
  }

  @Test
  void aRunFolderThatCannotBeWrittenIsABadJobBeforeAnythingElse(@TempDir Path dir) throws Exception {
    Path job = Jobs.write(dir, TinyJob.yaml("unwritable", "ns", 1).replace("  namespace: ns\n", ""));
    Path file = Files.writeString(dir.resolve("not-a-folder"), "x");
    Path out = file.resolve("run");
    Errors e = new Errors();
    // not a retry (exit 1): the setup is wrong, and another attempt meets the same folder
    assertThat(run(e, job.toString(), "--output", out.toString())).isEqualTo(ExitCodes.BAD_JOB);
    assertThat(e.errors.get(0).getMessage()).startsWith("the run folder " + out + " cannot be written (")
        .endsWith("). Give the run a writable folder: --output DIR here; in a Pod, a volume at spec.checkpoints.path"
            + " mounted writable for the trainer's user (not read-only)");
  }

  @Test
  void invalidJobExits3AndNamesEveryProblem(@TempDir Path dir) throws Exception {
    Path job = Jobs.write(dir, TinyJob.yamlWith("broken", 0, Map.of("spec.model", Map.of())));
    Errors e = new Errors();
    assertThat(run(e, job.toString())).isEqualTo(ExitCodes.BAD_JOB);
    assertThat(e.errors.get(0)).isInstanceOf(InvalidJobException.class);
    InvalidJobException ex = (InvalidJobException) e.errors.get(0);
    assertThat(ex.problems()).hasSizeGreaterThanOrEqualTo(2);
    assertThat(ex.getMessage()).contains(job.toString()).contains("spec.model").contains("spec.training.epochs");
    assertThat(dir.resolve("runs")).doesNotExist();
  }

  @Test
  void helpAndVersionAnswerAndExit0() {
    java.io.ByteArrayOutputStream captured = new java.io.ByteArrayOutputStream();
    java.io.PrintStream stdout = System.out;
    System.setOut(new java.io.PrintStream(captured, true, java.nio.charset.StandardCharsets.UTF_8));
    try {
      assertThat(run(new Errors(), "--help")).isEqualTo(ExitCodes.SUCCEEDED);
      assertThat(run(new Errors(), "--version")).isEqualTo(ExitCodes.SUCCEEDED);
    } finally {
      System.setOut(stdout);
    }
    String out = captured.toString(java.nio.charset.StandardCharsets.UTF_8);
    assertThat(out).startsWith("usage: java -jar finetune-trainer.jar JOB.yaml")
        .contains("exit codes:", "  3   bad job", "  75  stopped by SIGTERM or SIGINT", "environment:", "FINETUNE_PORT",
            "FINETUNE_TERMINATION_LOG", "--restart", "--more-epochs")
        .containsPattern("(?m)^finetune-trainer \\S+.* \\(DJL 0\\.\\d+");
  }

  @Test
  void gpusWithoutAGpuWarnLocallyAndFailInAPod(@TempDir Path dir) throws Exception {
    org.junit.jupiter.api.Assumptions.assumeTrue(ai.djl.engine.Engine.getInstance().getGpuCount() == 0, "a GPU is visible");
    Path file = Jobs.write(dir, TinyJob.yamlWith("gpus", 1, Map.of("spec.resources.gpus", 1)));
    dev.finetune.api.FineTuneJob job = Jobs.read(file);
    Main.checkGpus(job, java.util.Map.of()); // a local run: a warning, training goes on
    org.assertj.core.api.Assertions.assertThatThrownBy(() -> Main.checkGpus(job, java.util.Map.of("KUBERNETES_SERVICE_HOST",
        "10.0.0.1"))).isInstanceOf(BadJobException.class).hasMessageStartingWith("spec.resources.gpus is 1 but no GPU is"
        + " visible in this Pod");
  }

  @Test
  void checkEngineTrainsOneTinyStep() {
    assertThat(run(new Errors(), "--check-engine")).isEqualTo(ExitCodes.SUCCEEDED);
  }

  @Test
  void commandLineMistakesExit3() {
    Errors e = new Errors();
    assertThat(run(e)).isEqualTo(ExitCodes.BAD_JOB);
    assertThat(run(e, "a.yaml", "b.yaml")).isEqualTo(ExitCodes.BAD_JOB);
    assertThat(run(e, "/does/not/exist.yaml")).isEqualTo(ExitCodes.BAD_JOB);
    assertThat(e.errors.get(0).getMessage()).contains("usage:");
    assertThat(e.errors.get(2).getMessage()).contains("/does/not/exist.yaml");
  }

  @Test
  void badDataExits3WithFileAndLine(@TempDir Path dir) throws Exception {
    Files.writeString(dir.resolve("data.jsonl"), "{\"instruction\": \"a\", \"output\": \"b\"}\n{\"instruction\": \"a\"}\n");
    Path job = Jobs.write(dir, TinyJob.yamlWith("baddata", 1, Map.of("spec.dataset.synthetic", TinyJob.UNSET,
        "spec.dataset.path", "data.jsonl")));
    Errors e = new Errors();
    assertThat(run(e, job.toString())).isEqualTo(ExitCodes.BAD_JOB);
    assertThat(e.errors.get(0).getMessage()).contains(dir.resolve("data.jsonl") + " line 2: field 'output' is missing");
  }

  @Test
  void promptsThatFillMaxLengthExit3(@TempDir Path dir) throws Exception {
    // Alpaca's preamble alone is ~90 bytes: with the byte tokenizer, maxLength 64 and maskPrompt, no target is left.
    Path job = Jobs.write(dir, TinyJob.yamlWith("masked", 1, Map.of("spec.dataset.promptStyle", "alpaca",
        "spec.dataset.maskPrompt", true, "spec.dataset.maxLength", 64)));
    Errors e = new Errors();
    assertThat(run(e, job.toString())).isEqualTo(ExitCodes.BAD_JOB);
    assertThat(e.errors.get(0).getMessage()).contains("training records have no target token within spec.dataset.maxLength (64)");
  }

  @Test
  void nonFiniteLossExits4(@TempDir Path dir) throws Exception {
    // A model whose final LayerNorm holds NaN (a corrupted or overflowed checkpoint): the first loss is NaN.
    dev.finetune.api.ScratchModelSpec shape = new dev.finetune.api.ScratchModelSpec();
    shape.layers = 1;
    shape.embeddingDim = 16;
    shape.heads = 2;
    shape.contextLength = 64;
    try (ai.djl.ndarray.NDManager base = ai.djl.ndarray.NDManager.newBaseManager(); Model m = Model.scratch(shape, base)) {
      m.net().parameters().get("ln_f.weight").muli(Float.NaN);
      m.save(dir.resolve("nan-model"));
    }
    Path job = Jobs.write(dir, TinyJob.yamlWith("diverge", 1, Map.of("spec.model", Map.of("path", "nan-model"),
        "spec.dataset.maxLength", 64)));
    Errors e = new Errors();
    assertThat(run(e, job.toString())).isEqualTo(ExitCodes.DIVERGED);
    assertThat(e.errors.get(0)).isInstanceOf(DivergedException.class);
    assertThat(e.errors.get(0).getMessage()).contains("loss became NaN").contains("learningRate");
    assertThat(dir.resolve("runs/diverge/checkpoints")).doesNotExist();
  }

  @Test
  void aLossThatExplodesWhileFiniteEndsDivergedAndShipsNoBestModel(@TempDir Path dir) throws Exception {
    // The issue's case: learning rate 10 without clipping. No loss is NaN, but epoch 1 validates far above ln 257.
    Path job = Jobs.write(dir, TinyJob.yamlWith("explode", 2, Map.of("spec.training.learningRate", 10,
        "spec.training.schedule", "constant", "spec.training.warmupSteps", 0, "spec.training.maxGradNorm", TinyJob.UNSET)));
    Errors e = new Errors();
    assertThat(run(e, job.toString())).isEqualTo(ExitCodes.DIVERGED);
    assertThat(e.errors.get(0)).isInstanceOf(DivergedException.class);
    String message = e.errors.get(0).getMessage();
    assertThat(message).containsPattern("^the validation loss after epoch 1 is \\d+(\\.\\d+)?, above 5\\.549, the loss of"
        + " guessing every token uniformly \\(ln 257\\); lower spec.training.learningRate, add warmupSteps or set"
        + " maxGradNorm \\(typical: 1.0\\)$");
    Path run = dir.resolve("runs/explode");
    JsonNode summary = new ObjectMapper().readTree(run.resolve(TrainerContract.SUMMARY_FILE).toFile());
    assertThat(summary.path("phase").asText()).isEqualTo("Failed");
    assertThat(summary.path("reason").asText()).isEqualTo("Diverged");
    assertThat(summary.path("message").asText()).contains(message);
    // the diverged epoch is not kept: not as best/, not in history.jsonl, not as a checkpoint to resume
    assertThat(run.resolve(TrainerContract.BEST_DIR)).doesNotExist();
    assertThat(Files.readString(run.resolve(TrainerContract.HISTORY_FILE))).isEmpty();
    assertThat(run.resolve(TrainerContract.CHECKPOINTS_DIR)).doesNotExist();
  }

  @Test
  void theFirstLineNamesDeviceResolvedPrecisionThreadsAndWhereProgressIsServed(@TempDir Path dir) throws Exception {
    Path job = Jobs.write(dir, TinyJob.yamlWith("firstline", 1, Map.of("spec.training.precision", "tf32",
        "spec.evaluation.enabled", false)));
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    ByteArrayOutputStream err = new ByteArrayOutputStream();
    AtomicReference<String> progress = new AtomicReference<>();
    // While training runs, /progress answers at the address the first line gives.
    TrainingListener fetch = new TrainingListener() {
      @Override
      public void onStart(RunInfo run) {
        Matcher m = Pattern.compile("at (http://localhost:\\d+)").matcher(out.toString(StandardCharsets.UTF_8));
        if (m.find()) {
          try {
            progress.set(HttpClient.newHttpClient().send(HttpRequest.newBuilder(URI.create(m.group(1) + "/progress")).build(),
                HttpResponse.BodyHandlers.ofString()).body());
          } catch (Exception ex) {
            progress.set(ex.toString());
          }
        }
      }
    };
    PrintStream stdout = System.out;
    PrintStream stderr = System.err;
    System.setOut(new PrintStream(out, true, StandardCharsets.UTF_8));
    System.setErr(new PrintStream(err, true, StandardCharsets.UTF_8));
    int code;
    try {
      code = Main.run(new String[] {job.toString()}, List.of(fetch), null);
    } finally {
      System.setOut(stdout);
      System.setErr(stderr);
      System.out.print(out.toString(StandardCharsets.UTF_8));
      System.err.print(err.toString(StandardCharsets.UTF_8));
    }
    assertThat(code).isEqualTo(ExitCodes.SUCCEEDED);
    String first = out.toString(StandardCharsets.UTF_8).lines().findFirst().orElseThrow();
    Matcher m = Pattern.compile("device (cpu|gpu \\d+ of \\d+) \\(PyTorch \\d+\\.\\d+\\.\\d+\\), precision (\\S+)(?: \\(fp32: a CPU has"
        + " no tensor cores\\))?, (\\d+) threads; (?:/metrics and /progress at http://localhost:(\\d+)|no /metrics or /progress"
        + " server)").matcher(first);
    assertThat(m.matches()).as(first).isTrue();
    boolean gpu = ai.djl.engine.Engine.getInstance().getGpuCount() > 0;
    assertThat(m.group(1)).isEqualTo(gpu ? "gpu 0 of " + ai.djl.engine.Engine.getInstance().getGpuCount() : "cpu");
    // the precision the spec resolved to, as summary.json records it; tf32 on a CPU says it computes in fp32
    JsonNode summary = new ObjectMapper().readTree(dir.resolve("runs/firstline").resolve(TrainerContract.SUMMARY_FILE).toFile());
    assertThat(m.group(2)).isEqualTo("tf32").isEqualTo(summary.path("precision").asText());
    assertThat(first.contains("(fp32: a CPU has no tensor cores)")).isEqualTo(!gpu);
    assertThat(Integer.parseInt(m.group(3))).isEqualTo(ai.djl.pytorch.jni.JniUtils.getNumThreads()).isPositive();
    if (m.group(4) != null) {
      assertThat(progress.get()).startsWith("{\"phase\":\"Starting\",").contains("\"epochs\":1,");
    } else { // the port was taken (another run on this machine): the line and stderr say so
      assertThat(err.toString(StandardCharsets.UTF_8)).contains("observability: cannot serve /metrics and /progress");
    }
  }

  @Test
  void runsAJobIntoRunsNameByDefaultAndIntoOutputWhenGiven(@TempDir Path dir) throws Exception {
    // answers of at most 4 tokens: the default 256 for each of 12 test prompts, twice, took minutes on a loaded CPU
    Path job = Jobs.write(dir, TinyJob.yamlWith("cli", 2, Map.of("spec.evaluation.maxNewTokens", 4)));
    Errors e = new Errors();
    assertThat(run(e, job.toString())).isEqualTo(ExitCodes.SUCCEEDED);
    Path out = dir.resolve("runs/cli");
    assertThat(out.resolve("history.jsonl")).exists();
    assertThat(Files.readAllLines(out.resolve("history.jsonl"))).hasSize(2);
    assertThat(out.resolve("best/config.json")).exists();
    assertThat(out.resolve("best/tokenizer.json")).exists();
    assertThat(out.resolve("checkpoints/" + Checkpoints.epochName(2) + "/state.json")).exists();
    assertThat(e.result.outcome()).isEqualTo(TrainingListener.Outcome.COMPLETED);
    assertThat(e.result.bestModel()).isEqualTo(out.resolve("best"));

    Path other = dir.resolve("elsewhere");
    assertThat(run(new Errors(), job.toString(), "--output", other.toString())).isEqualTo(ExitCodes.SUCCEEDED);
    assertThat(other.resolve("history.jsonl")).exists();
  }

  @Test
  void hubModelIsTakenFromTheRunsModelCacheAndConfigMapDataFromTheJobDirectory(@TempDir Path dir) throws Exception {
    // What a first run with network leaves behind (or huggingface-cli download): the HF cache layout under
    // <output>/model-cache/, with refs/main naming the snapshot's commit. Nothing is asked of the (absent) hub.
    Path repo = dir.resolve("runs/hubcached/model-cache/models--finetune-test--tiny-gpt2");
    String commit = "0123456789abcdef0123456789abcdef01234567";
    Files.createDirectories(repo.resolve("refs"));
    Files.writeString(repo.resolve("refs/main"), commit);
    Path cache = Files.createDirectories(repo.resolve("snapshots").resolve(commit));
    for (String f : new String[] {"config.json", "model.safetensors", "tokenizer.json"}) {
      Files.copy(Fixtures.tinyGpt2().resolve(f), cache.resolve(f));
    }
    StringBuilder data = new StringBuilder();
    for (Record r : SyntheticTasks.generate(40, 2)) {
      data.append(FineTuneJobsJson.record(r)).append('\n');
    }
    Files.writeString(dir.resolve("tasks.jsonl"), data.toString());
    Path job = Jobs.write(dir, TinyJob.yamlWith("hubcached", 1, Map.of("spec.model", Map.of("hub", "finetune-test/tiny-gpt2"),
        "spec.dataset.synthetic", TinyJob.UNSET, "spec.dataset.configMap", Map.of("name", "tasks", "key", "tasks.jsonl"),
        "spec.dataset.promptStyle", "alpaca", "spec.dataset.maxLength", 128, "spec.training.learningRate", 1.0e-3,
        "spec.evaluation.maxNewTokens", 4)));
    Errors e = new Errors();
    assertThat(run(e, job.toString())).isEqualTo(ExitCodes.SUCCEEDED);
    Path best = dir.resolve("runs/hubcached/best");
    assertThat(Files.readString(best.resolve("config.json"))).contains("\"n_embd\" : 32");
    JsonNode summary = new ObjectMapper().readTree(dir.resolve("runs/hubcached").resolve(TrainerContract.SUMMARY_FILE).toFile());
    assertThat(summary.path("modelCommit").asText()).isEqualTo(commit);
    assertThat(Files.mismatch(best.resolve("tokenizer.json"), Fixtures.tinyGpt2().resolve("tokenizer.json"))).isEqualTo(-1);
  }

  /** One JSON Lines record. */
  static final class FineTuneJobsJson {
    static String record(Record r) throws Exception {
      return new com.fasterxml.jackson.databind.ObjectMapper().writeValueAsString(
          java.util.Map.of("instruction", r.instruction(), "input", r.input(), "output", r.output()));
    }
  }

  @Test
  void aJobTrainsOnAModelAndDataFromTheHubAndTheNextJobFindsThemInTheSharedCache(@TempDir Path dir) throws Exception {
    try (FakeHub fake = new FakeHub()) {
      FakeHub.Repo model = fake.model("finetune-test/tiny-gpt2");
      for (String f : new String[] {"config.json", "model.safetensors", "tokenizer.json"}) {
        model.file(f, Files.readAllBytes(Fixtures.tinyGpt2().resolve(f)));
      }
      StringBuilder data = new StringBuilder();
      for (Record r : SyntheticTasks.generate(40, 2)) {
        data.append(FineTuneJobsJson.record(r).replace("\"instruction\"", "\"question\"")).append('\n');
      }
      FakeHub.Repo dataset = fake.dataset("finetune-test/tasks").file("data/train.jsonl", data.toString().getBytes(StandardCharsets.UTF_8));
      fake.dropAfter("model.safetensors", 1000, 1);
      HubSettings hub = HubSettings.from(Map.of("HF_ENDPOINT", fake.endpoint(), "HF_HUB_CACHE", dir.resolve("hf").toString()));
      for (String name : new String[] {"fromhub", "fromcache"}) {
        Path job = Jobs.write(dir, TinyJob.yamlWith(name, 1, Map.of("spec.model", Map.of("hub", "finetune-test/tiny-gpt2"),
            "spec.dataset.synthetic", TinyJob.UNSET, "spec.dataset.hub", Map.of("repo", "finetune-test/tasks",
                "files", List.of("data/train.jsonl")), "spec.dataset.columns", Map.of("instruction", "question"),
            "spec.dataset.promptStyle", "alpaca", "spec.dataset.maxLength", 128, "spec.evaluation.maxNewTokens", 4)));
        int requests = fake.requests().size();
        Errors e = new Errors();
        assertThat(Main.run(new String[] {job.toString()}, List.of(e), t -> t.hub(hub))).as("%s", e.errors)
            .isEqualTo(ExitCodes.SUCCEEDED);
        JsonNode summary = new ObjectMapper().readTree(dir.resolve("runs/" + name).resolve(TrainerContract.SUMMARY_FILE).toFile());
        assertThat(summary.path("modelCommit").asText()).isEqualTo(model.commit());
        assertThat(summary.path("datasetCommit").asText()).isEqualTo(dataset.commit());
        if (name.equals("fromcache")) {
          assertThat(fake.requests()).hasSize(requests); // the second job asks the hub nothing
        }
      }
      // the dropped transfer resumed: the weights crossed the wire once, but for what was in flight at the drop
      assertThat(fake.bytesSent("model.safetensors"))
          .isLessThanOrEqualTo(Files.size(Fixtures.tinyGpt2().resolve("model.safetensors")) + 1000);
      assertThat(dir.resolve("runs/fromhub/model-cache")).doesNotExist(); // HF_HUB_CACHE, not the run folder
    }
  }

  @Test
  void hubModelWithoutNetworkOrCacheFailsClearly(@TempDir Path dir) throws Exception {
    Path job = Jobs.write(dir, TinyJob.yamlWith("hub", 1, Map.of("spec.model", Map.of("hub",
        "finetune-test/does-not-exist-xyz"))));
    Errors e = new Errors();
    int code = run(e, job.toString());
    // offline: a network failure (1, retry); online: the repository does not exist (3)
    assertThat(code).isIn(ExitCodes.CRASHED, ExitCodes.BAD_JOB);
    assertThat(e.errors.get(0).getMessage()).contains("https://huggingface.co/finetune-test/does-not-exist-xyz/resolve/main/");
    // nothing half-written is left: not even an empty model-cache/
    assertThat(dir.resolve("runs/hub/model-cache")).doesNotExist();
  }
}
