package dev.finetune.trainer.observe;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.finetune.api.EpochRecord;
import dev.finetune.api.FineTuneJob;
import dev.finetune.api.FineTuneJobStatus;
import dev.finetune.api.FineTuneJobs;
import dev.finetune.api.testing.LocalPrometheus;
import dev.finetune.api.testing.TinyJob;
import dev.finetune.api.trainer.MetricNames;
import dev.finetune.api.trainer.TrainerContract;
import dev.finetune.api.trainer.TrainerReport;
import dev.finetune.trainer.train.Trainer;
import dev.finetune.trainer.train.TrainingListener;
import dev.finetune.trainer.eval.Evaluation;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A real Prometheus (Debian's {@code /usr/bin/prometheus}, or {@code PROMETHEUS_BIN}) scrapes a real training run
 * in this JVM every second: a scratch 1-layer GPT-2 on synthetic tasks, four epochs, with the observability
 * listener. After each epoch the test waits until Prometheus has scraped that epoch's validation loss (so every
 * epoch is scraped however fast the machine is) and reads /progress. Then PromQL range selectors return the raw
 * samples of the epoch losses for the job's labels: collapsed to their changes they are exactly the losses of
 * history.jsonl, one value per epoch. Evaluation with the best weights follows; the summary, termination message,
 * responses.jsonl and loss.svg are checked against the run.
 */
class PrometheusScrapeTest {
  static final ObjectMapper JSON = new ObjectMapper();
  static final String NAME = "prom-scrape";
  static final String NAMESPACE = "ml-team";
  static final int EPOCHS = 4;
  @TempDir
  Path dir;
  LocalPrometheus prometheus;

  @AfterEach
  void stopPrometheus() {
    if (prometheus != null) {
      prometheus.close();
    }
  }

  /** Waits until Prometheus has scraped the trainer once. */
  void awaitFirstScrape() throws Exception {
    long deadline = System.nanoTime() + Duration.ofSeconds(30).toNanos();
    while (query("up == 1").isEmpty()) {
      if (System.nanoTime() > deadline) {
        throw new AssertionError("prometheus did not scrape the trainer within 30 s");
      }
      Thread.sleep(200);
    }
  }

  /** PromQL instant query; the result array. */
  List<JsonNode> query(String promql) throws IOException, InterruptedException {
    String body = prometheus.query(promql);
    JsonNode root = JSON.readTree(body);
    if (!"success".equals(root.path("status").asText())) {
      throw new AssertionError("query " + promql + " failed: " + body);
    }
    List<JsonNode> out = new ArrayList<>();
    root.path("data").path("result").forEach(out::add);
    return out;
  }

  static String selector(String metric) {
    return metric + "{" + MetricNames.LABEL_JOB + "=\"" + NAME + "\"," + MetricNames.LABEL_NAMESPACE + "=\"" + NAMESPACE
        + "\"}";
  }

  /** The latest value of a series, or NaN when Prometheus has none. */
  double latest(String metric) throws IOException, InterruptedException {
    List<JsonNode> r = query(selector(metric));
    return r.isEmpty() ? Double.NaN : Double.parseDouble(r.get(0).path("value").path(1).asText());
  }

  /** Every raw sample Prometheus stored for the series, collapsed to the values it changed to. */
  List<Double> changes(String metric) throws IOException, InterruptedException {
    List<JsonNode> r = query(selector(metric) + "[10m]");
    assertThat(r).as("one series for %s with the job's labels", metric).hasSize(1);
    JsonNode labels = r.get(0).path("metric");
    assertThat(labels.path(MetricNames.LABEL_JOB).asText()).isEqualTo(NAME);
    assertThat(labels.path(MetricNames.LABEL_NAMESPACE).asText()).isEqualTo(NAMESPACE);
    List<Double> out = new ArrayList<>();
    for (JsonNode sample : r.get(0).path("values")) {
      double v = Double.parseDouble(sample.path(1).asText());
      if (out.isEmpty() || out.get(out.size() - 1) != v) {
        out.add(v);
      }
    }
    return out;
  }

