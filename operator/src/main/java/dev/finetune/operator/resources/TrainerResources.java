package dev.finetune.operator.resources;

import dev.finetune.api.CheckpointSpec;
import dev.finetune.api.DatasetSpec;
import dev.finetune.api.EvaluationSpec;
import dev.finetune.api.FineTuneJob;
import dev.finetune.api.FineTuneJobSpec;
import dev.finetune.api.FineTuneJobs;
import dev.finetune.api.ModelSpec;
import dev.finetune.api.ResourcesSpec;
import dev.finetune.api.ScratchModelSpec;
import dev.finetune.api.trainer.TrainerContract;
import dev.finetune.operator.config.OperatorConfig;
import io.fabric8.kubernetes.api.model.ConfigMap;
import io.fabric8.kubernetes.api.model.ConfigMapBuilder;
import io.fabric8.kubernetes.api.model.Container;
import io.fabric8.kubernetes.api.model.ContainerBuilder;
import io.fabric8.kubernetes.api.model.ContainerPort;
import io.fabric8.kubernetes.api.model.ContainerPortBuilder;
import io.fabric8.kubernetes.api.model.EnvVar;
import io.fabric8.kubernetes.api.model.EnvVarBuilder;
import io.fabric8.kubernetes.api.model.LocalObjectReference;
import io.fabric8.kubernetes.api.model.ObjectMeta;
import io.fabric8.kubernetes.api.model.ObjectMetaBuilder;
import io.fabric8.kubernetes.api.model.OwnerReference;
import io.fabric8.kubernetes.api.model.OwnerReferenceBuilder;
import io.fabric8.kubernetes.api.model.PersistentVolumeClaim;
import io.fabric8.kubernetes.api.model.PersistentVolumeClaimBuilder;
import io.fabric8.kubernetes.api.model.PodSecurityContextBuilder;
import io.fabric8.kubernetes.api.model.Quantity;
import io.fabric8.kubernetes.api.model.SecurityContextBuilder;
import io.fabric8.kubernetes.api.model.Service;
import io.fabric8.kubernetes.api.model.ServiceBuilder;
import io.fabric8.kubernetes.api.model.Volume;
import io.fabric8.kubernetes.api.model.VolumeBuilder;
import io.fabric8.kubernetes.api.model.VolumeMount;
import io.fabric8.kubernetes.api.model.VolumeMountBuilder;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.api.model.batch.v1.JobBuilder;
import io.fabric8.kubernetes.api.model.batch.v1.JobSpec;
import io.fabric8.kubernetes.api.model.batch.v1.JobTemplateSpec;
import io.fabric8.kubernetes.api.model.batch.v1.PodFailurePolicyRule;
import io.fabric8.kubernetes.api.model.batch.v1.PodFailurePolicyRuleBuilder;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Builds the objects a FineTuneJob owns: the checkpoint claim, the ConfigMap with the job file and the
 * batch/v1 Job with one trainer Pod; with several nodes, also the workers' Indexed Job and the rendezvous Service, or
 * both Jobs as one JobSet and the Service. Pure functions of the FineTuneJob and the operator's configuration.
 */
public final class TrainerResources {
  public static final String TERMINATION_MESSAGE_PATH = TrainerContract.DEFAULT_TERMINATION_LOG;
  static final String VOLUME_WORKSPACE = "workspace";
  static final String VOLUME_SPEC = "job-spec";
  static final String VOLUME_SCRATCH = "scratch";
  static final String VOLUME_MODEL = "model";
  static final String VOLUME_DATA = "data";
  static final String VOLUME_DATA_CONFIGMAP = "dataset-configmap";
  static final String VOLUME_HUB_CACHE = "hub-cache";
  static final String RENDEZVOUS_PORT_NAME = "rendezvous";

  private final OperatorConfig config;

  public TrainerResources(OperatorConfig config) {
    this.config = config;
  }

  /** Labels of every owned object; the spec's labels first so ours win. */
  public static Map<String, String> labels(FineTuneJob ftj) {
    Map<String, String> labels = new LinkedHashMap<>();
    if (ftj.getSpec().labels != null) {
      labels.putAll(ftj.getSpec().labels);
    }
    labels.put(Names.NAME_LABEL, "finetune-trainer");
    labels.put(Names.MANAGED_BY_LABEL, Names.MANAGED_BY);
    labels.put(Names.JOB_LABEL, ftj.getMetadata().getName());
    return labels;
  }

