package dev.finetune.helm;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.finetune.api.FineTuneJob;
import dev.finetune.api.FineTuneJobStatus;
import dev.finetune.api.FineTuneJobs;
import dev.finetune.api.testing.Holds;
import dev.finetune.api.testing.LocalPrometheus;
import dev.finetune.api.testing.RealKubeApiServer;
import dev.finetune.api.testing.Repo;
import dev.finetune.api.trainer.TrainerContract;
import dev.finetune.operator.FineTuneOperator;
import dev.finetune.operator.config.OperatorConfig;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import java.io.IOException;
import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The Grafana dashboard uses only metric names that a real trainer and a real operator export, and its job
 * variable's query works against a real Prometheus that scrapes a training run.
 */
class DashboardTest {
  private static final Path DASHBOARD = Chart.DIR.resolve("dashboards/finetune.json");
  /** PromQL functions, aggregations and keywords: identifiers that are not metric names. */
  private static final Set<String> PROMQL = Set.of("sum", "min", "max", "avg", "count", "rate", "irate", "increase",
      "delta", "changes", "by", "without", "or", "and", "unless", "label_values", "topk", "bottomk", "on", "ignoring",
      "histogram_quantile", "clamp_min", "clamp_max", "abs", "time", "vector", "scalar");

  private static JsonNode dashboard;

  @BeforeAll
  static void read() throws IOException {
    dashboard = new ObjectMapper().readTree(DASHBOARD.toFile());
  }

  /** Every PromQL expression of the dashboard: panel targets, annotations, the template variable. */
  static List<String> expressions() {
    List<String> exprs = new ArrayList<>();
    dashboard.findValues("expr").forEach(e -> exprs.add(e.asText()));
    dashboard.at("/templating/list").forEach(v -> {
      if (v.has("definition")) {
        exprs.add(v.get("definition").asText());
      }
    });
    return exprs;
  }

  /** Metric names in an expression: identifiers outside label matchers, grouping clauses and strings. */
  static Set<String> metricNames(String expr) {
    String stripped = expr.replaceAll("\"[^\"]*\"", "\"\"")
        .replaceAll("\\{[^}]*}", "")
        .replaceAll("\\b(by|without|on|ignoring)\\s*\\([^)]*\\)", "")
        .replaceAll("\\[[^]]*]", "");
    Matcher label = Pattern.compile("label_values\\(\\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\\s*,[^)]*\\)").matcher(stripped);
    stripped = label.replaceAll("$1");
    Set<String> names = new TreeSet<>();
    Matcher m = Pattern.compile("[a-zA-Z_:][a-zA-Z0-9_:]*").matcher(stripped);
    while (m.find()) {
      String id = m.group();
      if (!PROMQL.contains(id) && !id.matches("\\d.*")) {
        names.add(id);
      }
    }
    return names;
  }

  /** Sample names in a Prometheus text exposition. */
  static Set<String> exported(String exposition) {
    Set<String> names = new HashSet<>();
    exposition.lines().filter(l -> !l.startsWith("#") && !l.isBlank())
        .forEach(l -> names.add(l.split("[{ ]", 2)[0]));
    return names;
  }

