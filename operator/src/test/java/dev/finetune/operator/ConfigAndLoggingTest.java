package dev.finetune.operator;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import dev.finetune.api.FineTuneJobs;
import dev.finetune.operator.config.OperatorConfig;
import dev.finetune.operator.resources.SpecHash;
import dev.finetune.operator.server.JsonLogFormatter;
import dev.finetune.operator.testing.Jobs;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;
import java.util.logging.Level;
import java.util.logging.LogRecord;
import org.junit.jupiter.api.Test;

class ConfigAndLoggingTest {

  @Test
  void emptyEnvironmentGivesDocumentedDefaults() {
    OperatorConfig c = OperatorConfig.fromEnv(Map.of());
    assertThat(c.watchAllNamespaces()).isTrue();
    assertThat(c.trainerImage()).isEqualTo(OperatorConfig.DEFAULT_IMAGE);
    assertThat(c.trainerCpuImage()).isEqualTo(OperatorConfig.DEFAULT_CPU_IMAGE);
    assertThat(c.imagePullSecrets()).isEmpty();
    assertThat(c.trainerCpu()).isEqualTo("2");
    assertThat(c.trainerMemory()).isEqualTo("8Gi");
    assertThat(c.trainerPort()).isEqualTo(9090);
    assertThat(c.progressInterval()).isEqualTo(Duration.ofSeconds(15));
    assertThat(c.metricsPort()).isEqualTo(8080);
    assertThat(c.leaderElection()).isTrue();
    assertThat(c.leaseName()).isEqualTo("finetune-operator-leader");
    assertThat(c.serverSideApply()).isTrue();
    assertThat(c.jobSet()).as("a JobSet where the cluster has JobSet").isEqualTo(OperatorConfig.JobSetUse.AUTO);
    assertThat(c.hub()).as("no hub cache, endpoint or proxy: the trainer's defaults").isEqualTo(OperatorConfig.Hub.none());
  }

  @Test
  void environmentOverridesAndBadValuesAreNamed() {
    OperatorConfig c = OperatorConfig.fromEnv(Map.of(
        "FINETUNE_WATCH_NAMESPACES", " team-a, team-b ,,",
        "FINETUNE_PROGRESS_INTERVAL_SECONDS", "30",
        "FINETUNE_LEADER_ELECTION", "false",
        "POD_NAMESPACE", "finetune-system",
        "POD_NAME", "op-1",
        "FINETUNE_JOBSET", "false"));
    assertThat(c.jobSet()).isEqualTo(OperatorConfig.JobSetUse.NEVER);
    assertThat(OperatorConfig.fromEnv(Map.of("FINETUNE_JOBSET", "TRUE")).jobSet())
        .isEqualTo(OperatorConfig.JobSetUse.ALWAYS);
    assertThatThrownBy(() -> OperatorConfig.fromEnv(Map.of("FINETUNE_JOBSET", "jobset")))
        .hasMessage("FINETUNE_JOBSET must be auto, true or false, is 'jobset'");
    assertThat(c.watchNamespaces()).isEqualTo(Set.of("team-a", "team-b"));
    assertThat(c.progressInterval()).isEqualTo(Duration.ofSeconds(30));
    assertThat(c.leaderElection()).isFalse();
    assertThat(c.leaseNamespace()).isEqualTo("finetune-system");
    assertThat(c.identity()).isEqualTo("op-1");
    assertThatThrownBy(() -> OperatorConfig.fromEnv(Map.of("FINETUNE_METRICS_PORT", "eighty")))
        .hasMessageContaining("FINETUNE_METRICS_PORT").hasMessageContaining("eighty");
    assertThatThrownBy(() -> OperatorConfig.fromEnv(Map.of("FINETUNE_LEADER_ELECTION", "yes")))
        .hasMessageContaining("FINETUNE_LEADER_ELECTION");
    assertThatThrownBy(() -> OperatorConfig.fromEnv(Map.of("FINETUNE_PROGRESS_INTERVAL_SECONDS", "0")))
        .hasMessageContaining("FINETUNE_PROGRESS_INTERVAL_SECONDS");
  }

  @Test
  void specHashIgnoresSuspendAndMapOrderButNotOtherFields() {
    var a = Jobs.small("h", "ns").getSpec();
    var b = Jobs.small("h", "ns").getSpec();
    Map<String, String> l1 = new LinkedHashMap<>();
    l1.put("x", "1");
    l1.put("y", "2");
    Map<String, String> l2 = new LinkedHashMap<>();
    l2.put("y", "2");
    l2.put("x", "1");
    a.labels = l1;
    b.labels = l2;
    b.suspend = true;
    assertThat(SpecHash.of(a)).isEqualTo(SpecHash.of(b));
    b.training.epochs = 4;
    assertThat(SpecHash.of(a)).isNotEqualTo(SpecHash.of(b));
  }

  @Test
  void logLinesAreJsonObjects() throws Exception {
    LogRecord r = new LogRecord(Level.WARNING, "msg=\"x\" name={0}");
    r.setParameters(new Object[] {"a\"b\nc"});
    r.setLoggerName("test.logger");
    r.setThrown(new IllegalStateException("boom"));
    String line = new JsonLogFormatter().format(r);
    assertThat(line).endsWith("}\n").doesNotContain("\n{");
    JsonNode json = FineTuneJobs.json().readTree(line);
    assertThat(json.get("level").asText()).isEqualTo("WARN");
    assertThat(json.get("logger").asText()).isEqualTo("test.logger");
    assertThat(json.get("msg").asText()).isEqualTo("msg=\"x\" name=a\"b\nc");
    assertThat(json.get("error").asText()).contains("IllegalStateException: boom");
    assertThat(json.get("ts").asText()).matches("\\d{4}-\\d\\d-\\d\\dT.*Z");
  }
}