  public static OwnerReference ownerReference(FineTuneJob ftj) {
    return new OwnerReferenceBuilder()
        .withApiVersion(FineTuneJob.API_VERSION)
        .withKind("FineTuneJob")
        .withName(ftj.getMetadata().getName())
        .withUid(ftj.getMetadata().getUid())
        .withController(true)
        .withBlockOwnerDeletion(true)
        .build();
  }

  private static ObjectMeta meta(FineTuneJob ftj, String name, boolean owned) {
    ObjectMetaBuilder b = new ObjectMetaBuilder()
        .withName(name)
        .withNamespace(ftj.getMetadata().getNamespace())
        .withLabels(labels(ftj));
    if (owned) {
      b.withOwnerReferences(ownerReference(ftj));
    }
    return b.build();
  }

  /**
   * The checkpoint claim. Kept when the job is deleted (no owner reference; labelled for the job, so a new job of the
   * same name adopts it) unless spec.checkpoints.retainClaim is false: then owned, and deleted with the job by the
   * garbage collector.
   */
  public PersistentVolumeClaim claim(FineTuneJob ftj) {
    var cp = ftj.getSpec().checkpoints;
    boolean retain = Names.retainsClaim(ftj);
    String size = cp == null ? new CheckpointSpec().size : cp.size;
    return new PersistentVolumeClaimBuilder()
        .withMetadata(meta(ftj, Names.claim(ftj), !retain))
        .withNewSpec()
        .withAccessModes("ReadWriteOnce")
        .withStorageClassName(cp == null ? null : blankToNull(cp.storageClassName))
        .withNewResources().addToRequests("storage", new Quantity(size)).endResources()
        .endSpec()
        .build();
  }

  /** The FineTuneJob as the trainer reads it, under {@link TrainerContract#SPEC_KEY}. */
  public ConfigMap specConfigMap(FineTuneJob ftj) {
    return new ConfigMapBuilder()
        .withMetadata(meta(ftj, Names.configMap(ftj), true))
        .addToData(TrainerContract.SPEC_KEY, specFile(ftj))
        .build();
  }

  /** apiVersion, kind, name, namespace and spec: what the trainer's parser accepts, without server fields. */
  public static String specFile(FineTuneJob ftj) {
    FineTuneJob clean = new FineTuneJob();
    clean.setMetadata(new ObjectMetaBuilder()
        .withName(ftj.getMetadata().getName())
        .withNamespace(ftj.getMetadata().getNamespace())
        .build());
    clean.setSpec(ftj.getSpec());
    clean.setStatus(null);
    return FineTuneJobs.toYaml(clean);
  }

  public List<String> command(FineTuneJob ftj) {
    List<String> cmd = new ArrayList<>();
    cmd.add("java");
    Arrays.stream(config.jvmOpts().trim().split("\\s+")).filter(s -> !s.isEmpty()).forEach(cmd::add);
    cmd.add("-Djava.io.tmpdir=" + TrainerContract.SCRATCH);
    cmd.add("-jar");
    cmd.add(TrainerContract.TRAINER_JAR);
    cmd.add(TrainerContract.SPEC_FILE);
    cmd.add("--output");
    cmd.add(TrainerContract.WORKSPACE + "/" + Names.runDir(ftj));
    if (Names.nodes(ftj) * Names.ranksPerNode(ftj) > 1) { // data-parallel: one rank per GPU, as torchrun --nproc-per-node
      cmd.add("--nproc-per-node");
      cmd.add(Integer.toString(Names.ranksPerNode(ftj)));
    }
    return cmd;
  }

  /** The training Job: the one trainer Pod, or a multi-node job's leader (node 0: the checkpoint volume, /progress). */
  public Job job(FineTuneJob ftj) {
    return job(ftj, false);
  }

