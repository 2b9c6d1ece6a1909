package dev.finetune.trainer.observe;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.finetune.api.EpochRecord;
import dev.finetune.api.EvaluationStatus;
import dev.finetune.api.FineTuneJob;
import dev.finetune.api.FineTuneJobStatus;
import dev.finetune.api.FineTuneJobs;
import dev.finetune.api.trainer.MetricNames;
import dev.finetune.api.trainer.TrainerContract;
import dev.finetune.api.trainer.TrainerContract.ExitCodes;
import dev.finetune.api.trainer.TrainerReport;
import dev.finetune.api.validation.InvalidJobException;
import dev.finetune.api.validation.Problem;
import dev.finetune.trainer.BadJobException;
import dev.finetune.trainer.hub.RepoKind;
import dev.finetune.trainer.train.DivergedException;
import dev.finetune.trainer.data.Record;
import dev.finetune.trainer.train.TrainingListener.CheckpointInfo;
import dev.finetune.trainer.train.TrainingListener.EpochInfo;
import dev.finetune.trainer.train.TrainingListener.Outcome;
import dev.finetune.trainer.train.TrainingListener.Result;
import dev.finetune.trainer.train.TrainingListener.RunInfo;
import dev.finetune.trainer.train.TrainingListener.StepInfo;
import java.lang.reflect.Field;
import java.lang.reflect.Modifier;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The listener driven with the event sequence the trainer produces (start, steps, epochs, checkpoints, finish or
 * error), read back over HTTP and from the files: /metrics has every contract name with the job's labels and
 * the values of the events, /progress and the termination message parse into the API types the operator
 * reads, the termination message fits 4 KiB, failures before and during training leave a summary.
 */
class ObservabilityTest {
  static final String JOB = """
      apiVersion: finetune.dev/v1alpha1
      kind: FineTuneJob
      metadata:
        name: obs-test
        namespace: team-a
      spec:
        model:
          scratch: {}
        dataset:
          synthetic:
            size: 40
        training:
          epochs: %d
        earlyStopping:
          patience: 2
      """;

  @TempDir
  Path dir;

  static FineTuneJob job(int epochs) {
    return FineTuneJobs.parse(String.format(JOB, epochs));
  }

  static EpochRecord record(int epoch, double train, double val, long step) {
    EpochRecord r = new EpochRecord(epoch, train, val);
    r.step = step;
    r.tokens = step * 1000;
    r.learningRate = 1e-3;
    r.seconds = 1.5;
    return r;
  }

  /** Exposition lines as "name{labels}" -> value (no comments). */
  static Map<String, Double> samples(String text) {
    Map<String, Double> out = new LinkedHashMap<>();
    for (String line : text.split("\n")) {
      if (line.isBlank() || line.startsWith("#")) {
        continue;
      }
      int cut = line.lastIndexOf(' ');
      out.put(line.substring(0, cut), Double.parseDouble(line.substring(cut + 1)));
    }
    return out;
  }

  static Double value(Map<String, Double> samples, String name) {
    String key = name + "{" + MetricNames.LABEL_JOB + "=\"obs-test\"," + MetricNames.LABEL_NAMESPACE + "=\"team-a\"}";
    return samples.get(key);
  }

