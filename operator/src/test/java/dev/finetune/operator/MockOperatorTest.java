package dev.finetune.operator;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.finetune.api.FineTuneJob;
import dev.finetune.api.FineTuneJobStatus.Phase;
import dev.finetune.api.FineTuneJobs;
import dev.finetune.api.trainer.TrainerContract;
import dev.finetune.api.trainer.TrainerReport;
import dev.finetune.operator.config.OperatorConfig;
import dev.finetune.operator.metrics.OperatorMetrics;
import dev.finetune.operator.resources.Names;
import dev.finetune.operator.testing.FakeTrainer;
import dev.finetune.operator.testing.Jobs;
import io.fabric8.kubernetes.api.model.ConfigMap;
import io.fabric8.kubernetes.api.model.Container;
import io.fabric8.kubernetes.api.model.Event;
import io.fabric8.kubernetes.api.model.OwnerReference;
import io.fabric8.kubernetes.api.model.PersistentVolumeClaim;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.PodSpec;
import io.fabric8.kubernetes.api.model.Quantity;
import io.fabric8.kubernetes.api.model.TolerationBuilder;
import io.fabric8.kubernetes.api.model.Volume;
import io.fabric8.kubernetes.api.model.VolumeMount;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.api.model.batch.v1.JobConditionBuilder;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.server.mock.EnableKubernetesMockClient;
import io.fabric8.kubernetes.client.server.mock.KubernetesMockServer;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.function.UnaryOperator;
import java.util.stream.Collectors;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The operator against fabric8's mock API server in CRUD mode with a real JOSDK Operator (informers, watches,
 * status patches, leader election). The test plays the Job controller and the kubelet: it makes the trainer
 * Pod from the Job's template and writes Pod and Job status; a {@link FakeTrainer} serves /progress.
 */
@EnableKubernetesMockClient(crud = true)
class MockOperatorTest {
  static KubernetesMockServer server;
  static KubernetesClient client;
  static FakeTrainer trainer;
  static FineTuneOperator operator;
  static PrometheusMeterRegistry registry;
  static OperatorConfig config;

  @BeforeAll
  static void start() throws Exception {
    // Leader election asks whether it may use Leases; the mock has no authorization API.
    server.expect().post().withPath("/apis/authorization.k8s.io/v1/selfsubjectrulesreviews")
        .andReturn(200, Map.of("apiVersion", "authorization.k8s.io/v1", "kind", "SelfSubjectRulesReview",
            "status", Map.of("incomplete", false, "resourceRules", List.of(Map.of(
                "apiGroups", List.of("*"), "resources", List.of("*"), "verbs", List.of("*"))))))
        .always();
    // a cluster without JobSet (the CRUD mock would claim to serve any API)
    server.expect().get().withPath("/apis/jobset.x-k8s.io/v1alpha2").andReturn(404, Map.of()).always();
    trainer = new FakeTrainer();
    Map<String, String> env = new HashMap<>();
    env.put("FINETUNE_TRAINER_PORT", String.valueOf(trainer.port()));
    env.put("FINETUNE_PROGRESS_INTERVAL_SECONDS", "1");
    env.put("FINETUNE_TRAINER_IMAGE", "registry.example/trainer:test-cuda");
    env.put("FINETUNE_TRAINER_CPU_IMAGE", "registry.example/trainer:test");
    env.put("FINETUNE_TRAINER_CPU", "3");
    env.put("FINETUNE_TRAINER_MEMORY", "5Gi");
    env.put("FINETUNE_LEADER_ELECTION_NAMESPACE", "finetune-system");
    env.put("FINETUNE_SERVER_SIDE_APPLY", "false"); // the mock has no server-side apply
    env.put("POD_NAME", "operator-0");
    config = OperatorConfig.fromEnv(env);
    registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
    operator = FineTuneOperator.create(client, config, registry).start();
    await().atMost(Duration.ofSeconds(30)).until(operator::isReady);
  }

  @AfterAll
  static void stop() {
    if (operator != null) {
      operator.close();
    }
    if (trainer != null) {
      trainer.close();
    }
  }

  static FineTuneJob create(FineTuneJob job) {
    return client.resource(job).create();
  }

  static FineTuneJob get(String ns, String name) {
    return client.resources(FineTuneJob.class).inNamespace(ns).withName(name).get();
  }

  static Job awaitJob(String ns, String name) {
    return await().atMost(Duration.ofSeconds(20)).until(
        () -> client.batch().v1().jobs().inNamespace(ns).withName(name + "-train").get(), Objects::nonNull);
  }

  static FineTuneJob awaitStatus(String ns, String name, java.util.function.Predicate<FineTuneJob> until) {
    return await().atMost(Duration.ofSeconds(20)).pollInterval(Duration.ofMillis(100))
        .until(() -> get(ns, name), j -> j != null && j.getStatus() != null && until.test(j));
  }

  static List<Event> events(String ns, String name) {
    return client.v1().events().inNamespace(ns).list().getItems().stream()
        .filter(e -> name.equals(e.getInvolvedObject().getName()))
        .toList();
  }

  static List<String> reasons(String ns, String name) {
    return events(ns, name).stream().map(Event::getReason).toList();
  }

  static Pod createPod(Job job, String suffix, UnaryOperator<Pod> status) {
    Pod pod = client.pods().resource(Jobs.podFor(job, suffix)).create();
    return client.pods().resource(status.apply(pod)).updateStatus();
  }

  static Pod setPodStatus(Pod pod, UnaryOperator<Pod> status) {
    Pod live = client.pods().resource(pod).get();
    return client.pods().resource(status.apply(live)).updateStatus();
  }

  static void setJobCondition(Job job, String type) {
    Job live = client.batch().v1().jobs().resource(job).get();
    if (live.getStatus() == null) {
      live.setStatus(new io.fabric8.kubernetes.api.model.batch.v1.JobStatus());
    }
    live.getStatus().setConditions(List.of(new JobConditionBuilder().withType(type).withStatus("True")
        .withReason(type.equals("Failed") ? "BackoffLimitExceeded" : null)
        .withMessage(type.equals("Failed") ? "Job has reached the specified backoff limit" : null)
        .withLastTransitionTime(Jobs.now()).build()));
    live.getStatus().setCompletionTime(type.equals("Complete") ? Jobs.now() : null);
    live.getStatus().setActive(0);
    client.batch().v1().jobs().resource(live).updateStatus();
  }