  /**
   * A multi-node job's other nodes: an Indexed Job of nodes - 1 Pods, node rank = completion index + 1, each with an
   * emptyDir in place of the checkpoint volume (rank 0 alone writes the run folder, and sends the checkpoint it resumes
   * from to the others), so no ReadWriteMany volume is needed. A rank that fails makes every other rank's next
   * collective fail, so one failure costs each Pod an attempt: the back-off limit is the leader's times the Pods.
   */
  public Job workersJob(FineTuneJob ftj) {
    return job(ftj, true);
  }

  /** The headless Service whose name resolves to the leader Pod: the workers' rendezvous address. */
  public Service rendezvousService(FineTuneJob ftj) {
    Map<String, String> selector = new LinkedHashMap<>();
    selector.put(Names.JOB_LABEL, ftj.getMetadata().getName());
    selector.put(Names.ROLE_LABEL, Names.LEADER);
    return new ServiceBuilder()
        .withMetadata(meta(ftj, Names.rendezvous(ftj), true))
        .withNewSpec()
        .withClusterIP("None")
        .withSelector(selector)
        .withPublishNotReadyAddresses(true) // the rendezvous starts before any readiness
        .addNewPort().withName(RENDEZVOUS_PORT_NAME).withPort(TrainerContract.RENDEZVOUS_PORT).withProtocol("TCP").endPort()
        .endSpec()
        .build();
  }

  private Job job(FineTuneJob ftj, boolean workers) {
    FineTuneJobSpec spec = ftj.getSpec();
    int nodes = Names.nodes(ftj);
    int port = config.trainerPort();
    Map<String, String> podLabels = labels(ftj);
    podLabels.put(Names.COMPONENT_LABEL, "trainer");
    Map<String, String> podAnnotations = new LinkedHashMap<>();
    if (!workers) { // only rank 0 serves /metrics and /progress
      podLabels.put(Names.METRICS_LABEL, "true");
      podAnnotations.put("prometheus.io/scrape", "true");
      podAnnotations.put("prometheus.io/port", Integer.toString(port));
      podAnnotations.put("prometheus.io/path", TrainerContract.METRICS_PATH);
    }
    if (nodes > 1) {
      podLabels.put(Names.ROLE_LABEL, workers ? Names.WORKER : Names.LEADER);
    }
    podAnnotations.put("kubectl.kubernetes.io/default-container", Names.CONTAINER);

    ObjectMeta meta = runMeta(ftj, workers ? Names.workersJob(ftj) : Names.job(ftj));
    int pods = workers ? nodes - 1 : 1;
    Integer backoffLimit = spec.backoffLimit == null || !workers ? spec.backoffLimit : spec.backoffLimit * pods;

    return new JobBuilder()
        .withMetadata(meta)
        .withNewSpec()
        .withCompletionMode(workers ? "Indexed" : null)
        .withParallelism(pods)
        .withCompletions(pods)
        .withBackoffLimit(backoffLimit)
        .withActiveDeadlineSeconds(spec.activeDeadlineSeconds)
        // no ttlSecondsAfterFinished yet: the operator sets it once it has recorded the Job's end
        .withSuspend(Boolean.TRUE.equals(spec.suspend))
        .withNewPodFailurePolicy()
        .withRules(podFailureRules())
        .endPodFailurePolicy()
        .withNewTemplate()
        .withNewMetadata().withLabels(podLabels).withAnnotations(podAnnotations).endMetadata()
        .withNewSpec()
        .withRestartPolicy("Never")
        .withTerminationGracePeriodSeconds(terminationGracePeriodSeconds(spec.model))
        .withServiceAccountName(blankToNull(spec.serviceAccountName))
        .withAutomountServiceAccountToken(false)
        .withPriorityClassName(blankToNull(spec.priorityClassName))
        .withNodeSelector(spec.nodeSelector == null || spec.nodeSelector.isEmpty() ? null : spec.nodeSelector)
        .withTolerations(spec.tolerations == null || spec.tolerations.isEmpty() ? null : spec.tolerations)
        .withAffinity(spec.affinity)
        .withSecurityContext(new PodSecurityContextBuilder()
            .withRunAsNonRoot(true)
            .withRunAsUser(config.trainerUid())
            .withRunAsGroup(config.trainerUid())
            .withFsGroup(config.trainerUid())
            // a shared hub cache grows large: set its group once, not at every Pod's start (kubelet's recursive chown)
            .withFsGroupChangePolicy(hubCacheClaim(ftj) == null ? null : "OnRootMismatch")
            .withNewSeccompProfile().withType("RuntimeDefault").endSeccompProfile()
            .build())
        // the chart's imagePullSecrets: Secrets of those names in the job's namespace (Secrets are namespaced)
        .withImagePullSecrets(config.imagePullSecrets().isEmpty() ? null
            : config.imagePullSecrets().stream().map(LocalObjectReference::new).toList())
        .withContainers(container(ftj, workers))
        .withVolumes(volumes(ftj, workers))
        .endSpec()
        .endTemplate()
        .endSpec()
        .build();
  }

