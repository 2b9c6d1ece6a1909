package dev.finetune.helm;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.finetune.api.FineTuneJob;
import dev.finetune.api.FineTuneJobStatus;
import dev.finetune.api.testing.JobSetCrd;
import dev.finetune.api.testing.RealKubeApiServer;
import dev.finetune.operator.FineTuneOperator;
import dev.finetune.operator.config.OperatorConfig;
import dev.finetune.operator.resources.JobSet;
import io.fabric8.kubernetes.api.model.NamespaceBuilder;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.time.Duration;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * On a cluster with JobSet, the chart's RBAC is enough for the operator to watch JobSets and make one for a job with
 * several nodes (the chart's default, jobSet: auto).
 */
class JobSetRbacTest {
  private static RealKubeApiServer server;

  @BeforeAll
  static void start() {
    server = RealKubeApiServer.start(false);
    server.installCrd();
    JobSetCrd.install(server);
  }

  @AfterAll
  static void stop() {
    if (server != null) {
      server.close();
    }
  }

  @Test
  void theChartsRulesLetTheOperatorMakeAJobSet() throws Exception {
    String ns = "ml-jobset";
    server.client().namespaces().resource(new NamespaceBuilder().withNewMetadata().withName(ns).endMetadata().build())
        .create();
    String saName = ChartInstall.installRbac(server, "ft-jobset", Map.of());
    await().atMost(Duration.ofSeconds(30)).until(() -> FineTuneOperator.servesJobSets(server.client()));
    try (KubernetesClient asOperator = ChartInstall.clientFor(server, saName)) {
      OperatorConfig config = OperatorConfig.fromEnv(Map.of(
          "FINETUNE_JOBSET", "true",
          "FINETUNE_LEADER_ELECTION", "false",
          "FINETUNE_METRICS_PORT", "0"));
      try (FineTuneOperator operator = FineTuneOperator.create(asOperator, config, new SimpleMeterRegistry()).start()) {
        server.client().resource(RbacTest.twoNodes(ns)).create();
        await().atMost(Duration.ofSeconds(60)).untilAsserted(() -> {
          FineTuneJob current = server.client().resources(FineTuneJob.class).inNamespace(ns).withName("two-nodes").get();
          assertThat(current.getStatus()).isNotNull();
          assertThat(current.getStatus().phase).isEqualTo(FineTuneJobStatus.Phase.Pending);
          assertThat(current.getStatus().jobName).isEqualTo("two-nodes-train");
          assertThat(server.client().resources(JobSet.class).inNamespace(ns).withName("two-nodes-train").get())
              .isNotNull();
          assertThat(server.client().batch().v1().jobs().inNamespace(ns).list().getItems())
              .as("the JobSet controller makes the Jobs, not the operator").isEmpty();
          assertThat(server.client().services().inNamespace(ns).withName("rdzv-two-nodes").get()).isNotNull();
        });
      }
    }
  }
}
