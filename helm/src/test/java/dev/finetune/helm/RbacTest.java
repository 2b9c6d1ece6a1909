package dev.finetune.helm;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import dev.finetune.api.FineTuneJob;
import dev.finetune.api.FineTuneJobStatus;
import dev.finetune.api.FineTuneJobs;
import dev.finetune.api.ResourcesSpec;
import dev.finetune.api.testing.RealKubeApiServer;
import dev.finetune.api.testing.Repo;
import dev.finetune.operator.FineTuneOperator;
import dev.finetune.operator.config.OperatorConfig;
import com.marcnuri.helm.DryRun;
import com.marcnuri.helm.Helm;
import com.marcnuri.helm.Release;
import io.fabric8.kubernetes.api.model.NamespaceBuilder;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The chart's RBAC is enough and no more: the operator runs with the token of the chart's ServiceAccount
 * against a real kube-apiserver, reconciles a FineTuneJob, and is refused what the rules do not grant.
 */
class RbacTest {
  private static RealKubeApiServer server;

  @BeforeAll
  static void start() {
    server = RealKubeApiServer.start(false);
    server.installCrd();
  }

  @AfterAll
  static void stop() {
    if (server != null) {
      server.close();
    }
  }

  /** Helm checks the chart's kubeVersion (1.29+) against the cluster: v1.34.9 passes, v1.20 is refused. */
  @Test
  void theChartInstallsOnTheSupportedVersionOnly() {
    if (server.client().namespaces().withName(Chart.NAMESPACE).get() == null) {
      server.client().namespaces().resource(new NamespaceBuilder().withNewMetadata().withName(Chart.NAMESPACE).endMetadata().build()).create();
    }
    Release release = new Helm(Chart.DIR).install().withName("version-check").withNamespace(Chart.NAMESPACE)
        .withKubeConfig(server.kubeconfig()).withDryRunOption(DryRun.SERVER).call();
    assertThat(release.getStatus()).isEqualTo("pending-install");
    // Without a cluster, helm-java's Helm assumes Kubernetes v1.20.
    assertThatThrownBy(() -> new Helm(Chart.DIR).template().withName("version-check").call())
        .hasMessageContaining("chart requires kubeVersion: >=1.29.0-0 which is incompatible with Kubernetes v1.20");
  }

  /** all: the ClusterRole; one: watchNamespaces=[that namespace], Roles there. */
  @ParameterizedTest
  @ValueSource(strings = {"all", "one"})
  void theOperatorWorksWithTheChartsRulesAndNoMore(String scope) throws Exception {
    String ns = "ml-" + scope;
    String release = "ft-" + scope;
    server.client().namespaces().resource(new NamespaceBuilder().withNewMetadata().withName(ns).endMetadata().build()).create();
    Map<String, String> values = new HashMap<>();
    if (scope.equals("one")) {
      values.put("watchNamespaces[0]", ns);
    }
    String saName = ChartInstall.installRbac(server, release, values);

    try (KubernetesClient asOperator = ChartInstall.clientFor(server, saName)) {
      OperatorConfig config = OperatorConfig.fromEnv(Map.of(
          "FINETUNE_WATCH_NAMESPACES", scope.equals("one") ? ns : "",
          "FINETUNE_LEADER_ELECTION_NAMESPACE", Chart.NAMESPACE,
          "FINETUNE_LEADER_ELECTION_LEASE", release + "-leader",
          "FINETUNE_METRICS_PORT", "0"));
      try (FineTuneOperator operator = FineTuneOperator.create(asOperator, config, new SimpleMeterRegistry()).start()) {
        FineTuneJob job = FineTuneJobs.read(Repo.examples().resolve("small-cpu.yaml"));
        job.getMetadata().setNamespace(ns);
        server.client().resource(job).create();
        // on two nodes: a second Job (the workers') and the rendezvous Service
        server.client().resource(twoNodes(ns)).create();
        await().atMost(Duration.ofSeconds(60)).untilAsserted(() -> {
          for (String name : List.of("small-cpu", "two-nodes")) {
            FineTuneJob current = server.client().resources(FineTuneJob.class).inNamespace(ns).withName(name).get();
            assertThat(current.getStatus()).isNotNull();
            assertThat(current.getStatus().phase).isEqualTo(FineTuneJobStatus.Phase.Pending);
          }
          assertThat(server.client().batch().v1().jobs().inNamespace(ns).list().getItems()).extracting(j -> j.getMetadata().getName())
              .containsExactlyInAnyOrder("small-cpu-train", "two-nodes-train", "two-nodes-workers");
          assertThat(server.client().services().inNamespace(ns).list().getItems()).extracting(j -> j.getMetadata().getName())
              .containsExactly("rdzv-two-nodes");
          assertThat(server.client().persistentVolumeClaims().inNamespace(ns).list().getItems()).hasSize(2);
          assertThat(server.client().configMaps().inNamespace(ns).withLabel("app.kubernetes.io/managed-by", "finetune-operator").list().getItems()).hasSize(2);
        });
        // It holds the Lease and can renew it (a leader that cannot renew stops reconciling).
        await().atMost(Duration.ofSeconds(30)).untilAsserted(() -> {
          var lease = server.client().leases().inNamespace(Chart.NAMESPACE).withName(release + "-leader").get();
          assertThat(lease.getSpec().getHolderIdentity()).isEqualTo(config.identity());
          assertThat(lease.getSpec().getRenewTime()).isAfter(lease.getSpec().getAcquireTime());
        });
      }
      // What the rules do not grant is refused.
      assertForbidden(() -> asOperator.secrets().inNamespace(ns).list());
      assertForbidden(() -> asOperator.batch().v1().jobs().inNamespace(ns).withName("small-cpu").delete());
      assertForbidden(() -> asOperator.services().inNamespace(ns).withName("rdzv-two-nodes").delete());
      assertForbidden(() -> asOperator.apps().deployments().inNamespace(ns).list());
      assertForbidden(() -> asOperator.leases().inNamespace(ns).list());
      if (scope.equals("one")) {
        assertForbidden(() -> asOperator.resources(FineTuneJob.class).inNamespace("default").list());
      }
    }
  }

  /** The small CPU example on two nodes, as "two-nodes" in this namespace. */
  static FineTuneJob twoNodes(String ns) throws java.io.IOException {
    FineTuneJob twoNodes = FineTuneJobs.read(Repo.examples().resolve("small-cpu.yaml"));
    twoNodes.getMetadata().setNamespace(ns);
    twoNodes.getMetadata().setName("two-nodes");
    if (twoNodes.getSpec().resources == null) {
      twoNodes.getSpec().resources = new ResourcesSpec();
    }
    twoNodes.getSpec().resources.nodes = 2;
    return twoNodes;
  }

  private static void assertForbidden(Runnable request) {
    assertThatThrownBy(request::run).isInstanceOfSatisfying(KubernetesClientException.class,
        e -> assertThat(e.getCode()).isEqualTo(403));
  }
}