  /**
   * A multi-node job as one JobSet, for clusters with the JobSet controller: the leader's Job and the workers' Indexed
   * Job become its two replicated Jobs ({@link Names#LEADER}, {@link Names#WORKERS}). Kueue admits and suspends a
   * JobSet as one workload, and the JobSet controller recreates both Jobs when one fails, up to spec.backoffLimit
   * times (a lone rank cannot go on, so each Job fails at its first failed Pod); bad input (the Pods' FailJob rule)
   * and the deadline fail it at once. The workers find rank 0 through the rendezvous Service, as without JobSet, so the
   * JobSet's own DNS names are off.
   */
  public JobSet jobSet(FineTuneJob ftj) {
    FineTuneJobSpec spec = ftj.getSpec();
    JobSet set = new JobSet();
    set.setMetadata(runMeta(ftj, Names.job(ftj)));
    JobSet.Spec s = set.getSpec();
    s.replicatedJobs = List.of(replicated(Names.LEADER, job(ftj, false)), replicated(Names.WORKERS, job(ftj, true)));
    s.network = new JobSet.Network();
    s.network.enableDNSHostnames = false;
    s.successPolicy = new JobSet.SuccessPolicy();
    s.successPolicy.operator = "All";
    s.failurePolicy = new JobSet.FailurePolicy();
    s.failurePolicy.maxRestarts = spec.backoffLimit == null ? DEFAULT_BACKOFF_LIMIT : spec.backoffLimit;
    s.failurePolicy.rules = List.of(new JobSet.FailurePolicyRule("BadInputOrDeadline", "FailJobSet",
        List.of("PodFailurePolicy", "DeadlineExceeded")));
    s.suspend = Boolean.TRUE.equals(spec.suspend);
    return set;
  }

  /** A Job's back-off limit when it names none (Kubernetes' default). */
  static final int DEFAULT_BACKOFF_LIMIT = 6;

  /** Kueue's queue label: on the JobSet, which Kueue admits as a whole, not on its Jobs. */
  static final String KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name";

  /** One of a JobSet's Jobs: the Job's labels and spec, failing at its first failed Pod; suspended with the JobSet. */
  private static JobSet.ReplicatedJob replicated(String name, Job job) {
    JobSpec spec = job.getSpec();
    spec.setBackoffLimit(0);
    spec.setSuspend(null);
    Map<String, String> labels = new LinkedHashMap<>(job.getMetadata().getLabels());
    labels.remove(KUEUE_QUEUE_LABEL);
    return new JobSet.ReplicatedJob(name, 1, new JobTemplateSpec(new ObjectMetaBuilder().withLabels(labels).build(), spec));
  }

  /**
   * The metadata of what runs the trainers (the Job, or the JobSet): the spec's hash, which tells a refused spec
   * change, and the spec.suspend the operator applied.
   */
  private static ObjectMeta runMeta(FineTuneJob ftj, String name) {
    ObjectMeta meta = meta(ftj, name, true);
    meta.setAnnotations(new LinkedHashMap<>(Map.of(
        Names.SPEC_HASH_ANNOTATION, SpecHash.of(ftj.getSpec()),
        Names.SUSPEND_ANNOTATION, Boolean.toString(Boolean.TRUE.equals(ftj.getSpec().suspend)))));
    return meta;
  }