  /** Plays a run of {@code epochs} epochs of 3 steps; validation losses as given; stops early if asked. */
  static List<EpochRecord> play(Observability obs, FineTuneJob job, Path out, double[] val, boolean earlyStop) {
    int epochs = job.getSpec().training.epochs;
    obs.onStart(new RunInfo(job, out, epochs, 3, 3L * epochs, 30, 5, List.of(new Record("i", "", "o")), 1000, null,
        null, 0, 0, List.of()));
    List<EpochRecord> history = new ArrayList<>();
    double best = Double.POSITIVE_INFINITY;
    int bestEpoch = 0;
    long step = 0;
    for (int e = 1; e <= val.length; e++) {
      for (int s = 0; s < 3; s++) {
        step++;
        obs.onStep(new StepInfo(e, step, 3L * epochs, 3.0 / step, 1e-3 * step, step * 1000, 2000, 10.0 * (3L * epochs - step),
            0.5));
      }
      EpochRecord r = record(e, 3.0 / e, val[e - 1], step);
      history.add(r);
      if (val[e - 1] < best) {
        best = val[e - 1];
        bestEpoch = e;
      }
      obs.onEpoch(new EpochInfo(r, best, bestEpoch, bestEpoch == e, e - bestEpoch));
      obs.onCheckpoint(new CheckpointInfo(out.resolve("checkpoints/epoch-000" + e), "checkpoints/epoch-000" + e, 0.25,
          TrainerContract.BEST_DIR));
    }
    obs.onFinish(new Result(earlyStop ? Outcome.EARLY_STOPPED : Outcome.COMPLETED, earlyStop ? "early stopped" : "completed",
        val.length, epochs, bestEpoch, best, List.copyOf(history), out.resolve("best"),
        "checkpoints/epoch-000" + val.length));
    return history;
  }

  @Test
  void metricsCarryTheContractNamesLabelsAndTheEventsValues() throws Exception {
    FineTuneJob job = job(5);
    Path out = dir.resolve("run");
    try (Observability obs = Observability.onLoopback(null)) {
      String base = "http://127.0.0.1:" + obs.port();
      obs.bind(job, out);
      // Before the first epoch: no loss gauges at all (no NaN sample for Prometheus), but planned epochs.
      Map<String, Double> before = samples(Http.get(base + TrainerContract.METRICS_PATH).body());
      assertThat(value(before, MetricNames.EPOCHS)).isEqualTo(5.0);
      assertThat(before.keySet()).noneMatch(k -> k.startsWith(MetricNames.EPOCH_TRAIN_LOSS)
          || k.startsWith(MetricNames.STEP_LOSS));
      assertThat(before.values()).allMatch(Double::isFinite);

      play(obs, job, out, new double[] {2.0, 1.5, 1.6, 1.7}, true);
      dev.finetune.api.EvaluationStatus evaluation = new dev.finetune.api.EvaluationStatus();
      evaluation.responses = 4;
      evaluation.exactMatches = 3;
      evaluation.exactMatchRate = 0.75;
      evaluation.meanScore = 80.0;
      obs.evaluationFinished(evaluation);
      HttpResponse<String> rsp = Http.get(base + TrainerContract.METRICS_PATH);
      assertThat(rsp.statusCode()).isEqualTo(200);
      assertThat(rsp.headers().firstValue("Content-Type").orElse("")).startsWith("text/plain; version=0.0.4");
      Map<String, Double> m = samples(rsp.body());
      assertThat(value(m, MetricNames.EPOCH_TRAIN_LOSS)).isEqualTo(3.0 / 4);
      assertThat(value(m, MetricNames.EPOCH_VALIDATION_LOSS)).isEqualTo(1.7);
      assertThat(value(m, MetricNames.BEST_VALIDATION_LOSS)).isEqualTo(1.5);
      assertThat(value(m, MetricNames.EPOCH)).isEqualTo(4.0);
      assertThat(value(m, MetricNames.EPOCHS)).isEqualTo(5.0);
      assertThat(value(m, MetricNames.STEP_LOSS)).isEqualTo(3.0 / 12);
      assertThat(value(m, MetricNames.STEPS)).isEqualTo(12.0);
      assertThat(value(m, MetricNames.EVALUATION_EXACT_MATCH)).isEqualTo(0.75);
      assertThat(value(m, MetricNames.EVALUATION_MEAN_SCORE)).isEqualTo(80.0);
      assertThat(value(m, MetricNames.TOKENS)).isEqualTo(12000.0);
      assertThat(value(m, MetricNames.TOKENS_PER_SECOND)).isPositive();
      assertThat(value(m, MetricNames.LEARNING_RATE)).isCloseTo(0.012, within(1e-12));
      assertThat(value(m, MetricNames.EARLY_STOPPED)).isEqualTo(1.0);
      assertThat(value(m, MetricNames.CHECKPOINT_WRITE_SECONDS + "_count")).isEqualTo(4.0);
      assertThat(value(m, MetricNames.CHECKPOINT_WRITE_SECONDS + "_sum")).isCloseTo(1.0, within(1e-6));
      assertThat(value(m, MetricNames.CHECKPOINT_WRITE_SECONDS + "_max")).isCloseTo(0.25, within(1e-6));
      // Every name of the contract is on /metrics, and every series carries both labels.
      for (String name : contractNames()) {
        assertThat(rsp.body()).as(name).containsPattern("(?m)^# TYPE " + name + " (gauge|counter|summary)$");
        assertThat(m.keySet()).as(name).anyMatch(k -> k.startsWith(name + "{") || k.startsWith(name + "_count{"));
      }
      assertThat(m.keySet()).allMatch(k -> k.contains(MetricNames.LABEL_JOB + "=\"obs-test\"")
          && k.contains(MetricNames.LABEL_NAMESPACE + "=\"team-a\""));

      assertThat(Http.get(base + TrainerContract.HEALTH_PATH).body()).isEqualTo("ok\n");
      assertThat(Http.get(base + "/nope").statusCode()).isEqualTo(404);
      assertThat(Http.post(base + TrainerContract.METRICS_PATH, "x").statusCode()).isEqualTo(405);
    }
  }

