package dev.finetune.operator;

import dev.finetune.api.FineTuneJob;
import dev.finetune.operator.config.OperatorConfig;
import dev.finetune.operator.metrics.OperatorMetrics;
import dev.finetune.operator.reconciler.FineTuneJobReconciler;
import dev.finetune.operator.resources.JobSet;
import io.fabric8.kubernetes.api.model.APIResourceList;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
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
    FineTuneJobReconciler reconciler = new FineTuneJobReconciler(config, client, metrics, usesJobSets(client, config));
    operator.register(reconciler, c -> {
      if (config.watchAllNamespaces()) {
        c.watchingAllNamespaces();
      } else {
        c.settingNamespaces(config.watchNamespaces());
      }
    });
    return new FineTuneOperator(operator, metrics, config);
  }

  /**
   * Whether jobs with several nodes run as JobSets: as FINETUNE_JOBSET says, or (auto) when the cluster serves
   * jobset.x-k8s.io/v1alpha2 JobSets now. A JobSet controller installed later takes an operator restart.
   */
  static boolean usesJobSets(KubernetesClient client, OperatorConfig config) {
    boolean served = config.jobSet() != OperatorConfig.JobSetUse.NEVER && servesJobSets(client);
    if (config.jobSet() == OperatorConfig.JobSetUse.ALWAYS && !served) {
      throw new IllegalStateException("FINETUNE_JOBSET is true, but the cluster serves no " + JobSet.GROUP + "/"
          + JobSet.VERSION + " JobSets: install JobSet (https://jobset.sigs.k8s.io), or set FINETUNE_JOBSET to auto"
          + " or false");
    }
    LOG.info("msg=\"jobs with several nodes\" runAs={}", served ? "JobSet" : "Jobs");
    return served;
  }

  /** Whether the API server lists jobsets in jobset.x-k8s.io/v1alpha2 (the JobSet CRD is installed). */
  public static boolean servesJobSets(KubernetesClient client) {
    try {
      APIResourceList served = client.getApiResources(JobSet.GROUP + "/" + JobSet.VERSION);
      return served != null && served.getResources() != null
          && served.getResources().stream().anyMatch(r -> "jobsets".equals(r.getName()));
    } catch (KubernetesClientException e) {
      if (e.getCode() == 404) {
        return false;
      }
      throw e;
    }
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