  /** Parameters assumed for a model whose size the spec does not tell: GPT-2 XL, the largest GPT-2. */
  static final long UNKNOWN_MODEL_PARAMETERS = 1_558_000_000L;
  /** Checkpoint bytes per parameter: float32 weights and AdamW's two moments. */
  static final long CHECKPOINT_BYTES_PER_PARAMETER = 12;
  /** A slow network volume; the grace period allows twice the time a checkpoint takes at this rate. */
  static final long SLOW_VOLUME_BYTES_PER_SECOND = 50L << 20;

  /**
   * How long Kubernetes waits after SIGTERM (suspend, eviction, preemption) before SIGKILL: a minute for the step in
   * progress, plus twice the time to write a checkpoint of the model (weights and AdamW's moments) to a slow volume.
   * GPT-2 (124M): about 2 minutes; GPT-2 XL or a model of unknown size: about 13 minutes.
   */
  public static long terminationGracePeriodSeconds(ModelSpec model) {
    long bytes = parameters(model) * CHECKPOINT_BYTES_PER_PARAMETER;
    return 60 + (2 * bytes + SLOW_VOLUME_BYTES_PER_SECOND - 1) / SLOW_VOLUME_BYTES_PER_SECOND;
  }

  /**
   * The model's parameters: counted for a scratch GPT-2; for a hub model from the size its name gives (gpt2,
   * gpt2-medium/large/xl, or a size such as 0.5B or 124M); else {@link #UNKNOWN_MODEL_PARAMETERS}.
   */
  static long parameters(ModelSpec model) {
    if (model != null && model.scratch != null) {
      ScratchModelSpec s = model.scratch;
      long d = s.embeddingDim == null ? 64 : s.embeddingDim;
      long layers = s.layers == null ? 2 : s.layers;
      long context = s.contextLength == null ? 256 : s.contextLength;
      // token and position embeddings, then per block: attention (4 d x d) and MLP (8 d x d) with biases, 2 norms
      return (257 + context) * d + layers * (12 * d * d + 13 * d) + 2 * d;
    }
    if (model != null && model.hub != null) {
      String name = model.hub.substring(model.hub.indexOf('/') + 1).toLowerCase(Locale.ROOT);
      Matcher size = Pattern.compile("(?<![a-z0-9.])(\\d+(?:\\.\\d+)?)([mb])(?![a-z])").matcher(name);
      if (size.find()) {
        return (long) (Double.parseDouble(size.group(1)) * (size.group(2).equals("b") ? 1e9 : 1e6));
      }
      switch (name) {
        case "gpt2", "distilgpt2":
          return 124_000_000L;
        case "gpt2-medium":
          return 355_000_000L;
        case "gpt2-large":
          return 774_000_000L;
        default:
          return UNKNOWN_MODEL_PARAMETERS;
      }
    }
    return UNKNOWN_MODEL_PARAMETERS;
  }

  /** FailJob on the trainer's "bad job" exit codes; evictions and preemptions do not count as failures. */
  static List<PodFailurePolicyRule> podFailureRules() {
    List<Integer> codes = Arrays.stream(TrainerContract.ExitCodes.DO_NOT_RETRY).boxed().toList();
    return List.of(
        new PodFailurePolicyRuleBuilder()
            .withAction("FailJob")
            .withNewOnExitCodes().withContainerName(Names.CONTAINER).withOperator("In").withValues(codes).endOnExitCodes()
            .build(),
        new PodFailurePolicyRuleBuilder()
            .withAction("Ignore")
            .addNewOnPodCondition().withType("DisruptionTarget").withStatus("True").endOnPodCondition()
            .build());
  }