  static List<String> contractNames() throws IllegalAccessException {
    List<String> names = new ArrayList<>();
    for (Field f : MetricNames.class.getFields()) {
      if (Modifier.isStatic(f.getModifiers()) && f.getType() == String.class && !f.getName().startsWith("LABEL_")) {
        names.add((String) f.get(null));
      }
    }
    assertThat(names).hasSizeGreaterThanOrEqualTo(12).contains(MetricNames.EPOCH_TRAIN_LOSS);
    return names;
  }

  @Test
  void progressFollowsTheRunAndParsesAsTheOperatorReadsIt() throws Exception {
    FineTuneJob job = job(3);
    Path out = dir.resolve("run");
    ObjectMapper strict = FineTuneJobs.json();
    try (Observability obs = Observability.onLoopback(null)) {
      String url = "http://127.0.0.1:" + obs.port() + TrainerContract.PROGRESS_PATH;
      TrainerReport starting = strict.readValue(Http.get(url).body(), TrainerReport.class);
      assertThat(starting.phase).isEqualTo(Observability.STARTING);

      // a download from the hub: the phase and the words the operator shows as the job's reason and message
      obs.onResolved(RepoKind.MODEL, "org/model", "main", "0123456789abcdef0123456789abcdef01234567");
      obs.onDownload("downloading model.safetensors of org/model: 1.0 MB of 20.0 MB (5%)", false);
      TrainerReport downloading = strict.readValue(Http.get(url).body(), TrainerReport.class);
      assertThat(downloading.phase).isEqualTo(TrainerContract.PHASE_DOWNLOADING);
      assertThat(downloading.message).isEqualTo("downloading model.safetensors of org/model: 1.0 MB of 20.0 MB (5%)");
      assertThat(downloading.modelCommit).isEqualTo("0123456789abcdef0123456789abcdef01234567");
      obs.onDownload("downloaded model.safetensors of org/model: 20.0 MB in 3 s", true);
      TrainerReport downloaded = strict.readValue(Http.get(url).body(), TrainerReport.class);
      assertThat(downloaded.phase).isEqualTo(Observability.STARTING);
      assertThat(downloaded.message).isNull();

      obs.onStart(new RunInfo(job, out, 3, 4, 12, 30, 5, List.of(), 1000, null, "checkpoints/step-00000002", 0, 2,
          List.of()));
      obs.onStep(new StepInfo(1, 3, 12, 2.5, 1e-3, 3000, 1500, 90, 0.7));
      String body = Http.get(url).body();
      TrainerReport p = strict.readValue(body, TrainerReport.class);
      assertThat(p.phase).isEqualTo(Observability.TRAINING);
      assertThat(p.epoch).isEqualTo(1);
      assertThat(p.epochs).isEqualTo(3);
      assertThat(p.step).isEqualTo(3);
      assertThat(p.steps).isEqualTo(12);
      assertThat(p.stepLoss).isEqualTo(2.5);
      assertThat(p.learningRate).isEqualTo(1e-3);
      assertThat(p.tokensPerSecond).isEqualTo(1500.0);
      assertThat(p.etaSeconds).isEqualTo(90.0);
      assertThat(p.trainLoss).isNull();
      assertThat(p.history).isEmpty();
      assertThat(p.checkpoint.restoredFrom).isEqualTo("checkpoints/step-00000002");
      assertOnlyKnownFields(body, TrainerReport.class);

      EpochRecord e1 = record(1, 2.4, 2.2, 4);
      obs.onEpoch(new EpochInfo(e1, 2.2, 1, true, 0));
      obs.onCheckpoint(new CheckpointInfo(out.resolve("checkpoints/epoch-0001"), "checkpoints/epoch-0001", 0.1, "best"));
      body = Http.get(url).body();
      p = strict.readValue(body, TrainerReport.class);
      assertThat(p.trainLoss).isEqualTo(2.4);
      assertThat(p.validationLoss).isEqualTo(2.2);
      assertThat(p.bestValidationLoss).isEqualTo(2.2);
      assertThat(p.bestEpoch).isEqualTo(1);
      assertThat(p.earlyStopped).isFalse();
      assertThat(p.history).hasSize(1);
      assertThat(p.history.get(0).epoch).isEqualTo(1);
      assertThat(p.history.get(0).trainLoss).isEqualTo(2.4);
      assertThat(p.history.get(0).step).isEqualTo(4L);
      assertThat(p.checkpoint.latest).isEqualTo("checkpoints/epoch-0001");
      assertThat(p.checkpoint.best).isEqualTo("best");
      assertOnlyKnownFields(body, TrainerReport.class);

      obs.evaluationStarted(10);
      assertThat(strict.readValue(Http.get(url).body(), TrainerReport.class).phase).isEqualTo(Observability.EVALUATING);
    }
  }