  @Test
  void jobHasTheTrainerPodShapeAndOwnedObjects() {
    String ns = "shape";
    FineTuneJob ftj = Jobs.small("shape", ns);
    ftj.getSpec().image = "registry.example/custom-trainer:1";
    ftj.getSpec().imagePullPolicy = "IfNotPresent";
    ftj.getSpec().resources.gpus = 2;
    ftj.getSpec().resources.cpu = null;
    ftj.getSpec().resources.memory = "12Gi";
    ftj.getSpec().nodeSelector = Map.of("pool", "gpu");
    ftj.getSpec().tolerations = List.of(new TolerationBuilder().withKey("nvidia.com/gpu").withOperator("Exists")
        .withEffect("NoSchedule").build());
    ftj.getSpec().affinity = new io.fabric8.kubernetes.api.model.AffinityBuilder().withNewNodeAffinity()
        .withNewRequiredDuringSchedulingIgnoredDuringExecution().addNewNodeSelectorTerm().addNewMatchExpression()
        .withKey("gpu").withOperator("In").withValues("a100").endMatchExpression().endNodeSelectorTerm()
        .endRequiredDuringSchedulingIgnoredDuringExecution().endNodeAffinity().build();
    ftj.getSpec().priorityClassName = "training";
    ftj.getSpec().serviceAccountName = "trainer";
    ftj.getSpec().labels = Map.of("kueue.x-k8s.io/queue-name", "gpu-queue");
    ftj.getSpec().backoffLimit = 5;
    ftj.getSpec().activeDeadlineSeconds = 7200L;
    ftj.getSpec().ttlSecondsAfterFinished = 600;
    ftj.getSpec().checkpoints.path = "runs/first";
    ftj.getSpec().checkpoints.storageClassName = "fast";
    ftj.getSpec().dataset.synthetic = null;
    ftj.getSpec().dataset.configMap = new dev.finetune.api.DatasetSpec.ConfigMapSource();
    ftj.getSpec().dataset.configMap.name = "records";
    ftj.getSpec().dataset.configMap.key = "data.jsonl";
    ftj.getSpec().model.scratch = null;
    ftj.getSpec().model.path = "gpt2";
    ftj.getSpec().model.claimName = "models";
    ftj.getSpec().evaluation.judge = new dev.finetune.api.EvaluationSpec.JudgeSpec();
    ftj.getSpec().evaluation.judge.url = "http://ollama:11434/v1";
    ftj.getSpec().evaluation.judge.model = "llama3";
    ftj.getSpec().evaluation.judge.apiKeySecret = new dev.finetune.api.EvaluationSpec.SecretKeyRef();
    ftj.getSpec().evaluation.judge.apiKeySecret.name = "judge";
    ftj.getSpec().evaluation.judge.apiKeySecret.key = "token";
    assertThat(dev.finetune.api.validation.FineTuneJobValidator.validate(ftj)).isEmpty();
    FineTuneJob created = create(ftj);

    Job job = awaitJob(ns, "shape");
    String uid = created.getMetadata().getUid();
    assertOwnedBy(job.getMetadata().getOwnerReferences(), uid);
    assertThat(job.getMetadata().getLabels())
        .containsEntry("kueue.x-k8s.io/queue-name", "gpu-queue")
        .containsEntry(Names.JOB_LABEL, "shape")
        .containsEntry(Names.MANAGED_BY_LABEL, Names.MANAGED_BY);
    assertThat(job.getMetadata().getAnnotations()).containsKey(Names.SPEC_HASH_ANNOTATION);
    var js = job.getSpec();
    assertThat(js.getBackoffLimit()).isEqualTo(5);
    assertThat(js.getActiveDeadlineSeconds()).isEqualTo(7200L);
    assertThat(js.getTtlSecondsAfterFinished()).as("set once the end is recorded").isNull();
    assertThat(js.getSuspend()).isFalse();
    assertThat(js.getParallelism()).isEqualTo(1);
    assertThat(js.getCompletions()).isEqualTo(1);
    var rules = js.getPodFailurePolicy().getRules();
    assertThat(rules).hasSize(2);
    assertThat(rules.get(0).getAction()).isEqualTo("FailJob");
    assertThat(rules.get(0).getOnExitCodes().getOperator()).isEqualTo("In");
    assertThat(rules.get(0).getOnExitCodes().getContainerName()).isEqualTo("trainer");
    assertThat(rules.get(0).getOnExitCodes().getValues()).containsExactlyInAnyOrder(
        TrainerContract.ExitCodes.BAD_JOB, TrainerContract.ExitCodes.DIVERGED);
    assertThat(rules.get(1).getAction()).isEqualTo("Ignore");
    assertThat(rules.get(1).getOnPodConditions()).singleElement()
        .satisfies(c -> assertThat(c.getType() + "=" + c.getStatus()).isEqualTo("DisruptionTarget=True"));

    var template = js.getTemplate();
    assertThat(template.getMetadata().getLabels())
        .containsEntry("kueue.x-k8s.io/queue-name", "gpu-queue")
        .containsEntry(Names.JOB_LABEL, "shape")
        .containsEntry(Names.METRICS_LABEL, "true");
    assertThat(template.getMetadata().getAnnotations())
        .containsEntry("prometheus.io/scrape", "true")
        .containsEntry("prometheus.io/port", String.valueOf(trainer.port()))
        .containsEntry("prometheus.io/path", "/metrics");
    PodSpec pod = template.getSpec();
    assertThat(pod.getRestartPolicy()).isEqualTo("Never");
    assertThat(pod.getTerminationGracePeriodSeconds()).as("checkpoint of a model of unknown size").isEqualTo(774L);
    assertThat(pod.getNodeSelector()).containsEntry("pool", "gpu");
    assertThat(pod.getTolerations()).singleElement().satisfies(t -> assertThat(t.getKey()).isEqualTo("nvidia.com/gpu"));
    assertThat(pod.getAffinity().getNodeAffinity()).isNotNull();
    assertThat(pod.getPriorityClassName()).isEqualTo("training");
    assertThat(pod.getServiceAccountName()).isEqualTo("trainer");
    assertThat(pod.getSecurityContext().getRunAsNonRoot()).isTrue();
    assertThat(pod.getSecurityContext().getRunAsUser()).isEqualTo(1000L);
    assertThat(pod.getSecurityContext().getSeccompProfile().getType()).isEqualTo("RuntimeDefault");

    Container c = pod.getContainers().get(0);
    assertThat(pod.getContainers()).hasSize(1);
    assertThat(c.getName()).isEqualTo("trainer");
    assertThat(c.getImage()).isEqualTo("registry.example/custom-trainer:1");
    assertThat(c.getImagePullPolicy()).isEqualTo("IfNotPresent");
    // 2 GPUs: 2 ranks in the Pod, one per GPU
    assertThat(c.getCommand()).startsWith("java").endsWith("-jar", TrainerContract.TRAINER_JAR,
        TrainerContract.SPEC_FILE, "--output", "/workspace/runs/first", "--nproc-per-node", "2");
    assertThat(c.getCommand()).contains("-XX:+ExitOnOutOfMemoryError", "-Djava.io.tmpdir=/tmp");
    assertThat(c.getResources().getLimits()).containsEntry("nvidia.com/gpu", new Quantity("2"))
        .containsEntry("cpu", new Quantity("3")).containsEntry("memory", new Quantity("12Gi"));
    assertThat(c.getResources().getRequests()).isEqualTo(c.getResources().getLimits());
    assertThat(c.getPorts()).singleElement().satisfies(p -> {
      assertThat(p.getName()).isEqualTo("metrics");
      assertThat(p.getContainerPort()).isEqualTo(trainer.port());
    });
    Map<String, String> env = c.getEnv().stream().filter(e -> e.getValue() != null)
        .collect(Collectors.toMap(e -> e.getName(), e -> e.getValue()));
    assertThat(env).containsEntry("DJL_OFFLINE", "true")
        .containsEntry(TrainerContract.ENV_PORT, String.valueOf(trainer.port()))
        .containsEntry(TrainerContract.ENV_TERMINATION_LOG, "/dev/termination-log")
        .containsEntry(TrainerContract.ENV_MODEL_DIR, TrainerContract.MODEL_MOUNT)
        .containsEntry(TrainerContract.ENV_DATASET_CONFIGMAP_DIR, TrainerContract.DATA_CONFIGMAP_MOUNT)
        .doesNotContainKey(TrainerContract.ENV_DATA_DIR);
    assertThat(c.getEnv()).anySatisfy(e -> {
      assertThat(e.getName()).isEqualTo(TrainerContract.ENV_JUDGE_API_KEY);
      assertThat(e.getValueFrom().getSecretKeyRef().getName()).isEqualTo("judge");
      assertThat(e.getValueFrom().getSecretKeyRef().getKey()).isEqualTo("token");
    });
    assertThat(c.getTerminationMessagePath()).isEqualTo("/dev/termination-log");
    assertThat(c.getTerminationMessagePolicy()).isEqualTo("FallbackToLogsOnError");
    var sc = c.getSecurityContext();
    assertThat(sc.getRunAsNonRoot()).isTrue();
    assertThat(sc.getReadOnlyRootFilesystem()).isTrue();
    assertThat(sc.getAllowPrivilegeEscalation()).isFalse();
    assertThat(sc.getCapabilities().getDrop()).containsExactly("ALL");
    assertThat(sc.getSeccompProfile().getType()).isEqualTo("RuntimeDefault");

    Map<String, VolumeMount> mounts = c.getVolumeMounts().stream()
        .collect(Collectors.toMap(VolumeMount::getMountPath, m -> m));
    Map<String, Volume> volumes = pod.getVolumes().stream().collect(Collectors.toMap(Volume::getName, v -> v));
    assertThat(mounts).containsKeys(TrainerContract.WORKSPACE, "/etc/finetune", TrainerContract.SCRATCH,
        TrainerContract.MODEL_MOUNT, TrainerContract.DATA_CONFIGMAP_MOUNT);
    assertThat(volumes.get(mounts.get(TrainerContract.WORKSPACE).getName()).getPersistentVolumeClaim().getClaimName())
        .isEqualTo("shape-checkpoints");
    assertThat(volumes.get(mounts.get(TrainerContract.SCRATCH).getName()).getEmptyDir()).isNotNull();
    Volume model = volumes.get(mounts.get(TrainerContract.MODEL_MOUNT).getName());
    assertThat(model.getPersistentVolumeClaim().getClaimName()).isEqualTo("models");
    assertThat(model.getPersistentVolumeClaim().getReadOnly()).isTrue();
    assertThat(mounts.get(TrainerContract.MODEL_MOUNT).getReadOnly()).isTrue();
    assertThat(volumes.get(mounts.get(TrainerContract.DATA_CONFIGMAP_MOUNT).getName()).getConfigMap().getName())
        .isEqualTo("records");
    Volume spec = volumes.get(mounts.get("/etc/finetune").getName());
    assertThat(spec.getConfigMap().getName()).isEqualTo("shape-spec");
    assertThat(spec.getConfigMap().getItems()).singleElement()
        .satisfies(i -> assertThat(i.getKey() + "->" + i.getPath()).isEqualTo("job.yaml->job.yaml"));

    ConfigMap cm = client.configMaps().inNamespace(ns).withName("shape-spec").get();
    assertOwnedBy(cm.getMetadata().getOwnerReferences(), uid);
    FineTuneJob mounted = FineTuneJobs.parse(cm.getData().get(TrainerContract.SPEC_KEY));
    assertThat(mounted.getMetadata().getName()).isEqualTo("shape");
    assertThat(FineTuneJobs.toJson(mounted.getSpec())).isEqualTo(FineTuneJobs.toJson(ftj.getSpec()));
    assertThat(cm.getData().get(TrainerContract.SPEC_KEY)).doesNotContain("status:", "uid:", "resourceVersion");

    PersistentVolumeClaim pvc = client.persistentVolumeClaims().inNamespace(ns).withName("shape-checkpoints").get();
    assertThat(pvc.getMetadata().getOwnerReferences()).as("kept when the job is deleted (retainClaim, the default)")
        .isEmpty();
    assertThat(pvc.getMetadata().getLabels()).containsEntry(Names.JOB_LABEL, "shape")
        .containsEntry(Names.MANAGED_BY_LABEL, Names.MANAGED_BY);
    assertThat(pvc.getSpec().getResources().getRequests()).containsEntry("storage", new Quantity("1Gi"));
    assertThat(pvc.getSpec().getStorageClassName()).isEqualTo("fast");
    assertThat(pvc.getSpec().getAccessModes()).containsExactly("ReadWriteOnce");

    FineTuneJob st = awaitStatus(ns, "shape", j -> j.getStatus().phase == Phase.Pending);
    assertThat(st.getStatus().jobName).isEqualTo("shape-train");
    assertThat(st.getStatus().progress).isEqualTo("0/3");
    assertThat(st.getStatus().observedGeneration).isEqualTo(st.getMetadata().getGeneration());
    await().untilAsserted(() -> assertThat(reasons(ns, "shape")).containsExactly("Created"));
  }

