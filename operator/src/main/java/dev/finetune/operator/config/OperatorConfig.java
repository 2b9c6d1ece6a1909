package dev.finetune.operator.config;

import dev.finetune.api.trainer.TrainerContract;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Properties;
import java.util.Set;
import java.util.function.Function;

/**
 * The operator's configuration, read from environment variables (the Helm chart sets them). Every variable
 * is optional; the default is in brackets.
 *
 * <ul>
 *   <li>{@code FINETUNE_WATCH_NAMESPACES}: comma-separated namespaces to watch [empty: all namespaces]</li>
 *   <li>{@code FINETUNE_TRAINER_IMAGE}: trainer image (the CUDA build) of a job that names none and asks for GPUs
 *       (spec.resources.gpus > 0) [ghcr.io/finetune-dev/finetune-trainer:VERSION-cuda]</li>
 *   <li>{@code FINETUNE_TRAINER_CPU_IMAGE}: trainer image (the CPU build) of a job that names none and asks for no
 *       GPUs [ghcr.io/finetune-dev/finetune-trainer:VERSION]; VERSION is the project's ({@link #VERSION})</li>
 *   <li>{@code FINETUNE_TRAINER_IMAGE_PULL_SECRETS}: comma-separated Secrets (in each job's namespace) trainer Pods
 *       pull their image with [empty: none]</li>
 *   <li>{@code FINETUNE_TRAINER_CPU}: CPU request and limit when a job names none [{@value #DEFAULT_CPU}]</li>
 *   <li>{@code FINETUNE_TRAINER_MEMORY}: memory request and limit when a job names none [{@value #DEFAULT_MEMORY}]</li>
 *   <li>{@code FINETUNE_TRAINER_JVM_OPTS}: JVM flags of the trainer, space-separated [{@value #DEFAULT_JVM_OPTS}]</li>
 *   <li>{@code FINETUNE_TRAINER_PORT}: the trainer's HTTP port (/metrics, /progress, /healthz) [9090]</li>
 *   <li>{@code FINETUNE_TRAINER_UID}: non-root user and group id the trainer runs as [1000]</li>
 *   <li>{@code FINETUNE_HUB_CACHE_CLAIM}: PersistentVolumeClaim (in each job's namespace) mounted at /hub-cache as the
 *       shared HuggingFace hub cache of jobs that download from the hub and name no spec.model.cacheClaim [empty:
 *       none, each job downloads into its run folder]</li>
 *   <li>{@code FINETUNE_HUB_ENDPOINT}: the hub's address for trainer Pods (HF_ENDPOINT), e.g. a mirror [empty: the
 *       trainer's default, https://huggingface.co]</li>
 *   <li>{@code FINETUNE_HUB_HTTPS_PROXY}, {@code FINETUNE_HUB_HTTP_PROXY}, {@code FINETUNE_HUB_NO_PROXY}: HTTPS_PROXY,
 *       HTTP_PROXY and NO_PROXY of trainer Pods (the operator's own connections do not use them) [empty: none]</li>
 *   <li>{@code FINETUNE_PROGRESS_INTERVAL_SECONDS}: how often a running trainer's /progress is polled [15]</li>
 *   <li>{@code FINETUNE_PROGRESS_TIMEOUT_SECONDS}: timeout of one /progress request [3]</li>
 *   <li>{@code FINETUNE_METRICS_PORT}: port of /metrics, /healthz and /readyz; 0 turns the server off [8080]</li>
 *   <li>{@code FINETUNE_LEADER_ELECTION}: true or false [true]</li>
 *   <li>{@code FINETUNE_LEADER_ELECTION_NAMESPACE}: namespace of the Lease [POD_NAMESPACE, else the client's namespace]</li>
 *   <li>{@code FINETUNE_LEADER_ELECTION_LEASE}: name of the Lease [finetune-operator-leader]</li>
 *   <li>{@code FINETUNE_RECONCILE_THREADS}: concurrent reconciliations [10]</li>
 *   <li>{@code FINETUNE_SERVER_SIDE_APPLY}: patch status with server-side apply [true]</li>
 *   <li>{@code FINETUNE_JOBSET}: how a job with several nodes (spec.resources.nodes > 1) runs: {@code true} as one
 *       JobSet (jobset.x-k8s.io/v1alpha2, which Kueue admits as one workload and whose controller restarts all nodes
 *       together), {@code false} as two Jobs (the leader's and the workers' Indexed Job), {@code auto} as a JobSet when
 *       the cluster serves JobSets at the operator's start [auto]</li>
 *   <li>{@code FINETUNE_LOG_FORMAT}: json or text [json]</li>
 *   <li>{@code FINETUNE_LOG_LEVEL}: root log level (ERROR, WARN, INFO, DEBUG) [INFO]</li>
 *   <li>{@code POD_NAME}, {@code POD_NAMESPACE}: from the downward API; the leader-election identity and Lease namespace</li>
 * </ul>
 */