  @Test
  void everyQueryUsesExportedMetricsAndTheJobVariableWorks(@TempDir Path dir) throws Exception {
    Set<String> exported = new HashSet<>();
    exported.addAll(exported(operatorMetrics()));

    // A real trainer, scraped by a real Prometheus while it trains.
    int port;
    try (ServerSocket s = new ServerSocket(0)) {
      port = s.getLocalPort();
    }
    Files.writeString(dir.resolve("job.yaml"), """
        apiVersion: finetune.dev/v1alpha1
        kind: FineTuneJob
        metadata: {name: dashboard-check, namespace: ml}
        spec:
          model:
            scratch: {layers: 1, embeddingDim: 16, heads: 2, contextLength: 64}
          dataset:
            synthetic: {size: 40}
            promptStyle: phi3
            maxLength: 64
          training: {epochs: 2, batchSize: 8, learningRate: 0.001}
          evaluation: {enabled: false}
        """);
    Path jar = Repo.root().resolve("trainer-image/target/finetune-trainer.jar");
    assertThat(jar).as("the trainer jar (mvn package)").exists();
    ProcessBuilder pb = new ProcessBuilder(ProcessHandle.current().info().command().orElse("java"), "-jar", jar.toString(),
        dir.resolve("job.yaml").toString(), "--output", dir.resolve("out").toString())
        .redirectErrorStream(true).redirectOutput(dir.resolve("trainer.log").toFile());
    pb.environment().put(TrainerContract.ENV_PORT, Integer.toString(port));
    pb.environment().put(TrainerContract.ENV_TERMINATION_LOG, dir.resolve("termination-log").toString());
    pb.environment().put("DJL_OFFLINE", "true");
    // The trainer holds once epoch 1 is reported, until the test has seen it scraped and stops it.
    pb.environment().putAll(Holds.env(dir.resolve("holds"), List.of("epoch-1-end")));
    try (LocalPrometheus prometheus = LocalPrometheus.scraping("127.0.0.1:" + port)) {
      Process trainer = pb.start();
      try {
        // The job variable's query, as Grafana runs it: the job's name comes back once an epoch is scraped.
        Holds.awaitHeld(dir.resolve("holds"), "epoch-1-end", trainer::isAlive, () -> read(dir.resolve("trainer.log")));
        await().atMost(Holds.HANG_GUARD).pollInterval(Duration.ofSeconds(1)).untilAsserted(() -> {
          assertThat(trainer.isAlive()).as(Files.readString(dir.resolve("trainer.log"))).isTrue();
          JsonNode values = new ObjectMapper().readTree(prometheus.get(
              "/api/v1/label/finetune_job/values?match[]=finetune_epoch").body());
          assertThat(values.get("data")).extracting(JsonNode::asText).asString().contains("dashboard-check");
          JsonNode loss = new ObjectMapper().readTree(prometheus.query("finetune_epoch_train_loss{finetune_job=~\"dashboard-check\"}"));
          assertThat(loss.at("/data/result")).isNotEmpty();
        });
        exported.addAll(exported(HttpClient.newHttpClient().send(HttpRequest.newBuilder(
            URI.create("http://127.0.0.1:" + port + TrainerContract.METRICS_PATH)).build(), HttpResponse.BodyHandlers.ofString()).body()));
      } finally {
        trainer.destroy();
        trainer.waitFor();
      }
    }

    Set<String> used = new TreeSet<>();
    expressions().forEach(e -> used.addAll(metricNames(e)));
    assertThat(used).as("metric names the dashboard queries").isNotEmpty().contains("finetune_epoch_train_loss", "finetune_operator_jobs");
    assertThat(exported).as("names the trainer and the operator export").containsAll(used);
  }

  @Test
  void metricNamesAreFoundInExpressions() {
    assertThat(metricNames("sum by (phase) (finetune_operator_jobs)")).containsExactly("finetune_operator_jobs");
    assertThat(metricNames("finetune_epoch{finetune_job=~\"$job\"} / finetune_epochs{finetune_job=~\"$job\"}"))
        .containsExactly("finetune_epoch", "finetune_epochs");
    assertThat(metricNames("label_values(finetune_epoch, finetune_job)")).containsExactly("finetune_epoch");
    assertThat(metricNames("rate(finetune_checkpoint_write_seconds_sum{finetune_job=~\"$job\"}[5m])"))
        .containsExactly("finetune_checkpoint_write_seconds_sum");
  }

  /** The operator's /metrics (its Prometheus registry) after it reconciled a valid and an invalid job. */
  private static String operatorMetrics() throws IOException {
    try (RealKubeApiServer server = RealKubeApiServer.start(false)) {
      server.installCrd();
      PrometheusMeterRegistry registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
      OperatorConfig config = OperatorConfig.fromEnv(Map.of("FINETUNE_LEADER_ELECTION", "false", "FINETUNE_METRICS_PORT", "0"));
      try (FineTuneOperator operator = FineTuneOperator.create(server.client(), config, registry).start()) {
        FineTuneJob valid = FineTuneJobs.read(Repo.examples().resolve("small-cpu.yaml"));
        valid.getMetadata().setNamespace("default");
        server.client().resource(valid).create();
        // Invalid in a way no CRD rule checks (a label value), so the operator's validator fails it.
        FineTuneJob invalid = FineTuneJobs.read(Repo.examples().resolve("small-cpu.yaml"));
        invalid.getMetadata().setName("invalid-label");
        invalid.getMetadata().setNamespace("default");
        invalid.getSpec().labels = Map.of("team", "not a label value!");
        server.client().resource(invalid).create();
        await().atMost(Duration.ofSeconds(60)).untilAsserted(() -> {
          for (String name : List.of("small-cpu", "invalid-label")) {
            FineTuneJob j = server.client().resources(FineTuneJob.class).inNamespace("default").withName(name).get();
            assertThat(j.getStatus()).isNotNull();
            assertThat(j.getStatus().phase).isIn(FineTuneJobStatus.Phase.Pending, FineTuneJobStatus.Phase.Failed);
          }
        });
        return registry.scrape();
      }
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