  /** Every field in the JSON is a field of the type (ignoreUnknown would hide a misspelt one). */
  static void assertOnlyKnownFields(String json, Class<?> type) throws Exception {
    Set<String> known = Arrays.stream(type.getFields()).map(Field::getName).collect(Collectors.toSet());
    Set<String> seen = new HashSet<>();
    FineTuneJobs.json().readTree(json).fieldNames().forEachRemaining(seen::add);
    assertThat(known).containsAll(seen);
  }

  @Test
  void summaryAndTerminationMessageAtTheEnd() throws Exception {
    FineTuneJob job = job(6);
    Path out = dir.resolve("run");
    Path log = dir.resolve("termination-log");
    List<EpochRecord> history;
    try (Observability obs = Observability.on(null, log)) {
      history = play(obs, job, out, new double[] {2.0, 1.5, 1.6, 1.7}, true);
      EvaluationStatus ev = new EvaluationStatus();
      ev.responses = 11;
      ev.responsesPath = TrainerContract.RESPONSES_FILE;
      ev.scored = 9;
      ev.scoreFailures = 2;
      ev.meanScore = 47.5;
      obs.evaluationStarted(11);
      obs.evaluationFinished(ev);
    }
    TrainerReport s = FineTuneJobs.json().readValue(out.resolve(TrainerContract.SUMMARY_FILE).toFile(),
        TrainerReport.class);
    assertThat(s.phase).isEqualTo("Succeeded");
    assertThat(s.reason).isEqualTo("EarlyStopped");
    assertThat(s.earlyStopped).isTrue();
    assertThat(s.epoch).isEqualTo(4);
    assertThat(s.epochs).isEqualTo(6);
    assertThat(s.bestEpoch).isEqualTo(2);
    assertThat(s.bestValidationLoss).isEqualTo(1.5);
    assertThat(s.trainLoss).isEqualTo(0.75);
    assertThat(s.validationLoss).isEqualTo(1.7);
    assertThat(s.checkpoint.latest).isEqualTo("checkpoints/epoch-0004");
    assertThat(s.checkpoint.best).isEqualTo("best");
    assertThat(s.evaluation.meanScore).isEqualTo(47.5);
    assertThat(s.evaluation.scoreFailures).isEqualTo(2);
    assertThat(s.history).extracting(r -> r.validationLoss).containsExactly(2.0, 1.5, 1.6, 1.7);

    String message = Files.readString(log);
    assertThat(message.getBytes(StandardCharsets.UTF_8).length).isLessThanOrEqualTo(TrainerContract.TERMINATION_MESSAGE_LIMIT);
    // The operator copies the summary into .status: every field of the summary is a status field of the same type.
    FineTuneJobStatus status = FineTuneJobs.json().readValue(message, FineTuneJobStatus.class);
    assertThat(status.phase).isEqualTo(FineTuneJobStatus.Phase.Succeeded);
    assertThat(status.reason).isEqualTo("EarlyStopped");
    assertThat(status.bestEpoch).isEqualTo(2);
    assertThat(status.evaluation.scored).isEqualTo(9);
    assertThat(status.checkpoint.latest).isEqualTo("checkpoints/epoch-0004");
    assertThat(status.history).hasSize(history.size());
    assertOnlyKnownFields(message, TrainerReport.class);
  }