  @Test
  void defaultsComeFromTheOperatorsConfigAndExistingClaimsAreNotCreated() {
    String ns = "defaults";
    FineTuneJob ftj = Jobs.small("existing-claim", ns);
    ftj.getSpec().resources.cpu = null;
    ftj.getSpec().resources.memory = null;
    ftj.getSpec().checkpoints.claimName = "shared-results";
    create(ftj);
    Job job = awaitJob(ns, "existing-claim");
    Container c = job.getSpec().getTemplate().getSpec().getContainers().get(0);
    assertThat(c.getImage()).as("no GPUs: the CPU image").isEqualTo("registry.example/trainer:test");
    assertThat(c.getResources().getLimits()).containsEntry("cpu", new Quantity("3"))
        .containsEntry("memory", new Quantity("5Gi")).doesNotContainKey("nvidia.com/gpu");
    assertThat(c.getCommand()).endsWith("--output", "/workspace/existing-claim");
    assertThat(job.getSpec().getTemplate().getSpec().getVolumes()).anySatisfy(v ->
        assertThat(v.getPersistentVolumeClaim() == null ? null : v.getPersistentVolumeClaim().getClaimName())
            .isEqualTo("shared-results"));
    assertThat(client.persistentVolumeClaims().inNamespace(ns).list().getItems()).isEmpty();

    FineTuneJob deleted = Jobs.small("not-retained", ns);
    deleted.getSpec().checkpoints.retainClaim = false;
    String uid = create(deleted).getMetadata().getUid();
    awaitJob(ns, "not-retained");
    PersistentVolumeClaim pvc = client.persistentVolumeClaims().inNamespace(ns).withName("not-retained-checkpoints").get();
    assertThat(pvc).isNotNull();
    assertOwnedBy(pvc.getMetadata().getOwnerReferences(), uid); // the garbage collector deletes it with the job
  }