  @Test
  void prometheusScrapesOneValuePerEpochMatchingHistory() throws Exception {
    Path jobFile = dir.resolve("job.yaml");
    FineTuneJob tiny = TinyJob.job(NAME, NAMESPACE, EPOCHS);
    tiny.getSpec().training.gradientAccumulationSteps = 1;
    tiny.getSpec().checkpoints.keep = 2;
    tiny.getSpec().evaluation.maxNewTokens = 8;
    Files.writeString(jobFile, FineTuneJobs.toYaml(tiny));
    FineTuneJob job = FineTuneJobs.readValid(jobFile);
    Path out = dir.resolve("run");
    Path terminationLog = dir.resolve("termination-log");

    try (Observability obs = Observability.onLoopback(terminationLog)) {
      obs.bind(job, out);
      prometheus = LocalPrometheus.scraping("127.0.0.1:" + obs.port());
      awaitFirstScrape();
      String progressUrl = "http://127.0.0.1:" + obs.port() + TrainerContract.PROGRESS_PATH;
      List<TrainerReport> seen = new ArrayList<>();
      TrainingListener waitForScrape = new TrainingListener() {
        @Override
        public void onEpoch(EpochInfo e) {
          try {
            long deadline = System.nanoTime() + Duration.ofSeconds(20).toNanos();
            while (latest(MetricNames.EPOCH_VALIDATION_LOSS) != e.record().validationLoss) {
              if (System.nanoTime() > deadline) {
                throw new AssertionError("Prometheus did not scrape epoch " + e.record().epoch + " within 20 s");
              }
              Thread.sleep(100);
            }
            seen.add(FineTuneJobs.json().readValue(Http.get(progressUrl).body(), TrainerReport.class));
          } catch (IOException ex) {
            throw new AssertionError(ex);
          } catch (InterruptedException ex) {
            Thread.currentThread().interrupt();
          }
        }
      };
      Trainer trainer = new Trainer(job, dir, out, TrainingListener.all(List.of(obs, waitForScrape)));
      TrainingListener.Result result = trainer.run();
      assertThat(result.outcome()).isEqualTo(TrainingListener.Outcome.COMPLETED);
      Evaluation.afterTraining(result, trainer.testSplit(), obs);

      List<EpochRecord> history = new ArrayList<>();
      for (String line : Files.readAllLines(out.resolve(TrainerContract.HISTORY_FILE))) {
        history.add(FineTuneJobs.json().readValue(line, EpochRecord.class));
      }
      assertThat(history).hasSize(EPOCHS);
      List<Double> train = history.stream().map(r -> r.trainLoss).toList();
      List<Double> validation = history.stream().map(r -> r.validationLoss).toList();
      assertThat(changes(MetricNames.EPOCH_TRAIN_LOSS)).as("scraped train losses").isEqualTo(train);
      assertThat(changes(MetricNames.EPOCH_VALIDATION_LOSS)).as("scraped validation losses").isEqualTo(validation);
      double best = validation.stream().mapToDouble(Double::doubleValue).min().orElseThrow();
      assertThat(latest(MetricNames.BEST_VALIDATION_LOSS)).isEqualTo(best);
      assertThat(latest(MetricNames.EPOCHS)).isEqualTo(EPOCHS);
      assertThat(latest(MetricNames.STEPS)).isEqualTo(history.get(EPOCHS - 1).step.doubleValue());
      assertThat(latest(MetricNames.TOKENS)).isEqualTo(history.get(EPOCHS - 1).tokens.doubleValue());
      // The last checkpoint is written after the last epoch's scrape: wait for a scrape that has it.
      long deadline = System.nanoTime() + Duration.ofSeconds(20).toNanos();
      while (latest(MetricNames.CHECKPOINT_WRITE_SECONDS + "_count") < EPOCHS && System.nanoTime() < deadline) {
        Thread.sleep(100);
      }
      assertThat(latest(MetricNames.CHECKPOINT_WRITE_SECONDS + "_count")).isEqualTo(EPOCHS);
      assertThat(latest(MetricNames.CHECKPOINT_WRITE_SECONDS + "_sum")).isPositive();
      List<Double> steps = changes(MetricNames.STEPS);
      for (int i = 1; i < steps.size(); i++) {
        assertThat(steps.get(i)).as("the step counter only grows").isGreaterThan(steps.get(i - 1));
      }

      // /progress as the operator polled it after each epoch.
      assertThat(seen).hasSize(EPOCHS);
      for (int i = 0; i < EPOCHS; i++) {
        TrainerReport p = seen.get(i);
        assertThat(p.phase).isEqualTo(Observability.TRAINING);
        assertThat(p.epoch).isEqualTo(i + 1);
        assertThat(p.epochs).isEqualTo(EPOCHS);
        assertThat(p.history).hasSize(i + 1);
        assertThat(p.trainLoss).isEqualTo(train.get(i));
        assertThat(p.validationLoss).isEqualTo(validation.get(i));
        assertThat(p.step).isEqualTo(history.get(i).step);
        assertThat(p.tokensPerSecond).isPositive();
      }
    }

    // Files at the end.
    TrainerReport summary = FineTuneJobs.json().readValue(out.resolve(TrainerContract.SUMMARY_FILE).toFile(),
        TrainerReport.class);
    assertThat(summary.phase).isEqualTo("Succeeded");
    assertThat(summary.reason).isEqualTo("Completed");
    assertThat(summary.history).hasSize(EPOCHS);
    assertThat(summary.checkpoint.best).isEqualTo(TrainerContract.BEST_DIR);
    assertThat(summary.checkpoint.latest).isEqualTo("checkpoints/epoch-000" + EPOCHS);
    assertThat(summary.evaluation).isNotNull();
    int testRecords = summary.evaluation.responses;
    assertThat(testRecords).isPositive();
    List<String> responses = Files.readAllLines(out.resolve(TrainerContract.RESPONSES_FILE));
    assertThat(responses).hasSize(testRecords);
    for (String line : responses) {
      JsonNode l = JSON.readTree(line);
      assertThat(l.path("instruction").asText()).isNotBlank();
      assertThat(l.path("output").asText()).isNotBlank();
      assertThat(l.has("model_response")).isTrue();
      // Byte-level tokenizer: at most maxNewTokens (8) bytes of new text.
      assertThat(l.path("model_response").asText().getBytes(StandardCharsets.UTF_8).length).isLessThanOrEqualTo(8);
    }
    FineTuneJobStatus status = FineTuneJobs.json().readValue(Files.readString(terminationLog), FineTuneJobStatus.class);
    assertThat(status.phase).isEqualTo(FineTuneJobStatus.Phase.Succeeded);
    assertThat(status.evaluation.responses).isEqualTo(testRecords);
    assertThat(status.bestValidationLoss).isEqualTo(summary.bestValidationLoss);
    assertThat(LossPlotTest.points(LossPlotTest.parse(Files.readString(out.resolve(TrainerContract.PLOT_FILE))),
        "validation")).hasSize(EPOCHS);
  }
}