  @Test
  void terminationMessageFitsFourKibWithALongHistoryDroppingTheOldestFirst() throws Exception {
    int epochs = 500;
    FineTuneJob job = job(epochs);
    Path out = dir.resolve("run");
    Path log = dir.resolve("termination-log");
    double[] val = new double[epochs];
    for (int i = 0; i < epochs; i++) {
      val[i] = 3.0 - i * 0.001 + (i % 7) * 1e-4;
    }
    try (Observability obs = Observability.on(null, log)) {
      play(obs, job, out, val, false);
    }
    byte[] bytes = Files.readAllBytes(log);
    assertThat(bytes.length).isLessThanOrEqualTo(TrainerContract.TERMINATION_MESSAGE_LIMIT);
    assertThat(bytes.length).as("it uses the room it has").isGreaterThan(TrainerContract.TERMINATION_MESSAGE_LIMIT - 400);
    TrainerReport cut = FineTuneJobs.json().readValue(bytes, TrainerReport.class);
    TrainerReport full = FineTuneJobs.json().readValue(out.resolve(TrainerContract.SUMMARY_FILE).toFile(),
        TrainerReport.class);
    assertThat(full.history).hasSize(epochs);
    assertThat(cut.history).isNotEmpty().hasSizeLessThan(epochs);
    // The newest entries are kept, in order, ending with the last epoch.
    List<Integer> kept = cut.history.stream().map(r -> r.epoch).toList();
    int first = epochs - kept.size() + 1;
    for (int i = 0; i < kept.size(); i++) {
      assertThat(kept.get(i)).isEqualTo(first + i);
    }
    assertThat(cut.reason).isEqualTo("Completed");
    assertThat(cut.bestValidationLoss).isEqualTo(full.bestValidationLoss);
    assertThat(cut.bestEpoch).isEqualTo(full.bestEpoch);
    FineTuneJobs.json().readValue(bytes, FineTuneJobStatus.class);

    // A message far over the limit is shortened, the phase and reason stay.
    TrainerReport huge = new TrainerReport();
    huge.phase = "Failed";
    huge.reason = "InvalidData";
    huge.message = "ü".repeat(10_000);
    huge.history = full.history;
    String fitted = Summaries.fit(huge, TrainerContract.TERMINATION_MESSAGE_LIMIT);
    assertThat(fitted.getBytes(StandardCharsets.UTF_8).length).isLessThanOrEqualTo(TrainerContract.TERMINATION_MESSAGE_LIMIT);
    TrainerReport back = FineTuneJobs.json().readValue(fitted, TrainerReport.class);
    assertThat(back.reason).isEqualTo("InvalidData");
    assertThat(back.message).startsWith("üüü").endsWith("...(cut)");
    assertThat(back.message.length()).as("the message keeps what room allows").isGreaterThan(1000);
  }