  private Container container(FineTuneJob ftj, boolean worker) {
    FineTuneJobSpec spec = ftj.getSpec();
    ResourcesSpec res = spec.resources == null ? new ResourcesSpec() : spec.resources;
    Map<String, Quantity> amounts = new LinkedHashMap<>();
    amounts.put("cpu", new Quantity(res.cpu == null || res.cpu.isBlank() ? config.trainerCpu() : res.cpu));
    amounts.put("memory", new Quantity(res.memory == null || res.memory.isBlank() ? config.trainerMemory() : res.memory));
    if (res.gpus != null && res.gpus > 0) {
      amounts.put(res.gpuResource.isBlank() ? new ResourcesSpec().gpuResource : res.gpuResource,
          new Quantity(Integer.toString(res.gpus)));
    }
    return new ContainerBuilder()
        .withName(Names.CONTAINER)
        .withImage(image(ftj))
        .withImagePullPolicy(blankToNull(spec.imagePullPolicy))
        .withCommand(command(ftj))
        .withPorts(ports(ftj, worker))
        .withEnv(env(ftj, worker))
        .withNewResources().withRequests(new LinkedHashMap<>(amounts)).withLimits(new LinkedHashMap<>(amounts)).endResources()
        .withVolumeMounts(mounts(ftj))
        .withTerminationMessagePath(TERMINATION_MESSAGE_PATH)
        .withTerminationMessagePolicy("FallbackToLogsOnError")
        .withSecurityContext(new SecurityContextBuilder()
            .withRunAsNonRoot(true)
            .withRunAsUser(config.trainerUid())
            .withReadOnlyRootFilesystem(true)
            .withAllowPrivilegeEscalation(false)
            .withNewCapabilities().withDrop("ALL").endCapabilities()
            .withNewSeccompProfile().withType("RuntimeDefault").endSeccompProfile()
            .build())
        .build();
  }

  /**
   * The trainer image: spec.image, else the CUDA build for a job that asks for GPUs and the CPU build for one that
   * does not (the CUDA image is several GB and needs a GPU node's driver; a CPU job would pull it for nothing).
   */
  public String image(FineTuneJob ftj) {
    FineTuneJobSpec spec = ftj.getSpec();
    if (spec.image != null && !spec.image.isBlank()) {
      return spec.image;
    }
    Integer gpus = spec.resources == null ? null : spec.resources.gpus;
    return gpus != null && gpus > 0 ? config.trainerImage() : config.trainerCpuImage();
  }

  private List<ContainerPort> ports(FineTuneJob ftj, boolean worker) {
    List<ContainerPort> ports = new ArrayList<>();
    if (!worker) {
      ports.add(new ContainerPortBuilder().withName(Names.METRICS_PORT_NAME).withContainerPort(config.trainerPort())
          .withProtocol("TCP").build());
      if (Names.nodes(ftj) > 1) {
        ports.add(new ContainerPortBuilder().withName(RENDEZVOUS_PORT_NAME)
            .withContainerPort(TrainerContract.RENDEZVOUS_PORT).withProtocol("TCP").build());
      }
    }
    return ports;
  }

  private List<EnvVar> env(FineTuneJob ftj, boolean worker) {
    List<EnvVar> env = new ArrayList<>();
    env.add(new EnvVar("DJL_OFFLINE", "true", null));
    env.add(new EnvVar(TrainerContract.ENV_PORT, worker ? "0" : Integer.toString(config.trainerPort()), null));
    int nodes = Names.nodes(ftj);
    if (nodes > 1) { // torchrun's multi-node environment; the launcher adds each rank's own
      env.add(new EnvVar("NNODES", Integer.toString(nodes), null));
      if (worker) {
        env.add(new EnvVarBuilder().withName(TrainerContract.ENV_WORKER_INDEX).withNewValueFrom().withNewFieldRef()
            .withFieldPath("metadata.annotations['" + Names.COMPLETION_INDEX_ANNOTATION + "']")
            .endFieldRef().endValueFrom().build());
      } else {
        env.add(new EnvVar("NODE_RANK", "0", null));
      }
      // rank 0's TCPStore runs in the leader Pod: the workers find it through the headless Service
      env.add(new EnvVar("MASTER_ADDR", worker ? Names.rendezvous(ftj) : "127.0.0.1", null));
      env.add(new EnvVar("MASTER_PORT", Integer.toString(TrainerContract.RENDEZVOUS_PORT), null));
    }
    env.add(new EnvVar(TrainerContract.ENV_TERMINATION_LOG, TERMINATION_MESSAGE_PATH, null));
    if (modelClaim(ftj) != null) {
      env.add(new EnvVar(TrainerContract.ENV_MODEL_DIR, TrainerContract.MODEL_MOUNT, null));
    }
    if (dataClaim(ftj) != null) {
      env.add(new EnvVar(TrainerContract.ENV_DATA_DIR, TrainerContract.DATA_MOUNT, null));
    }
    if (dataConfigMap(ftj) != null) {
      env.add(new EnvVar(TrainerContract.ENV_DATASET_CONFIGMAP_DIR, TrainerContract.DATA_CONFIGMAP_MOUNT, null));
    }
    hubEnv(ftj, env);
    EvaluationSpec eval = ftj.getSpec().evaluation;
    if (eval != null && eval.judge != null && eval.judge.apiKeySecret != null) {
      env.add(new EnvVarBuilder().withName(TrainerContract.ENV_JUDGE_API_KEY)
          .withNewValueFrom().withNewSecretKeyRef()
          .withName(eval.judge.apiKeySecret.name).withKey(eval.judge.apiKeySecret.key).withOptional(false)
          .endSecretKeyRef().endValueFrom().build());
    }
    return env;
  }

