package dev.finetune.operator;

import dev.finetune.api.FineTuneJob;
import dev.finetune.operator.config.OperatorConfig;
import dev.finetune.operator.metrics.OperatorMetrics;
import dev.finetune.operator.reconciler.FineTuneJobReconciler;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.javaoperatorsdk.operator.Operator;
import io.javaoperatorsdk.operator.api.config.LeaderElectionConfigurationBuilder;
import io.javaoperatorsdk.operator.monitoring.micrometer.MicrometerMetrics;
import io.micrometer.core.instrument.MeterRegistry;
import java.time.Duration;
import java.util.stream.Collectors;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The JOSDK {@link Operator} with the FineTuneJob controller registered, configured from {@link OperatorConfig}:
 * watched namespaces, leader election (a Lease), reconcile threads, Micrometer metrics and whether the primary's
 * status is patched with server-side apply. Used by {@link OperatorMain} and by the tests.
 */
public final class FineTuneOperator implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(FineTuneOperator.class);
  private final Operator operator;
  private final OperatorMetrics metrics;
  private final OperatorConfig config;

  private FineTuneOperator(Operator operator, OperatorMetrics metrics, OperatorConfig config) {
    this.operator = operator;
    this.metrics = metrics;
    this.config = config;
  }

  public static FineTuneOperator create(KubernetesClient client, OperatorConfig config, MeterRegistry registry) {
    OperatorMetrics metrics = new OperatorMetrics(registry);
    Operator operator = new Operator(o -> {
      o.withKubernetesClient(client)
          .withCloseClientOnStop(false)
          .withMetrics(MicrometerMetrics.withoutPerResourceMetrics(registry))
          .withConcurrentReconciliationThreads(config.reconcileThreads())
          .withUseSSAToPatchPrimaryResource(config.serverSideApply())
          .withSSABasedCreateUpdateMatchForDependentResources(config.serverSideApply())
          .withStopOnInformerErrorDuringStartup(true)
          .withCacheSyncTimeout(Duration.ofMinutes(2))
          .withReconciliationTerminationTimeout(Duration.ofSeconds(20));
      if (config.leaderElection()) {
        String ns = config.leaseNamespace() != null ? config.leaseNamespace()
            : client.getNamespace() != null ? client.getNamespace() : "default";
        o.withLeaderElectionConfiguration(LeaderElectionConfigurationBuilder
            .aLeaderElectionConfiguration(config.leaseName())
            .withLeaseNamespace(ns)
            .withIdentity(config.identity())
            .withExitOnStopLeading(false)
            .build());
      }
    });
    FineTuneJobReconciler reconciler = new FineTuneJobReconciler(config, client, metrics);
    operator.register(reconciler, c -> {
      if (config.watchAllNamespaces()) {
        c.watchingAllNamespaces();
      } else {
        c.settingNamespaces(config.watchNamespaces());
      }
    });
    return new FineTuneOperator(operator, metrics, config);
  }

  public FineTuneOperator start() {
    LOG.info("msg=\"starting operator\" namespaces={} leaderElection={} trainerImage={} trainerCpuImage={}"
        + " progressInterval={}s",
        config.watchAllNamespaces() ? "all" : config.watchNamespaces().stream().sorted().collect(Collectors.joining(",")),
        config.leaderElection(), config.trainerImage(), config.trainerCpuImage(), config.progressInterval().toSeconds());
    operator.start();
    return this;
  }

  public boolean isStarted() {
    return operator.getRuntimeInfo().isStarted();
  }

  public boolean isReady() {
    return operator.getRuntimeInfo().isStarted() && operator.getRuntimeInfo().allEventSourcesAreHealthy();
  }

  public String health() {
    return operator.getRuntimeInfo().isStarted()
        ? "unhealthy event sources: " + operator.getRuntimeInfo().unhealthyEventSources().keySet()
        : "operator not started";
  }

  public Operator operator() {
    return operator;
  }

  public OperatorMetrics metrics() {
    return metrics;
  }

  public static Class<FineTuneJob> primary() {
    return FineTuneJob.class;
  }

  @Override
  public void close() {
    LOG.info("msg=\"stopping operator\"");
    operator.stop();
  }
}