  /**
   * kubectl delete ftj keeps the claim with the results; a new job of the same name (the way to change a started job)
   * adopts it instead of failing on its name, and makes no second one. The test plays the garbage collector.
   */
  @Test
  void deletedAndRecreatedTheJobKeepsItsClaim() {
    String ns = "recreate";
    FineTuneJob first = create(Jobs.small("again", ns));
    awaitJob(ns, "again");
    PersistentVolumeClaim kept = client.persistentVolumeClaims().inNamespace(ns).withName("again-checkpoints").get();
    assertThat(kept.getMetadata().getOwnerReferences()).isEmpty();
    client.resource(first).delete();
    await().until(() -> get(ns, "again") == null);
    // the garbage collector: what the job owned goes, the claim stays
    client.batch().v1().jobs().inNamespace(ns).withName("again-train").delete();
    client.configMaps().inNamespace(ns).withName("again-spec").delete();
    await().until(() -> client.batch().v1().jobs().inNamespace(ns).withName("again-train").get() == null
        && client.configMaps().inNamespace(ns).withName("again-spec").get() == null);

    FineTuneJob second = create(Jobs.small("again", ns));
    Job job = awaitJob(ns, "again");
    assertOwnedBy(job.getMetadata().getOwnerReferences(), second.getMetadata().getUid());
    FineTuneJob st = awaitStatus(ns, "again", j -> j.getStatus().phase == Phase.Pending);
    assertThat(st.getStatus().results).isEqualTo("pvc/again-checkpoints:again");
    assertThat(client.persistentVolumeClaims().inNamespace(ns).list().getItems()).singleElement().satisfies(c -> {
      assertThat(c.getMetadata().getUid()).as("the same claim").isEqualTo(kept.getMetadata().getUid());
      assertThat(c.getMetadata().getOwnerReferences()).isEmpty();
    });
    assertThat(job.getSpec().getTemplate().getSpec().getVolumes()).anySatisfy(v -> assertThat(
        v.getPersistentVolumeClaim() == null ? null : v.getPersistentVolumeClaim().getClaimName()).isEqualTo("again-checkpoints"));
  }

  @Test
  void invalidSpecFailsWithoutAJob() {
    String ns = "invalid";
    FineTuneJob ftj = Jobs.small("broken", ns);
    ftj.getSpec().dataset.path = "data.json"; // a second source next to synthetic
    ftj.getSpec().training.epochs = 0;
    create(ftj);
    FineTuneJob st = awaitStatus(ns, "broken", j -> j.getStatus().phase == Phase.Failed);
    assertThat(st.getStatus().reason).isEqualTo("InvalidSpec");
    assertThat(st.getStatus().message).contains("spec.dataset").contains("spec.training.epochs");
    assertThat(st.getStatus().conditions).anySatisfy(c -> {
      assertThat(c.getType()).isEqualTo("Failed");
      assertThat(c.getStatus()).isEqualTo("True");
      assertThat(c.getReason()).isEqualTo("InvalidSpec");
      assertThat(c.getMessage()).isEqualTo(st.getStatus().message);
    });
    await().untilAsserted(() -> assertThat(events(ns, "broken")).singleElement().satisfies(e -> {
      assertThat(e.getType()).isEqualTo("Warning");
      assertThat(e.getReason()).isEqualTo("InvalidSpec");
      assertThat(e.getMessage()).contains("spec.training.epochs");
    }));
    assertThat(client.batch().v1().jobs().inNamespace(ns).list().getItems()).isEmpty();
    assertThat(client.configMaps().inNamespace(ns).list().getItems()).isEmpty();
    assertThat(client.persistentVolumeClaims().inNamespace(ns).list().getItems()).isEmpty();

    // fixing the spec (a new generation) starts the job: nothing was created for the broken one
    FineTuneJob live = get(ns, "broken");
    live.getSpec().dataset.path = null;
    live.getSpec().training.epochs = 2;
    client.resource(live).update();
    awaitJob(ns, "broken");
    awaitStatus(ns, "broken", j -> j.getStatus().phase == Phase.Pending && "2".equals(j.getStatus().progress.split("/")[1]));
  }

  @Test
  void progressIsPolledThenTheTerminationMessageFinishesTheStatus() {
    String ns = "progress";
    FineTuneJob ftj = Jobs.small("run", ns);
    ftj.getSpec().ttlSecondsAfterFinished = 600;
    create(ftj);
    Job job = awaitJob(ns, "run");
    trainer.set(Jobs.progress(1, 3));
    Pod pod = createPod(job, "a1b2c", p -> {
      Jobs.running(p, "127.0.0.1");
      return p;
    });
    FineTuneJob st = awaitStatus(ns, "run", j -> j.getStatus().phase == Phase.Running && j.getStatus().epoch != null);
    assertThat(st.getStatus().epoch).isEqualTo(1);
    assertThat(st.getStatus().progress).isEqualTo("1/3");
    assertThat(st.getStatus().trainLoss).isEqualTo(3.0);
    assertThat(st.getStatus().validationLoss).isEqualTo(3.5);
    assertThat(st.getStatus().startTime).isNotNull();
    assertThat(st.getStatus().conditions).anySatisfy(c -> assertThat(c.getType() + c.getStatus()).isEqualTo("RunningTrue"));

    // the next epoch arrives at the next poll, without any Kubernetes event
    int polls = trainer.polls();
    TrainerReport two = Jobs.progress(2, 3);
    two.checkpoint = new dev.finetune.api.CheckpointStatus();
    two.checkpoint.latest = "checkpoints/epoch-0002";
    two.checkpoint.best = "best";
    trainer.set(two);
    st = awaitStatus(ns, "run", j -> Integer.valueOf(2).equals(j.getStatus().epoch));
    assertThat(st.getStatus().history).extracting(r -> r.epoch).containsExactly(1, 2);
    assertThat(st.getStatus().bestEpoch).isEqualTo(2);
    assertThat(st.getStatus().checkpoint.latest).isEqualTo("checkpoints/epoch-0002");
    assertThat(trainer.polls()).isGreaterThan(polls);

    // steady interval, no hot loop: about one poll a second
    int before = trainer.polls();
    sleep(3000);
    assertThat(trainer.polls() - before).isBetween(1, 6);

    // the trainer finishes epoch 3 and stops early before the operator polls again: only the summary says so
    TrainerReport summary = Jobs.summary("Succeeded", "EarlyStopped", 3, 5);
    summary.earlyStopped = true;
    summary.bestEpoch = 2;
    summary.bestValidationLoss = 1.75;
    summary.evaluation = new dev.finetune.api.EvaluationStatus();
    summary.evaluation.responses = 11;
    setPodStatus(pod, p -> {
      Jobs.terminated(p, 0, FineTuneJobs.toJson(summary));
      return p;
    });
    setJobCondition(job, "Complete");
    st = awaitStatus(ns, "run", j -> j.getStatus().phase == Phase.Succeeded);
    var s = st.getStatus();
    assertThat(s.reason).isEqualTo("EarlyStopped");
    assertThat(s.epoch).isEqualTo(3);
    assertThat(s.epochs).isEqualTo(5);
    assertThat(s.progress).isEqualTo("3/5");
    assertThat(s.history).extracting(r -> r.epoch).containsExactly(1, 2, 3);
    assertThat(s.bestEpoch).isEqualTo(2);
    assertThat(s.bestValidationLoss).isEqualTo(1.75);
    assertThat(s.earlyStopped).isTrue();
    assertThat(s.evaluation.responses).isEqualTo(11);
    assertThat(s.completionTime).isNotNull();
    assertThat(s.restarts).isZero();
    assertThat(s.conditions).anySatisfy(c -> assertThat(c.getType() + c.getStatus()).isEqualTo("SucceededTrue"));
    assertThat(s.conditions).anySatisfy(c -> assertThat(c.getType() + c.getStatus()).isEqualTo("EarlyStoppedTrue"));
    assertThat(s.conditions).anySatisfy(c -> assertThat(c.getType() + c.getStatus()).isEqualTo("RunningFalse"));
    await().untilAsserted(() -> assertThat(reasons(ns, "run")).containsExactly(
        "Created", "Started", "EpochFinished", "EpochFinished", "EpochFinished", "EarlyStopped", "Succeeded"));
    assertThat(events(ns, "run").stream().filter(e -> e.getReason().equals("EpochFinished")).map(Event::getMessage))
        .contains("Epoch 1/3 finished: train loss 3.0000, validation loss 3.5000");
    // the end names where the results are, and that they outlive the FineTuneJob
    assertThat(events(ns, "run").stream().filter(e -> e.getReason().equals("Succeeded")).map(Event::getMessage))
        .singleElement().asString().startsWith("Training finished (EarlyStopped): epoch 3/5, best epoch 2")
        .endsWith("; results in pvc/run-checkpoints:run (best/, checkpoints/, responses.jsonl, summary.json),"
            + " kept when this FineTuneJob is deleted");
    // the end is recorded: now the TTL controller may delete the Job
    await().untilAsserted(() -> assertThat(client.batch().v1().jobs().inNamespace(ns).withName("run-train").get()
        .getSpec().getTtlSecondsAfterFinished()).isEqualTo(600));

    // final: deleting the finished Job does not bring it back, and status stays
    client.batch().v1().jobs().resource(job).delete();
    await().until(() -> client.batch().v1().jobs().inNamespace(ns).withName("run-train").get() == null);
    sleep(2000);
    assertThat(client.batch().v1().jobs().inNamespace(ns).withName("run-train").get()).isNull();
    assertThat(get(ns, "run").getStatus().phase).isEqualTo(Phase.Succeeded);
    assertThat(reasons(ns, "run")).hasSize(7);
  }