  /**
   * HuggingFace hub downloads, in every trainer container (each node loads the model itself), under the names
   * huggingface_hub reads: HF_TOKEN from spec.model.hubTokenSecret (a secretKeyRef: the operator never reads the
   * token, so it needs no access to Secrets and the token reaches no status, Event or log of its), HF_HUB_CACHE at
   * the mounted cache claim, and the operator's hub endpoint and proxies.
   */
  private void hubEnv(FineTuneJob ftj, List<EnvVar> env) {
    ModelSpec m = ftj.getSpec().model;
    ModelSpec.HubTokenSecret token = m == null ? null : m.hubTokenSecret;
    if (token != null && token.name != null) {
      String key = token.key == null || token.key.isBlank() ? ModelSpec.HubTokenSecret.DEFAULT_KEY : token.key;
      env.add(new EnvVarBuilder().withName(TrainerContract.ENV_HF_TOKEN)
          .withNewValueFrom().withNewSecretKeyRef()
          .withName(token.name).withKey(key)
          .withOptional(false)
          .endSecretKeyRef().endValueFrom().build());
    }
    if (hubCacheClaim(ftj) != null) {
      env.add(new EnvVar(TrainerContract.ENV_HF_HUB_CACHE, TrainerContract.HUB_CACHE_MOUNT, null));
    }
    OperatorConfig.Hub hub = config.hub();
    addIfSet(env, TrainerContract.ENV_HF_ENDPOINT, hub.endpoint());
    addIfSet(env, TrainerContract.ENV_HTTPS_PROXY, hub.httpsProxy());
    addIfSet(env, TrainerContract.ENV_HTTP_PROXY, hub.httpProxy());
    addIfSet(env, TrainerContract.ENV_NO_PROXY, hub.noProxy());
  }

  private static void addIfSet(List<EnvVar> env, String name, String value) {
    if (value != null && !value.isBlank()) {
      env.add(new EnvVar(name, value, null));
    }
  }

  private List<VolumeMount> mounts(FineTuneJob ftj) {
    List<VolumeMount> mounts = new ArrayList<>();
    mounts.add(mount(VOLUME_WORKSPACE, TrainerContract.WORKSPACE, false));
    String specDir = TrainerContract.SPEC_FILE.substring(0, TrainerContract.SPEC_FILE.lastIndexOf('/'));
    mounts.add(mount(VOLUME_SPEC, specDir, true));
    mounts.add(mount(VOLUME_SCRATCH, TrainerContract.SCRATCH, false));
    if (modelClaim(ftj) != null) {
      mounts.add(mount(VOLUME_MODEL, TrainerContract.MODEL_MOUNT, true));
    }
    if (dataClaim(ftj) != null) {
      mounts.add(mount(VOLUME_DATA, TrainerContract.DATA_MOUNT, true));
    }
    if (dataConfigMap(ftj) != null) {
      mounts.add(mount(VOLUME_DATA_CONFIGMAP, TrainerContract.DATA_CONFIGMAP_MOUNT, true));
    }
    if (hubCacheClaim(ftj) != null) { // read-write: downloads land in it; a mount, so the root filesystem stays read-only
      mounts.add(mount(VOLUME_HUB_CACHE, TrainerContract.HUB_CACHE_MOUNT, false));
    }
    return mounts;
  }