  @Test
  void failuresLeaveASummaryWithTheirReason() throws Exception {
    // Invalid spec: nothing is bound yet (the spec did not parse); only the termination log is written.
    Path log = dir.resolve("termination-log");
    try (Observability obs = Observability.on(null, log)) {
      obs.onError(new InvalidJobException(List.of(new Problem("spec.training.epochs", "must be at least 1"))),
          ExitCodes.BAD_JOB);
    }
    TrainerReport s = FineTuneJobs.json().readValue(log.toFile(), TrainerReport.class);
    assertThat(s.phase).isEqualTo("Failed");
    assertThat(s.reason).isEqualTo("InvalidSpec");
    assertThat(s.message).contains("spec.training.epochs");

    // Invalid data after the job was bound: summary.json too.
    Path out = dir.resolve("run");
    try (Observability obs = Observability.on(null, log)) {
      obs.bind(job(2), out);
      obs.onError(new BadJobException("dataset file /data/x.json does not exist"), ExitCodes.BAD_JOB);
    }
    for (TrainerReport t : new TrainerReport[] {
        FineTuneJobs.json().readValue(log.toFile(), TrainerReport.class),
        FineTuneJobs.json().readValue(out.resolve(TrainerContract.SUMMARY_FILE).toFile(), TrainerReport.class)}) {
      assertThat(t.reason).isEqualTo("InvalidData");
      assertThat(t.phase).isEqualTo("Failed");
    }

    // Diverged in epoch 2: the history so far is kept.
    Path out2 = dir.resolve("run2");
    try (Observability obs = Observability.on(null, log)) {
      FineTuneJob job = job(3);
      obs.onStart(new RunInfo(job, out2, 3, 2, 6, 10, 2, List.of(), 10, null, null, 0, 0, List.of()));
      obs.onEpoch(new EpochInfo(record(1, 2.0, 1.9, 2), 1.9, 1, true, 0));
      obs.onError(new DivergedException("the training loss became NaN"), ExitCodes.DIVERGED);
    }
    s = FineTuneJobs.json().readValue(log.toFile(), TrainerReport.class);
    assertThat(s.reason).isEqualTo("Diverged");
    assertThat(s.history).hasSize(1);
    assertThat(s.bestEpoch).isEqualTo(1);

    // Interrupted (SIGTERM): phase Failed, reason Interrupted, the checkpoint named.
    try (Observability obs = Observability.on(null, log)) {
      FineTuneJob job = job(3);
      obs.onStart(new RunInfo(job, out2, 3, 2, 6, 10, 2, List.of(), 10, null, null, 0, 0, List.of()));
      obs.onFinish(new Result(Outcome.INTERRUPTED, "stopped by request", 0, 3, 0, Double.POSITIVE_INFINITY, List.of(),
          null, "checkpoints/step-00000001"));
    }
    String text = Files.readString(log);
    assertThat(text).doesNotContain("Infinity").doesNotContain("NaN");
    s = FineTuneJobs.json().readValue(text, TrainerReport.class);
    assertThat(s.reason).isEqualTo("Interrupted");
    assertThat(s.phase).isEqualTo("Failed");
    assertThat(s.bestValidationLoss).isNull();
    assertThat(s.checkpoint.latest).isEqualTo("checkpoints/step-00000001");

    // No result at all (the trainer died without reporting): close still leaves a Failed summary.
    try (Observability obs = Observability.on(null, log)) {
      obs.bind(job(2), out);
    }
    s = FineTuneJobs.json().readValue(log.toFile(), TrainerReport.class);
    assertThat(s.phase).isEqualTo("Failed");
    assertThat(s.reason).isEqualTo("Error");
  }