public record OperatorConfig(
    Set<String> watchNamespaces,
    String trainerImage,
    String trainerCpuImage,
    List<String> imagePullSecrets,
    String trainerCpu,
    String trainerMemory,
    String jvmOpts,
    int trainerPort,
    long trainerUid,
    Hub hub,
    Duration progressInterval,
    Duration progressTimeout,
    int metricsPort,
    boolean leaderElection,
    String leaseNamespace,
    String leaseName,
    String identity,
    int reconcileThreads,
    boolean serverSideApply,
    JobSetUse jobSet,
    String logFormat,
    String logLevel) {

  /** The project's version, from the pom (filtered into finetune-operator.properties): the default images' tag. */
  public static final String VERSION = projectVersion();
  public static final String DEFAULT_REPOSITORY = "ghcr.io/finetune-dev/finetune-trainer";
  /** The CPU build, for jobs without GPUs; the chart's default too (both tag the project's version). */
  public static final String DEFAULT_CPU_IMAGE = DEFAULT_REPOSITORY + ":" + VERSION;
  /** The CUDA build, for jobs with GPUs. */
  public static final String DEFAULT_IMAGE = DEFAULT_CPU_IMAGE + "-cuda";
  public static final String DEFAULT_CPU = "2";
  public static final String DEFAULT_MEMORY = "8Gi";
  public static final String DEFAULT_JVM_OPTS = "-XX:MaxRAMPercentage=75 -XX:+ExitOnOutOfMemoryError";

  /**
   * What trainer Pods need for HuggingFace hub downloads, as the chart's {@code hubCache} and {@code hub} values give
   * it; each may be null (not set).
   *
   * @param cacheClaim the default shared hub cache claim
   * @param endpoint HF_ENDPOINT
   * @param httpsProxy HTTPS_PROXY
   * @param httpProxy HTTP_PROXY
   * @param noProxy NO_PROXY
   */
  public record Hub(String cacheClaim, String endpoint, String httpsProxy, String httpProxy, String noProxy) {
    private static final String CLAIM_NAME = "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";

    public Hub {
      if (cacheClaim != null && (!cacheClaim.matches(CLAIM_NAME) || cacheClaim.length() > 253)) {
        throw new IllegalArgumentException("FINETUNE_HUB_CACHE_CLAIM must be a PersistentVolumeClaim name (lower-case"
            + " letters, digits, '-' and '.'), is '" + cacheClaim + "'");
      }
      if (endpoint != null && !endpoint.matches("https?://\\S+")) {
        throw new IllegalArgumentException("FINETUNE_HUB_ENDPOINT must be an http(s) URL, is '" + endpoint + "'");
      }
      withoutCredentials("FINETUNE_HUB_HTTPS_PROXY", httpsProxy);
      withoutCredentials("FINETUNE_HUB_HTTP_PROXY", httpProxy);
    }

    /** A proxy is a value in the trainer Pod's spec, not a Secret: credentials in it would be plain text there. */
    private static void withoutCredentials(String variable, String proxy) {
      if (proxy != null && proxy.matches("(?s)([a-zA-Z][a-zA-Z0-9+.-]*://)?[^/@]*@.*")) {
        throw new IllegalArgumentException(variable + " must not carry credentials (user:password@); they would be"
            + " plain text in every trainer Pod's spec");
      }
    }

    /** Nothing set: the trainer's own defaults. */
    public static Hub none() {
      return new Hub(null, null, null, null, null);
    }
  }

  /** Whether a job with several nodes runs as a JobSet ({@code FINETUNE_JOBSET}). */
  public enum JobSetUse {
    /** When the cluster serves jobset.x-k8s.io/v1alpha2 JobSets at the operator's start. */
    AUTO,
    /** Always: the operator does not start where the cluster has no JobSets. */
    ALWAYS,
    /** Never: the leader's Job and the workers' Indexed Job. */
    NEVER;

    static JobSetUse parse(String value) {
      if (value == null || value.equalsIgnoreCase("auto")) {
        return AUTO;
      }
      if (value.equalsIgnoreCase("true") || value.equalsIgnoreCase("false")) {
        return Boolean.parseBoolean(value) ? ALWAYS : NEVER;
      }
      throw new IllegalArgumentException("FINETUNE_JOBSET must be auto, true or false, is '" + value + "'");
    }
  }

  public OperatorConfig {
    Objects.requireNonNull(jobSet, "jobSet");
    watchNamespaces = Set.copyOf(watchNamespaces);
    Objects.requireNonNull(trainerImage, "trainerImage");
    Objects.requireNonNull(trainerCpuImage, "trainerCpuImage");
    imagePullSecrets = List.copyOf(imagePullSecrets);
    Objects.requireNonNull(hub, "hub");
    if (progressInterval.isNegative() || progressInterval.isZero()) {
      throw new IllegalArgumentException("FINETUNE_PROGRESS_INTERVAL_SECONDS must be at least 1");
    }
    if (trainerPort < 1 || trainerPort > 65535) {
      throw new IllegalArgumentException("FINETUNE_TRAINER_PORT must be 1..65535, is " + trainerPort);
    }
  }

  /** Defaults only: what an empty environment gives. */
  public static OperatorConfig defaults() {
    return fromEnv(Map.of());
  }

  public static OperatorConfig fromEnv() {
    return fromEnv(System.getenv());
  }

  public static OperatorConfig fromEnv(Map<String, String> env) {
    Function<String, String> get = k -> {
      String v = env.get(k);
      return v == null || v.isBlank() ? null : v.trim();
    };
    Set<String> namespaces = Set.copyOf(list(get.apply("FINETUNE_WATCH_NAMESPACES")));
    return new OperatorConfig(
        namespaces,
        or(get.apply("FINETUNE_TRAINER_IMAGE"), DEFAULT_IMAGE),
        or(get.apply("FINETUNE_TRAINER_CPU_IMAGE"), DEFAULT_CPU_IMAGE),
        list(get.apply("FINETUNE_TRAINER_IMAGE_PULL_SECRETS")),
        or(get.apply("FINETUNE_TRAINER_CPU"), DEFAULT_CPU),
        or(get.apply("FINETUNE_TRAINER_MEMORY"), DEFAULT_MEMORY),
        or(get.apply("FINETUNE_TRAINER_JVM_OPTS"), DEFAULT_JVM_OPTS),
        integer(get, "FINETUNE_TRAINER_PORT", TrainerContract.DEFAULT_PORT),
        integer(get, "FINETUNE_TRAINER_UID", 1000),
        new Hub(get.apply("FINETUNE_HUB_CACHE_CLAIM"), get.apply("FINETUNE_HUB_ENDPOINT"),
            get.apply("FINETUNE_HUB_HTTPS_PROXY"), get.apply("FINETUNE_HUB_HTTP_PROXY"), get.apply("FINETUNE_HUB_NO_PROXY")),
        Duration.ofSeconds(integer(get, "FINETUNE_PROGRESS_INTERVAL_SECONDS", 15)),
        Duration.ofSeconds(integer(get, "FINETUNE_PROGRESS_TIMEOUT_SECONDS", 3)),
        integer(get, "FINETUNE_METRICS_PORT", 8080),
        bool(get, "FINETUNE_LEADER_ELECTION", true),
        or(get.apply("FINETUNE_LEADER_ELECTION_NAMESPACE"), get.apply("POD_NAMESPACE")),
        or(get.apply("FINETUNE_LEADER_ELECTION_LEASE"), "finetune-operator-leader"),
        or(get.apply("POD_NAME"), hostName()),
        integer(get, "FINETUNE_RECONCILE_THREADS", 10),
        bool(get, "FINETUNE_SERVER_SIDE_APPLY", true),
        JobSetUse.parse(get.apply("FINETUNE_JOBSET")),
        or(get.apply("FINETUNE_LOG_FORMAT"), "json"),
        or(get.apply("FINETUNE_LOG_LEVEL"), "INFO"));
  }

  public boolean watchAllNamespaces() {
    return watchNamespaces.isEmpty();
  }

  public OperatorConfig withTrainerPort(int port) {
    return new OperatorConfig(watchNamespaces, trainerImage, trainerCpuImage, imagePullSecrets, trainerCpu,
        trainerMemory, jvmOpts, port, trainerUid,
        hub, progressInterval, progressTimeout, metricsPort, leaderElection, leaseNamespace, leaseName, identity,
        reconcileThreads, serverSideApply, jobSet, logFormat, logLevel);
  }

  public OperatorConfig withProgressInterval(Duration interval) {
    return new OperatorConfig(watchNamespaces, trainerImage, trainerCpuImage, imagePullSecrets, trainerCpu,
        trainerMemory, jvmOpts, trainerPort, trainerUid,
        hub, interval, progressTimeout, metricsPort, leaderElection, leaseNamespace, leaseName, identity,
        reconcileThreads, serverSideApply, jobSet, logFormat, logLevel);
  }

  public OperatorConfig withJobSet(JobSetUse use) {
    return new OperatorConfig(watchNamespaces, trainerImage, trainerCpuImage, imagePullSecrets, trainerCpu,
        trainerMemory, jvmOpts, trainerPort, trainerUid,
        hub, progressInterval, progressTimeout, metricsPort, leaderElection, leaseNamespace, leaseName, identity,
        reconcileThreads, serverSideApply, use, logFormat, logLevel);
  }

  /** A comma-separated list, blanks dropped; empty for null. */
  private static List<String> list(String value) {
    return value == null ? List.of()
        : Arrays.stream(value.split(",")).map(String::trim).filter(s -> !s.isEmpty()).distinct().toList();
  }

  private static String projectVersion() {
    try (var in = OperatorConfig.class.getResourceAsStream("/finetune-operator.properties")) {
      Properties p = new Properties();
      if (in != null) {
        p.load(in);
      }
      String v = p.getProperty("version", "");
      if (v.isBlank() || v.contains("${")) { // a build that skipped Maven's resource filtering
        throw new IllegalStateException("finetune-operator.properties has no project version; build with Maven");
      }
      return v;
    } catch (java.io.IOException e) {
      throw new java.io.UncheckedIOException(e);
    }
  }

  private static String or(String value, String fallback) {
    return value == null ? fallback : value;
  }

  private static int integer(Function<String, String> get, String key, int fallback) {
    String v = get.apply(key);
    if (v == null) {
      return fallback;
    }
    try {
      return Integer.parseInt(v);
    } catch (NumberFormatException e) {
      throw new IllegalArgumentException(key + " must be an integer, is '" + v + "'");
    }
  }

  private static boolean bool(Function<String, String> get, String key, boolean fallback) {
    String v = get.apply(key);
    if (v == null) {
      return fallback;
    }
    if (v.equalsIgnoreCase("true") || v.equalsIgnoreCase("false")) {
      return Boolean.parseBoolean(v);
    }
    throw new IllegalArgumentException(key + " must be true or false, is '" + v + "'");
  }

  private static String hostName() {
    String h = System.getenv("HOSTNAME");
    if (h != null && !h.isBlank()) {
      return h;
    }
    try {
      return java.net.InetAddress.getLocalHost().getHostName();
    } catch (java.io.IOException e) {
      return "finetune-operator-" + ProcessHandle.current().pid();
    }
  }
}