  private List<Volume> volumes(FineTuneJob ftj, boolean worker) {
    List<Volume> volumes = new ArrayList<>();
    volumes.add(worker // a rank other than 0 writes nothing to the run folder
        ? new VolumeBuilder().withName(VOLUME_WORKSPACE).withNewEmptyDir().endEmptyDir().build()
        : new VolumeBuilder().withName(VOLUME_WORKSPACE)
            .withNewPersistentVolumeClaim().withClaimName(Names.checkpointClaim(ftj)).endPersistentVolumeClaim().build());
    String specFileName = TrainerContract.SPEC_FILE.substring(TrainerContract.SPEC_FILE.lastIndexOf('/') + 1);
    volumes.add(new VolumeBuilder().withName(VOLUME_SPEC)
        .withNewConfigMap().withName(Names.configMap(ftj))
        .addNewItem().withKey(TrainerContract.SPEC_KEY).withPath(specFileName).endItem()
        .endConfigMap().build());
    volumes.add(new VolumeBuilder().withName(VOLUME_SCRATCH).withNewEmptyDir().endEmptyDir().build());
    String model = modelClaim(ftj);
    if (model != null) {
      volumes.add(new VolumeBuilder().withName(VOLUME_MODEL)
          .withNewPersistentVolumeClaim().withClaimName(model).withReadOnly(true).endPersistentVolumeClaim().build());
    }
    String data = dataClaim(ftj);
    if (data != null) {
      volumes.add(new VolumeBuilder().withName(VOLUME_DATA)
          .withNewPersistentVolumeClaim().withClaimName(data).withReadOnly(true).endPersistentVolumeClaim().build());
    }
    DatasetSpec.ConfigMapSource cm = dataConfigMap(ftj);
    if (cm != null) {
      volumes.add(new VolumeBuilder().withName(VOLUME_DATA_CONFIGMAP)
          .withNewConfigMap().withName(cm.name).endConfigMap().build());
    }
    String hubCache = hubCacheClaim(ftj);
    if (hubCache != null) {
      volumes.add(new VolumeBuilder().withName(VOLUME_HUB_CACHE)
          .withNewPersistentVolumeClaim().withClaimName(hubCache).endPersistentVolumeClaim().build());
    }
    return volumes;
  }

  private static String modelClaim(FineTuneJob ftj) {
    ModelSpec m = ftj.getSpec().model;
    return m == null ? null : blankToNull(m.claimName);
  }

  /**
   * The shared hub cache claim: spec.model.cacheClaim, else the operator's default for a job that downloads from the
   * hub; null: none (the trainer downloads into the run folder).
   */
  private String hubCacheClaim(FineTuneJob ftj) {
    ModelSpec m = ftj.getSpec().model;
    String named = m == null ? null : blankToNull(m.cacheClaim);
    if (named != null) {
      return named;
    }
    return downloadsFromHub(ftj) ? blankToNull(config.hub().cacheClaim()) : null;
  }

  /** The model or the data set comes from the hub (spec.model.hub, spec.dataset.hub). */
  static boolean downloadsFromHub(FineTuneJob ftj) {
    FineTuneJobSpec spec = ftj.getSpec();
    if (spec.model != null && spec.model.hub != null) {
      return true;
    }
    // read as JSON: the operator needs only whether the data set names a hub repository, not its shape
    return spec.dataset != null && FineTuneJobs.json().valueToTree(spec.dataset).hasNonNull("hub");
  }

  private static String dataClaim(FineTuneJob ftj) {
    DatasetSpec d = ftj.getSpec().dataset;
    return d == null ? null : blankToNull(d.claimName);
  }

  private static DatasetSpec.ConfigMapSource dataConfigMap(FineTuneJob ftj) {
    DatasetSpec d = ftj.getSpec().dataset;
    return d == null || d.configMap == null || d.configMap.name == null ? null : d.configMap;
  }

  private static VolumeMount mount(String name, String path, boolean readOnly) {
    return new VolumeMountBuilder().withName(name).withMountPath(path).withReadOnly(readOnly ? true : null).build();
  }

  private static String blankToNull(String s) {
    return s == null || s.isBlank() ? null : s;
  }
}