  @Test
  void reasonsFromExitCodesAndErrors() {
    assertThat(Summaries.reason(new RuntimeException("x"), ExitCodes.CRASHED)).isEqualTo("Error");
    assertThat(Summaries.reason(new OutOfMemoryError(), ExitCodes.CRASHED)).isEqualTo("Error");
    assertThat(Summaries.reason(new DivergedException("nan"), ExitCodes.DIVERGED)).isEqualTo("Diverged");
    assertThat(Summaries.reason(new BadJobException("spec.model names no model"), ExitCodes.BAD_JOB))
        .isEqualTo("InvalidSpec");
    assertThat(Summaries.reason(new BadJobException("invalid dataset records (each needs ...)"), ExitCodes.BAD_JOB))
        .isEqualTo("InvalidData");
    assertThat(Summaries.reason(new BadJobException("dataset ConfigMap key 'k' not found"), ExitCodes.BAD_JOB))
        .isEqualTo("InvalidData");
    assertThat(Summaries.reason(null, ExitCodes.INTERRUPTED)).isEqualTo("Interrupted");
  }

  @Test
  void portAndTerminationLogFromTheEnvironment() {
    assertThat(Observability.port(Map.of())).isEqualTo(TrainerContract.DEFAULT_PORT);
    assertThat(Observability.port(Map.of(TrainerContract.ENV_PORT, "0"))).isZero();
    assertThat(Observability.port(Map.of(TrainerContract.ENV_PORT, " 9191 "))).isEqualTo(9191);
    org.assertj.core.api.Assertions.assertThatThrownBy(() -> Observability.port(Map.of(TrainerContract.ENV_PORT, "http")))
        .hasMessageContaining(TrainerContract.ENV_PORT);
    assertThat(Observability.terminationLog(Map.of(TrainerContract.ENV_TERMINATION_LOG, "/x/y")))
        .isEqualTo(Path.of("/x/y"));
    try (Observability off = Observability.start(0, null)) {
      assertThat(off.port()).isZero();
    }
  }

  @Test
  void aResumedRunStartsFromItsHistory() throws Exception {
    FineTuneJob job = job(4);
    Path out = dir.resolve("run");
    List<EpochRecord> before = List.of(record(1, 2.0, 1.8, 3), record(2, 1.5, 1.9, 6));
    try (Observability obs = Observability.onLoopback(null)) {
      obs.onStart(new RunInfo(job, out, 4, 3, 12, 30, 5, List.of(), 1000, null, "checkpoints/epoch-0002", 2, 6, before));
      TrainerReport p = FineTuneJobs.json().readValue(
          Http.get("http://127.0.0.1:" + obs.port() + TrainerContract.PROGRESS_PATH).body(), TrainerReport.class);
      assertThat(p.epoch).isEqualTo(3);
      assertThat(p.step).isEqualTo(6);
      assertThat(p.history).hasSize(2);
      assertThat(p.bestEpoch).isEqualTo(1);
      assertThat(p.bestValidationLoss).isEqualTo(1.8);
      assertThat(p.validationLoss).isEqualTo(1.9);
      Map<String, Double> m = samples(obs.scrape());
      assertThat(value(m, MetricNames.EPOCH_VALIDATION_LOSS)).isEqualTo(1.9);
      assertThat(value(m, MetricNames.STEPS)).isEqualTo(6.0);
      assertThat(Files.exists(out.resolve(TrainerContract.PLOT_FILE))).isTrue();
    }
  }
}