  @Test
  void aTrainerThatDoesNotAnswerDelaysNoOtherJob() throws Exception {
    String ns = "slow";
    // a trainer whose /progress accepts the connection and never answers
    com.sun.net.httpserver.HttpServer hanging = com.sun.net.httpserver.HttpServer.create(
        new java.net.InetSocketAddress(java.net.InetAddress.getLoopbackAddress(), 0), 0);
    java.util.concurrent.CountDownLatch release = new java.util.concurrent.CountDownLatch(1);
    hanging.setExecutor(java.util.concurrent.Executors.newCachedThreadPool());
    hanging.createContext("/progress", x -> {
      try {
        release.await();
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
      x.close();
    });
    hanging.start();
    try {
      List<String> names = List.of("stuck-1", "stuck-2", "stuck-3", "stuck-4", "stuck-5", "stuck-6", "stuck-7",
          "stuck-8", "stuck-9", "stuck-10", "stuck-11", "stuck-12");
      for (String name : names) {
        create(Jobs.small(name, ns));
        Job job = awaitJob(ns, name);
        Pod pod = Jobs.podFor(job, "x");
        pod.getSpec().getContainers().get(0).getPorts().get(0).setContainerPort(hanging.getAddress().getPort());
        Pod made = client.pods().resource(pod).create();
        Jobs.running(made, "127.0.0.1");
        client.pods().resource(made).updateStatus();
      }
      for (String name : names) {
        awaitStatus(ns, name, j -> j.getStatus().phase == Phase.Running);
      }
      // more hanging trainers than reconciler threads; a healthy job still gets its progress within seconds
      create(Jobs.small("healthy", ns));
      Job job = awaitJob(ns, "healthy");
      trainer.set(Jobs.progress(1, 3));
      createPod(job, "ok", p -> {
        Jobs.running(p, "127.0.0.1");
        return p;
      });
      FineTuneJob st = await().atMost(Duration.ofSeconds(8)).until(() -> get(ns, "healthy"),
          j -> j.getStatus() != null && Integer.valueOf(1).equals(j.getStatus().epoch));
      assertThat(st.getStatus().phase).isEqualTo(Phase.Running);
      assertThat(get(ns, "stuck-1").getStatus().epoch).isNull();
    } finally {
      release.countDown();
      hanging.stop(0);
    }
  }

  /**
   * A gated hub model: the token goes from the job's Secret to HF_TOKEN by a secretKeyRef, so the operator never reads
   * it and it shows nowhere the operator writes; a missing Secret is named in the status while the Pod waits; the
   * download shows as reason Downloading until training starts.
   */
  @Test
  void aHubTokenStaysInItsSecretAndTheDownloadShowsInTheStatus() {
    String ns = "hub";
    String token = "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz012345"; // what the user's Secret holds
    FineTuneJob ftj = Jobs.small("gated", ns);
    ftj.getSpec().model.scratch = null;
    ftj.getSpec().model.hub = "meta-llama/Llama-3.2-1B";
    ftj.getSpec().model.hubTokenSecret = new dev.finetune.api.ModelSpec.HubTokenSecret();
    ftj.getSpec().model.hubTokenSecret.name = "hf-token";
    ftj.getSpec().model.cacheClaim = "hub-cache";
    assertThat(dev.finetune.api.validation.FineTuneJobValidator.validate(ftj)).isEmpty();
    create(ftj);
    Job job = awaitJob(ns, "gated");
    Container c = job.getSpec().getTemplate().getSpec().getContainers().get(0);
    assertThat(c.getEnv()).filteredOn(e -> e.getName().equals(TrainerContract.ENV_HF_TOKEN)).singleElement()
        .satisfies(e -> {
          assertThat(e.getValue()).isNull();
          assertThat(e.getValueFrom().getSecretKeyRef().getName()).isEqualTo("hf-token");
          assertThat(e.getValueFrom().getSecretKeyRef().getKey()).isEqualTo("token");
        });
    assertThat(env(c)).containsEntry(TrainerContract.ENV_HF_HUB_CACHE, TrainerContract.HUB_CACHE_MOUNT);
    assertThat(c.getVolumeMounts()).anySatisfy(m -> assertThat(m.getMountPath()).isEqualTo(TrainerContract.HUB_CACHE_MOUNT));

    // the kubelet cannot start the container: the Secret is missing
    Pod pod = createPod(job, "a", p -> {
      Jobs.waiting(p, "CreateContainerConfigError", "secret \"hf-token\" not found");
      return p;
    });
    FineTuneJob st = awaitStatus(ns, "gated", j -> "CreateContainerConfigError".equals(j.getStatus().reason));
    assertThat(st.getStatus().phase).isEqualTo(Phase.Pending);
    assertThat(st.getStatus().message).contains("secret \"hf-token\" not found")
        .contains("spec.model.hubTokenSecret names Secret hf-token with key token in namespace hub");

    // the user creates it; the kubelet starts the trainer, which downloads first
    client.secrets().inNamespace(ns).resource(new io.fabric8.kubernetes.api.model.SecretBuilder()
        .withNewMetadata().withName("hf-token").withNamespace(ns).endMetadata()
        .addToStringData("token", token).build()).create();
    String download = "downloading model.safetensors of meta-llama/Llama-3.2-1B: 1.2 of 2.5 GB, 45 MB/s, about 30 s left";
    trainer.set(Jobs.downloading(download, 3));
    setPodStatus(pod, p -> {
      Jobs.running(p, "127.0.0.1");
      return p;
    });
    st = awaitStatus(ns, "gated", j -> "Downloading".equals(j.getStatus().reason));
    assertThat(st.getStatus().phase).isEqualTo(Phase.Running);
    assertThat(st.getStatus().message).isEqualTo(download);
    assertThat(st.getStatus().conditions).anySatisfy(cond -> {
      assertThat(cond.getType() + cond.getStatus()).isEqualTo("RunningTrue");
      assertThat(cond.getReason()).isEqualTo("Downloading");
      assertThat(cond.getMessage()).isEqualTo(download);
    });
    // the next poll brings the download's progress, without any Kubernetes event
    String further = "downloading model.safetensors of meta-llama/Llama-3.2-1B: 2.4 of 2.5 GB, 45 MB/s, about 2 s left";
    trainer.set(Jobs.downloading(further, 3));
    awaitStatus(ns, "gated", j -> further.equals(j.getStatus().message));
    trainer.set(Jobs.progress(1, 3));
    st = awaitStatus(ns, "gated", j -> "Training".equals(j.getStatus().reason));
    assertThat(st.getStatus().conditions).anySatisfy(cond ->
        assertThat(cond.getType() + cond.getReason()).isEqualTo("RunningTraining"));
    await().untilAsserted(() -> assertThat(reasons(ns, "gated")).contains("Created", "Started", "EpochFinished"));
    setPodStatus(pod, p -> {
      Jobs.terminated(p, 0, FineTuneJobs.toJson(Jobs.summary("Succeeded", "Completed", 3, 3)));
      return p;
    });
    setJobCondition(job, "Complete");
    awaitStatus(ns, "gated", j -> j.getStatus().phase == Phase.Succeeded); // no trainer left to poll

    // the token is nowhere the operator writes: status, Events, the job's ConfigMap, Job, claim
    assertThat(FineTuneJobs.toJson(get(ns, "gated"))).doesNotContain(token);
    assertThat(events(ns, "gated")).allSatisfy(e -> assertThat(e.getMessage()).doesNotContain(token));
    assertThat(client.configMaps().inNamespace(ns).withName("gated-spec").get().getData().toString()).doesNotContain(token);
    assertThat(io.fabric8.kubernetes.client.utils.Serialization.asJson(client.batch().v1().jobs().inNamespace(ns)
        .withName("gated-train").get())).doesNotContain(token);
  }

  @Test
  void aCrashIsRestartedAndABadJobExitFailsWithTheTrainersReason() {
    String ns = "failing";
    trainer.set(null); // no checkpoint left from another test: the one awaited below is the resumed trainer's
    create(Jobs.small("crashy", ns));
    Job job = awaitJob(ns, "crashy");
    Pod first = createPod(job, "first", p -> {
      Jobs.running(p, "127.0.0.1");
      return p;
    });
    awaitStatus(ns, "crashy", j -> j.getStatus().phase == Phase.Running);
    setPodStatus(first, p -> {
      Jobs.terminated(p, TrainerContract.ExitCodes.CRASHED, "java.lang.OutOfMemoryError: Java heap space");
      return p;
    });
    TrainerReport resumed = Jobs.progress(1, 3);
    resumed.checkpoint = new dev.finetune.api.CheckpointStatus();
    resumed.checkpoint.restoredFrom = "checkpoints/epoch-0001";
    trainer.set(resumed);
    Pod second = createPod(job, "second", p -> {
      Jobs.running(p, "127.0.0.1");
      return p;
    });
    FineTuneJob st = awaitStatus(ns, "crashy", j -> Integer.valueOf(1).equals(j.getStatus().restarts)
        && j.getStatus().checkpoint != null);
    assertThat(st.getStatus().phase).isEqualTo(Phase.Running);
    assertThat(st.getStatus().checkpoint.restoredFrom).isEqualTo("checkpoints/epoch-0001");
    await().untilAsserted(() -> assertThat(reasons(ns, "crashy")).contains("Restarted", "CheckpointRestored"));
    assertThat(events(ns, "crashy").stream().filter(e -> e.getReason().equals("Restarted")).findFirst().get().getMessage())
        .contains("exited with code 1");
    assertThat(registry.get(OperatorMetrics.RESTARTS).counter().count()).isGreaterThanOrEqualTo(1.0);

    TrainerReport bad = Jobs.summary("Failed", "Diverged", 1, 3);
    bad.message = "the loss became NaN at step 17";
    setPodStatus(second, p -> {
      Jobs.terminated(p, TrainerContract.ExitCodes.DIVERGED, FineTuneJobs.toJson(bad));
      return p;
    });
    // The Job's podFailurePolicy fails it at once on the bad-job exit code (the Job controller's part, played here);
    // the operator leaves the Job alone and reports the trainer's reason.
    setJobCondition(job, "Failed");
    st = awaitStatus(ns, "crashy", j -> j.getStatus().phase == Phase.Failed);
    assertThat(client.batch().v1().jobs().inNamespace(ns).withName(job.getMetadata().getName()).get().getSpec().getParallelism())
        .isEqualTo(1);
    assertThat(st.getStatus().reason).isEqualTo("Diverged");
    assertThat(st.getStatus().message).isEqualTo("the loss became NaN at step 17");
    assertThat(st.getStatus().restarts).isEqualTo(1);
    assertThat(st.getStatus().conditions).anySatisfy(c -> {
      assertThat(c.getType() + c.getStatus()).isEqualTo("FailedTrue");
      assertThat(c.getReason()).isEqualTo("Diverged");
    });
    await().untilAsserted(() -> assertThat(events(ns, "crashy")).anySatisfy(e -> {
      assertThat(e.getReason()).isEqualTo("Failed");
      assertThat(e.getType()).isEqualTo("Warning");
      assertThat(e.getMessage()).contains("Diverged").contains("NaN");
    }));
  }

  /** FINETUNE_JOBSET true on a cluster without JobSet: the operator does not start, and says what to do. */
  @Test
  void anOperatorToldToUseJobSetsDoesNotStartWithoutThem() {
    assertThat(FineTuneOperator.servesJobSets(client)).isFalse();
    org.assertj.core.api.Assertions.assertThatThrownBy(() -> FineTuneOperator.create(client,
            config.withJobSet(OperatorConfig.JobSetUse.ALWAYS), new PrometheusMeterRegistry(PrometheusConfig.DEFAULT)))
        .isInstanceOf(IllegalStateException.class)
        .hasMessageContaining("FINETUNE_JOBSET is true").hasMessageContaining("install JobSet");
  }

  /** Without JobSet (FINETUNE_JOBSET auto, the default), a job with several nodes runs as two Jobs. */
  @Test
  void severalNodesRunAsALeaderJobAndAnIndexedWorkersJobThatFailTogether() {
    String ns = "nodes";
    trainer.set(Jobs.progress(1, 3));
    FineTuneJob ftj = Jobs.small("pair", ns);
    ftj.getSpec().resources.gpus = 4;
    ftj.getSpec().resources.nodes = 3;
    ftj.getSpec().backoffLimit = 2;
    create(ftj);
    Job leader = awaitJob(ns, "pair");
    Job workers = await().atMost(Duration.ofSeconds(20)).until(
        () -> client.batch().v1().jobs().inNamespace(ns).withName("pair-workers").get(), Objects::nonNull);

    // the leader: node 0, the checkpoint volume, /metrics, and rank 0's rendezvous on its own loopback
    Container lc = leader.getSpec().getTemplate().getSpec().getContainers().get(0);
    assertThat(lc.getCommand()).containsSubsequence("--nproc-per-node", "4");
    assertThat(env(lc)).containsEntry("NNODES", "3").containsEntry("NODE_RANK", "0")
        .containsEntry("MASTER_ADDR", "127.0.0.1").containsEntry("MASTER_PORT", "29500");
    assertThat(leader.getSpec().getTemplate().getMetadata().getLabels())
        .containsEntry(Names.ROLE_LABEL, Names.LEADER).containsEntry(Names.METRICS_LABEL, "true");
    assertThat(leader.getSpec().getTemplate().getSpec().getVolumes()).anySatisfy(v ->
        assertThat(v.getPersistentVolumeClaim().getClaimName()).isEqualTo("pair-checkpoints"));
    assertThat(leader.getSpec().getBackoffLimit()).isEqualTo(2);

    // the workers: an Indexed Job of the other 2 nodes, no shared volume, no server, rendezvous through the Service
    var ws = workers.getSpec();
    assertThat(ws.getCompletionMode()).isEqualTo("Indexed");
    assertThat(ws.getCompletions()).isEqualTo(2);
    assertThat(ws.getParallelism()).isEqualTo(2);
    assertThat(ws.getBackoffLimit()).as("each failure fails every node").isEqualTo(4);
    assertThat(ws.getPodFailurePolicy().getRules()).isEqualTo(leader.getSpec().getPodFailurePolicy().getRules());
    assertOwnedBy(workers.getMetadata().getOwnerReferences(), get(ns, "pair").getMetadata().getUid());
    Container wc = ws.getTemplate().getSpec().getContainers().get(0);
    assertThat(wc.getCommand()).isEqualTo(lc.getCommand());
    assertThat(env(wc)).containsEntry("NNODES", "3").containsEntry("MASTER_ADDR", "rdzv-pair")
        .containsEntry("MASTER_PORT", "29500").containsEntry(TrainerContract.ENV_PORT, "0").doesNotContainKey("NODE_RANK");
    assertThat(wc.getEnv()).anySatisfy(e -> {
      assertThat(e.getName()).isEqualTo(TrainerContract.ENV_WORKER_INDEX);
      assertThat(e.getValueFrom().getFieldRef().getFieldPath())
          .isEqualTo("metadata.annotations['batch.kubernetes.io/job-completion-index']");
    });
    assertThat(wc.getPorts()).isEmpty();
    assertThat(wc.getResources().getLimits()).isEqualTo(lc.getResources().getLimits());
    assertThat(ws.getTemplate().getMetadata().getLabels()).containsEntry(Names.ROLE_LABEL, Names.WORKER)
        .doesNotContainKey(Names.METRICS_LABEL);
    assertThat(ws.getTemplate().getMetadata().getAnnotations()).doesNotContainKey("prometheus.io/scrape");
    assertThat(ws.getTemplate().getSpec().getVolumes()).noneMatch(v -> v.getPersistentVolumeClaim() != null
        && v.getPersistentVolumeClaim().getClaimName().equals("pair-checkpoints"));
    var service = client.services().inNamespace(ns).withName("rdzv-pair").get();
    assertThat(service.getSpec().getClusterIP()).isEqualTo("None");
    assertThat(service.getSpec().getPublishNotReadyAddresses()).isTrue();
    assertThat(service.getSpec().getSelector()).containsEntry(Names.JOB_LABEL, "pair")
        .containsEntry(Names.ROLE_LABEL, Names.LEADER);
    assertThat(service.getSpec().getPorts()).singleElement().satisfies(p -> assertThat(p.getPort()).isEqualTo(29500));

    Pod lead = createPod(leader, "a", p -> {
      Jobs.running(p, "127.0.0.1");
      return p;
    });
    Pod[] nodes = new Pod[2];
    for (int i = 0; i < 2; i++) {
      Pod pod = Jobs.podFor(workers, i + "-a");
      pod.getMetadata().getAnnotations().put(Names.COMPLETION_INDEX_ANNOTATION, Integer.toString(i));
      nodes[i] = client.pods().resource(pod).create();
      Jobs.running(nodes[i], "127.0.0.1");
      nodes[i] = client.pods().resource(nodes[i]).updateStatus();
    }
    FineTuneJob st = awaitStatus(ns, "pair", j -> "12/12".equals(j.getStatus().ranks));
    assertThat(st.getStatus().phase).isEqualTo(Phase.Running);

    // node 2 is killed; the others' collectives fail, so node 0 exits with the retry code too
    setPodStatus(nodes[1], p -> {
      Jobs.terminated(p, 137, "");
      return p;
    });
    setPodStatus(lead, p -> {
      Jobs.terminated(p, TrainerContract.ExitCodes.CRASHED, "rank 0 of 12: a peer rank is gone (Connection reset by peer)");
      return p;
    });
    st = awaitStatus(ns, "pair", j -> Integer.valueOf(2).equals(j.getStatus().rankFailures));
    assertThat(st.getStatus().ranks).isEqualTo("4/12");
    String killed = "Ranks 8-11 on node 2 (Pod pair-workers-1-a) exited with code 137";
    String lost = "Ranks 0-3 on node 0 (Pod pair-train-a) exited with code 1: rank 0 of 12: a peer rank is gone"
        + " (Connection reset by peer)";
    assertThat(st.getStatus().failedRanks).containsExactlyInAnyOrder(killed, lost);
    await().untilAsserted(() -> assertThat(events(ns, "pair")).filteredOn(e -> e.getReason().equals("RankFailed"))
        .extracting(Event::getMessage).containsExactlyInAnyOrder(killed, lost));

    // the workers' Job gives up: the job fails with its reason, and the leader's Job, still running, is suspended
    setJobCondition(workers, "Failed");
    st = awaitStatus(ns, "pair", j -> j.getStatus().phase == Phase.Failed);
    assertThat(st.getStatus().reason).isEqualTo("BackoffLimitExceeded");
    assertThat(st.getStatus().message).startsWith("worker Job pair-workers failed, so the job stops: ");
    await().atMost(Duration.ofSeconds(20)).until(
        () -> client.batch().v1().jobs().inNamespace(ns).withName("pair-train").get().getSpec().getSuspend());
    assertThat(reasons(ns, "pair")).contains("Created");
    assertThat(events(ns, "pair").stream().filter(e -> e.getReason().equals("Created")).findFirst().get().getMessage())
        .isEqualTo("Created training Job pair-train (node 0), worker Job pair-workers (nodes 1-2), Service rdzv-pair,"
            + " PersistentVolumeClaim pair-checkpoints, ConfigMap pair-spec");
  }

  private static Map<String, String> env(Container c) {
    return c.getEnv().stream().filter(e -> e.getValue() != null)
        .collect(Collectors.toMap(e -> e.getName(), e -> e.getValue()));
  }

  @Test
  void suspendWorksBothWays() {
    String ns = "suspend";
    create(Jobs.small("pausable", ns));
    awaitJob(ns, "pausable");
    awaitStatus(ns, "pausable", j -> j.getStatus().phase == Phase.Pending);

    FineTuneJob live = get(ns, "pausable");
    live.getSpec().suspend = true;
    client.resource(live).update();
    await().atMost(Duration.ofSeconds(20)).until(
        () -> Boolean.TRUE.equals(client.batch().v1().jobs().inNamespace(ns).withName("pausable-train").get().getSpec().getSuspend()));
    FineTuneJob st = awaitStatus(ns, "pausable", j -> j.getStatus().phase == Phase.Suspended);
    assertThat(st.getStatus().conditions).anySatisfy(c -> assertThat(c.getType() + c.getStatus()).isEqualTo("SuspendedTrue"));
    assertThat(st.getStatus().conditions).noneSatisfy(c -> assertThat(c.getType()).isEqualTo("SpecChangeRefused"));

    live = get(ns, "pausable");
    live.getSpec().suspend = false;
    client.resource(live).update();
    await().atMost(Duration.ofSeconds(20)).until(
        () -> Boolean.FALSE.equals(client.batch().v1().jobs().inNamespace(ns).withName("pausable-train").get().getSpec().getSuspend()));
    st = awaitStatus(ns, "pausable", j -> j.getStatus().phase == Phase.Pending);
    assertThat(st.getStatus().conditions).anySatisfy(c -> assertThat(c.getType() + c.getStatus()).isEqualTo("SuspendedFalse"));
    await().untilAsserted(() -> assertThat(reasons(ns, "pausable")).containsExactly("Created", "Suspended", "Resumed"));

    // created suspended: the Job starts suspended
    FineTuneJob held = Jobs.small("held", ns);
    held.getSpec().suspend = true;
    create(held);
    assertThat(awaitJob(ns, "held").getSpec().getSuspend()).isTrue();
    awaitStatus(ns, "held", j -> j.getStatus().phase == Phase.Suspended);
  }

  @Test
  void aJobHeldByAQueueIsLeftAloneUntilAdmitted() {
    String ns = "kueue";
    FineTuneJob ftj = Jobs.small("queued", ns);
    ftj.getSpec().labels = Map.of("kueue.x-k8s.io/queue-name", "team-a");
    create(ftj);
    Job job = awaitJob(ns, "queued");
    awaitStatus(ns, "queued", j -> j.getStatus().phase == Phase.Pending);
    // Kueue suspends the Job until the workload is admitted
    client.batch().v1().jobs().inNamespace(ns).withName("queued-train").edit(j -> {
      j.getSpec().setSuspend(true);
      return j;
    });
    FineTuneJob st = awaitStatus(ns, "queued", j -> "Queued".equals(j.getStatus().reason));
    assertThat(st.getStatus().phase).isEqualTo(Phase.Pending);
    sleep(1500);
    assertThat(client.batch().v1().jobs().resource(job).get().getSpec().getSuspend())
        .as("the operator does not undo the queue's suspend").isTrue();
    // admitted
    client.batch().v1().jobs().inNamespace(ns).withName("queued-train").edit(j -> {
      j.getSpec().setSuspend(false);
      return j;
    });
    awaitStatus(ns, "queued", j -> "WaitingForPod".equals(j.getStatus().reason));
    assertThat(reasons(ns, "queued")).containsExactly("Created");
  }

  @Test
  void otherSpecChangesAreRefused() {
    String ns = "immutable";
    create(Jobs.small("fixed", ns));
    Job original = awaitJob(ns, "fixed");
    awaitStatus(ns, "fixed", j -> j.getStatus().phase == Phase.Pending);
    FineTuneJob live = get(ns, "fixed");
    live.getSpec().training.epochs = 9;
    live.getSpec().resources.memory = "64Gi";
    client.resource(live).update();
    FineTuneJob st = awaitStatus(ns, "fixed", j -> j.getStatus().conditions.stream()
        .anyMatch(c -> c.getType().equals("SpecChangeRefused") && c.getStatus().equals("True")));
    assertThat(st.getStatus().phase).isEqualTo(Phase.Pending);
    assertThat(st.getStatus().observedGeneration).isEqualTo(st.getMetadata().getGeneration());
    await().untilAsserted(() -> assertThat(events(ns, "fixed")).anySatisfy(e -> {
      assertThat(e.getReason()).isEqualTo("SpecChangeRefused");
      assertThat(e.getType()).isEqualTo("Warning");
      assertThat(e.getMessage()).contains("only spec.suspend can change");
    }));
    Job after = client.batch().v1().jobs().inNamespace(ns).withName("fixed-train").get();
    assertThat(after.getSpec().getTemplate()).isEqualTo(original.getSpec().getTemplate());

    // changing it back clears the condition
    live = get(ns, "fixed");
    live.getSpec().training.epochs = 3;
    live.getSpec().resources.memory = "1Gi";
    client.resource(live).update();
    awaitStatus(ns, "fixed", j -> j.getStatus().conditions.stream()
        .anyMatch(c -> c.getType().equals("SpecChangeRefused") && c.getStatus().equals("False")));
    assertThat(reasons(ns, "fixed").stream().filter("SpecChangeRefused"::equals)).hasSize(1);
  }

  @Test
  void aJobDeletedBeforeItFinishedFailsAndIsNotRecreated() {
    String ns = "deleted";
    create(Jobs.small("gone", ns));
    Job job = awaitJob(ns, "gone");
    awaitStatus(ns, "gone", j -> j.getStatus().phase == Phase.Pending);
    client.batch().v1().jobs().resource(job).delete();
    FineTuneJob st = awaitStatus(ns, "gone", j -> j.getStatus().phase == Phase.Failed);
    assertThat(st.getStatus().reason).isEqualTo("JobDeleted");
    sleep(1500);
    assertThat(client.batch().v1().jobs().inNamespace(ns).withName("gone-train").get()).isNull();
    assertThat(reasons(ns, "gone")).containsExactly("Created", "Failed");
  }

  @Test
  void aForeignObjectWithTheJobsNameIsNotAdopted() {
    String ns = "conflict";
    client.batch().v1().jobs().inNamespace(ns).resource(new io.fabric8.kubernetes.api.model.batch.v1.JobBuilder()
        .withNewMetadata().withName("taken-train").withNamespace(ns).endMetadata()
        .withNewSpec().withNewTemplate().withNewSpec().addNewContainer().withName("other").withImage("busybox")
        .endContainer().withRestartPolicy("Never").endSpec().endTemplate().endSpec().build()).create();
    create(Jobs.small("taken", ns));
    FineTuneJob st = awaitStatus(ns, "taken", j -> j.getStatus().phase == Phase.Failed);
    assertThat(st.getStatus().reason).isEqualTo("NameConflict");
    assertThat(st.getStatus().message).contains("Job taken-train").contains("not owned");
    assertThat(st.getStatus().jobName).isNull();
    Job other = client.batch().v1().jobs().inNamespace(ns).withName("taken-train").get();
    assertThat(other.getSpec().getTemplate().getSpec().getContainers().get(0).getName()).isEqualTo("other");
    assertThat(other.getMetadata().getOwnerReferences()).isEmpty();
  }

  @Test
  void metricsCountJobsByPhase() {
    String ns = "metrics";
    create(Jobs.small("m1", ns));
    FineTuneJob broken = Jobs.small("m2", ns);
    broken.getSpec().training.epochs = -1;
    create(broken);
    awaitStatus(ns, "m2", j -> j.getStatus().phase == Phase.Failed);
    awaitStatus(ns, "m1", j -> j.getStatus().phase == Phase.Pending);
    String text = registry.scrape();
    assertThat(text).contains("finetune_operator_jobs{phase=\"Failed\"}");
    assertThat(registry.get(OperatorMetrics.JOBS).tag("phase", "Failed").gauge().value()).isGreaterThanOrEqualTo(1.0);
    assertThat(registry.get(OperatorMetrics.JOBS).tag("phase", "Pending").gauge().value()).isGreaterThanOrEqualTo(1.0);
    assertThat(text).contains("operator_sdk_reconciliations");
  }

  private static void assertOwnedBy(List<OwnerReference> refs, String uid) {
    assertThat(refs).singleElement().satisfies(r -> {
      assertThat(r.getKind()).isEqualTo("FineTuneJob");
      assertThat(r.getApiVersion()).isEqualTo("finetune.dev/v1alpha1");
      assertThat(r.getUid()).isEqualTo(uid);
      assertThat(r.getController()).isTrue();
    });
  }

  private static void sleep(long ms) {
    try {
      Thread.sleep(ms);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
