package dev.finetune.helm;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import com.marcnuri.helm.Helm;
import com.marcnuri.helm.LintResult;
import dev.finetune.api.FineTuneJob;
import dev.finetune.api.FineTuneJobs;
import dev.finetune.api.testing.Repo;
import dev.finetune.operator.config.OperatorConfig;
import dev.finetune.operator.resources.TrainerResources;
import io.fabric8.kubernetes.api.model.ConfigMap;
import io.fabric8.kubernetes.api.model.EnvVar;
import io.fabric8.kubernetes.api.model.GenericKubernetesResource;
import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.LocalObjectReference;
import io.fabric8.kubernetes.api.model.Service;
import io.fabric8.kubernetes.api.model.ServiceAccount;
import io.fabric8.kubernetes.api.model.apps.Deployment;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.api.model.rbac.ClusterRole;
import io.fabric8.kubernetes.api.model.rbac.ClusterRoleBinding;
import io.fabric8.kubernetes.api.model.rbac.Role;
import io.fabric8.kubernetes.api.model.rbac.RoleBinding;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

class ChartTest {
  private static final ObjectMapper YAML = new ObjectMapper(new YAMLFactory());

  @Test
  void lintsStrictly() {
    LintResult result = new Helm(Chart.DIR).lint().strict().call();
    assertThat(result.isFailed()).as(String.join("\n", result.getMessages())).isFalse();
  }

  @Test
  void defaultsRenderTheOperatorWithClusterWideLeastPrivilege() {
    List<HasMetadata> objects = Chart.render(Map.of());
    assertThat(objects).extracting(HasMetadata::getKind).containsExactlyInAnyOrder(
        "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Service", "Deployment");
    Deployment deployment = Chart.ofKind(objects, Deployment.class).get(0);
    assertThat(deployment.getMetadata().getNamespace()).isEqualTo(Chart.NAMESPACE);
    var container = deployment.getSpec().getTemplate().getSpec().getContainers().get(0);
    assertThat(container.getImage()).isEqualTo("ghcr.io/finetune-dev/finetune-operator:" + Chart.projectVersion());
    assertThat(container.getLivenessProbe().getHttpGet().getPath()).isEqualTo("/healthz");
    assertThat(container.getReadinessProbe().getHttpGet().getPath()).isEqualTo("/readyz");
    assertThat(container.getResources().getLimits()).containsKey("memory");
    assertThat(deployment.getSpec().getTemplate().getSpec().getServiceAccountName())
        .isEqualTo(Chart.ofKind(objects, ServiceAccount.class).get(0).getMetadata().getName());
    Service service = Chart.ofKind(objects, Service.class).get(0);
    assertThat(service.getSpec().getSelector()).isEqualTo(deployment.getSpec().getSelector().getMatchLabels());
    // Leader election only in the release namespace.
    Role lease = Chart.ofKind(objects, Role.class).get(0);
    assertThat(lease.getMetadata().getNamespace()).isEqualTo(Chart.NAMESPACE);
    assertThat(lease.getRules()).singleElement().satisfies(r -> assertThat(r.getResources()).containsExactly("leases"));
    // Nothing in the ClusterRole may delete, and no wildcard anywhere.
    ClusterRole role = Chart.ofKind(objects, ClusterRole.class).get(0);
    assertThat(role.getRules()).allSatisfy(r -> {
      assertThat(r.getVerbs()).doesNotContain("*", "delete", "deletecollection", "escalate", "bind", "impersonate");
      assertThat(r.getResources()).doesNotContain("*", "secrets");
    });
    assertThat(Chart.ofKind(objects, ClusterRoleBinding.class).get(0).getRoleRef().getName()).isEqualTo(role.getMetadata().getName());
  }

  @Test
  void chartValuesReachTheOperatorConfiguration() {
    List<HasMetadata> objects = Chart.render(Map.of(
        "trainer.image", "registry.example/trainer:9", "trainer.cpu", "7", "trainer.memory", "30Gi",
        "trainer.progressIntervalSeconds", "5", "watchNamespaces[0]", "team-a", "watchNamespaces[1]", "team-b", "metrics.port", "8181"));
    Deployment deployment = Chart.ofKind(objects, Deployment.class).get(0);
    Map<String, String> env = new HashMap<>();
    for (EnvVar e : deployment.getSpec().getTemplate().getSpec().getContainers().get(0).getEnv()) {
      env.put(e.getName(), e.getValue() != null ? e.getValue() : "from:" + e.getValueFrom().getFieldRef().getFieldPath());
    }
    OperatorConfig config = OperatorConfig.fromEnv(env);
    assertThat(config.trainerImage()).isEqualTo("registry.example/trainer:9");
    assertThat(config.trainerCpuImage()).isEqualTo("ghcr.io/finetune-dev/finetune-trainer:" + Chart.projectVersion());
    assertThat(config.trainerCpu()).isEqualTo("7");
    assertThat(config.trainerMemory()).isEqualTo("30Gi");
    assertThat(config.progressInterval().toSeconds()).isEqualTo(5);
    assertThat(config.watchNamespaces()).containsExactlyInAnyOrder("team-a", "team-b");
    assertThat(config.metricsPort()).isEqualTo(8181);
    assertThat(config.leaderElection()).isTrue();
    assertThat(config.leaseNamespace()).isEqualTo(Chart.NAMESPACE);
    assertThat(deployment.getSpec().getTemplate().getSpec().getContainers().get(0).getPorts().get(0).getContainerPort()).isEqualTo(8181);
  }

  /** hub.* and hubCache.claimName reach the trainer Pods through the operator's environment. */
  @Test
  void hubValuesReachTheTrainerPods() throws IOException {
    OperatorConfig config = configOf(Chart.render(Map.of(
        "hub.endpoint", "https://hf-mirror.example.com", "hub.httpsProxy", "http://proxy.example.com:3128",
        "hub.httpProxy", "http://proxy.example.com:3128", "hub.noProxy", ".svc,.cluster.local",
        "hubCache.claimName", "hub-cache")));
    assertThat(config.hub()).isEqualTo(new OperatorConfig.Hub("hub-cache", "https://hf-mirror.example.com",
        "http://proxy.example.com:3128", "http://proxy.example.com:3128", ".svc,.cluster.local"));
    Job job = trainerJob(Repo.examples().resolve("job.yaml"), config); // GPT-2 from the hub
    var pod = job.getSpec().getTemplate().getSpec();
    Map<String, String> env = new HashMap<>();
    pod.getContainers().get(0).getEnv().stream().filter(e -> e.getValue() != null).forEach(e -> env.put(e.getName(), e.getValue()));
    assertThat(env).containsEntry("HF_ENDPOINT", "https://hf-mirror.example.com")
        .containsEntry("HTTPS_PROXY", "http://proxy.example.com:3128").containsEntry("HTTP_PROXY", "http://proxy.example.com:3128")
        .containsEntry("NO_PROXY", ".svc,.cluster.local").containsEntry("HF_HUB_CACHE", "/hub-cache");
    assertThat(pod.getContainers().get(0).getVolumeMounts()).anySatisfy(m -> {
      assertThat(m.getMountPath()).isEqualTo("/hub-cache");
      assertThat(m.getReadOnly()).isNotEqualTo(Boolean.TRUE);
    });
    assertThat(pod.getVolumes()).anySatisfy(v -> assertThat(
        v.getPersistentVolumeClaim() == null ? null : v.getPersistentVolumeClaim().getClaimName()).isEqualTo("hub-cache"));
    assertThat(RestrictedPodSecurity.violations(pod)).isEmpty();

    // the defaults: nothing of the hub in the operator's configuration or the trainer Pods
    OperatorConfig plain = configOf(Chart.render(Map.of()));
    assertThat(plain.hub()).isEqualTo(OperatorConfig.Hub.none());
    assertThat(trainerJob(Repo.examples().resolve("job.yaml"), plain).getSpec().getTemplate().getSpec().getContainers()
        .get(0).getEnv()).extracting(EnvVar::getName).doesNotContain("HF_ENDPOINT", "HTTPS_PROXY", "HTTP_PROXY",
            "NO_PROXY", "HF_HUB_CACHE", "HF_TOKEN");
  }

  /** Jobs without GPUs run the CPU trainer image, jobs with GPUs the CUDA one, both from trainer.repository. */
  @Test
  void theTrainerImageFollowsTheJobsGpus() throws IOException {
    String version = Chart.projectVersion();
    OperatorConfig config = configOf(Chart.render(Map.of("trainer.repository", "registry.example/ml/finetune-trainer")));
    assertThat(image(trainerJob(Repo.examples().resolve("small-cpu.yaml"), config))).as("gpus: 0")
        .isEqualTo("registry.example/ml/finetune-trainer:" + version);
    assertThat(image(trainerJob(Repo.examples().resolve("job.yaml"), config))).as("gpus: 1")
        .isEqualTo("registry.example/ml/finetune-trainer:" + version + "-cuda");

    // trainer.tag (a number stays a tag), then either image in full
    OperatorConfig tagged = configOf(Chart.render(Map.of("trainer.repository", "registry.example/t", "trainer.tag", "2")));
    assertThat(List.of(tagged.trainerCpuImage(), tagged.trainerImage()))
        .containsExactly("registry.example/t:2", "registry.example/t:2-cuda");
    OperatorConfig full = configOf(Chart.render(Map.of(
        "trainer.image", "registry.example/gpu-trainer:9", "trainer.cpuImage", "registry.example/cpu-trainer:9")));
    assertThat(image(trainerJob(Repo.examples().resolve("small-cpu.yaml"), full))).isEqualTo("registry.example/cpu-trainer:9");
    assertThat(image(trainerJob(Repo.examples().resolve("job.yaml"), full))).isEqualTo("registry.example/gpu-trainer:9");
  }

  /** imagePullSecrets reach the operator's Pod and, through the operator's environment, every trainer Pod. */
  @Test
  void imagePullSecretsReachTheTrainerPods() throws IOException {
    List<HasMetadata> objects = Chart.render(Map.of("imagePullSecrets[0].name", "regcred", "imagePullSecrets[1].name", "mirror"));
    Deployment deployment = Chart.ofKind(objects, Deployment.class).get(0);
    assertThat(deployment.getSpec().getTemplate().getSpec().getImagePullSecrets()).extracting(LocalObjectReference::getName)
        .containsExactly("regcred", "mirror");
    OperatorConfig config = configOf(objects);
    assertThat(config.imagePullSecrets()).containsExactly("regcred", "mirror");
    for (String example : List.of("small-cpu.yaml", "job.yaml")) {
      assertThat(trainerJob(Repo.examples().resolve(example), config).getSpec().getTemplate().getSpec().getImagePullSecrets())
          .as(example).extracting(LocalObjectReference::getName).containsExactly("regcred", "mirror");
    }
    // none by default
    OperatorConfig plain = configOf(Chart.render(Map.of()));
    assertThat(plain.imagePullSecrets()).isEmpty();
    assertThat(trainerJob(Repo.examples().resolve("small-cpu.yaml"), plain).getSpec().getTemplate().getSpec()
        .getImagePullSecrets()).isNullOrEmpty();
  }

  private static String image(Job job) {
    return job.getSpec().getTemplate().getSpec().getContainers().get(0).getImage();
  }

  /** The operator's configuration from the rendered Deployment's environment. */
  static OperatorConfig configOf(List<HasMetadata> objects) {
    Deployment deployment = Chart.ofKind(objects, Deployment.class).get(0);
    Map<String, String> env = new HashMap<>();
    for (EnvVar e : deployment.getSpec().getTemplate().getSpec().getContainers().get(0).getEnv()) {
      env.put(e.getName(), e.getValue() != null ? e.getValue() : "from:" + e.getValueFrom().getFieldRef().getFieldPath());
    }
    return OperatorConfig.fromEnv(env);
  }

  @Test
  void watchedNamespacesGetRolesInsteadOfAClusterRole() {
    List<HasMetadata> objects = Chart.render(Map.of("watchNamespaces[0]", "team-a", "watchNamespaces[1]", "team-b"));
    assertThat(Chart.ofKind(objects, ClusterRole.class)).isEmpty();
    assertThat(Chart.ofKind(objects, ClusterRoleBinding.class)).isEmpty();
    assertThat(Chart.ofKind(objects, Role.class)).extracting(r -> r.getMetadata().getNamespace())
        .containsExactlyInAnyOrder("team-a", "team-b", Chart.NAMESPACE);
    assertThat(Chart.ofKind(objects, RoleBinding.class)).allSatisfy(b ->
        assertThat(b.getSubjects()).singleElement().satisfies(s -> assertThat(s.getNamespace()).isEqualTo(Chart.NAMESPACE)));
  }

  static List<Map<String, String>> options() {
    return List.of(
        Map.of("serviceMonitor.enabled", "true"),
        Map.of("podMonitor.enabled", "true"),
        Map.of("podMonitor.enabled", "true", "watchNamespaces[0]", "ml"),
        Map.of("dashboard.enabled", "true"),
        Map.of("leaderElection.enabled", "false"),
        Map.of("replicas", "2"),
        Map.of("rbac.create", "false", "serviceAccount.create", "false", "serviceAccount.name", "existing"),
        Map.of("imagePullSecrets[0].name", "regcred", "priorityClassName", "system-cluster-critical",
            "nodeSelector.pool", "system", "tolerations[0].key", "dedicated", "tolerations[0].operator", "Exists"));
  }

  @ParameterizedTest
  @MethodSource("options")
  void everyOptionRendersKubernetesObjectsThatStayRestricted(Map<String, String> values) {
    List<HasMetadata> objects = Chart.render(values);
    assertThat(objects).isNotEmpty().allSatisfy(o -> {
      assertThat(o.getApiVersion()).isNotBlank();
      assertThat(o.getMetadata().getName()).isNotBlank();
    });
    Deployment deployment = Chart.ofKind(objects, Deployment.class).get(0);
    assertThat(RestrictedPodSecurity.violations(deployment.getSpec().getTemplate().getSpec())).isEmpty();
    if (values.containsKey("serviceMonitor.enabled") || values.containsKey("podMonitor.enabled")) {
      assertThat(Chart.ofKind(objects, GenericKubernetesResource.class)).extracting(HasMetadata::getKind)
          .containsExactly(values.containsKey("serviceMonitor.enabled") ? "ServiceMonitor" : "PodMonitor");
    }
    if (values.containsKey("rbac.create")) {
      assertThat(objects).extracting(HasMetadata::getKind).doesNotContain("ServiceAccount", "ClusterRole", "Role");
      assertThat(deployment.getSpec().getTemplate().getSpec().getServiceAccountName()).isEqualTo("existing");
    }
  }

  @Test
  void severalReplicasNeedLeaderElection() {
    assertThatThrownBy(() -> Chart.render(Map.of("replicas", "2", "leaderElection.enabled", "false")))
        .hasMessageContaining("replicas > 1 needs leaderElection.enabled=true");
  }

  @Test
  void thePodMonitorSelectsTheTrainerPodsTheOperatorCreates() throws IOException {
    GenericKubernetesResource monitor = Chart.ofKind(Chart.render(Map.of("podMonitor.enabled", "true")),
        GenericKubernetesResource.class).get(0);
    Map<String, Object> spec = monitor.get("spec");
    @SuppressWarnings("unchecked")
    Map<String, String> selector = (Map<String, String>) ((Map<String, Object>) spec.get("selector")).get("matchLabels");
    @SuppressWarnings("unchecked")
    String port = ((List<Map<String, String>>) spec.get("podMetricsEndpoints")).get(0).get("port");
    Job job = trainerJob(Repo.examples().resolve("small-cpu.yaml"));
    var pod = job.getSpec().getTemplate();
    assertThat(pod.getMetadata().getLabels()).containsAllEntriesOf(selector);
    assertThat(pod.getSpec().getContainers().get(0).getPorts()).anySatisfy(p -> assertThat(p.getName()).isEqualTo(port));
  }

  @Test
  void theTrainerJobsTheOperatorCreatesAreRestricted() throws IOException {
    for (String example : List.of("small-cpu.yaml", "job.yaml", "phi3-files.yaml")) {
      Job job = trainerJob(Repo.examples().resolve(example));
      assertThat(RestrictedPodSecurity.violations(job.getSpec().getTemplate().getSpec())).as(example).isEmpty();
    }
  }

  @Test
  void theDashboardConfigMapCarriesTheDashboardForGrafanasSidecar() throws IOException {
    ConfigMap cm = Chart.ofKind(Chart.render(Map.of("dashboard.enabled", "true")), ConfigMap.class).get(0);
    assertThat(cm.getMetadata().getLabels()).containsEntry("grafana_dashboard", "1");
    JsonNode embedded = new ObjectMapper().readTree(cm.getData().get("finetune.json"));
    assertThat(embedded).isEqualTo(new ObjectMapper().readTree(Chart.DIR.resolve("dashboards/finetune.json").toFile()));
  }

  @Test
  void everyValueIsDocumentedInTheChartReadme() throws IOException {
    JsonNode values = YAML.readTree(Chart.DIR.resolve("values.yaml").toFile());
    String readme = Files.readString(Chart.DIR.resolve("README.md"));
    List<String> missing = new ArrayList<>();
    collectLeaves("", values, missing, readme);
    assertThat(missing).as("values.yaml keys missing from the chart README's table").isEmpty();
  }

  @Test
  void theChartCarriesTheRepositorysCrd() throws IOException {
    assertThat(Files.readString(Chart.DIR.resolve("crds/finetunejobs.finetune.dev-v1.yml"))).isEqualTo(Files.readString(Repo.crd()));
  }

  private static void collectLeaves(String prefix, JsonNode node, List<String> missing, String readme) {
    if (node.isObject() && node.size() > 0 && !prefix.endsWith("labels") && !prefix.equals("resources")
        && !prefix.endsWith("SecurityContext") && !prefix.equals("securityContext")) {
      for (Iterator<Map.Entry<String, JsonNode>> it = node.fields(); it.hasNext(); ) {
        Map.Entry<String, JsonNode> e = it.next();
        collectLeaves(prefix.isEmpty() ? e.getKey() : prefix + "." + e.getKey(), e.getValue(), missing, readme);
      }
    } else if (!readme.contains("| `" + prefix + "` |")) {
      missing.add(prefix);
    }
  }

  static Job trainerJob(Path example) throws IOException {
    return trainerJob(example, OperatorConfig.defaults());
  }

  static Job trainerJob(Path example, OperatorConfig config) throws IOException {
    FineTuneJob ftj = FineTuneJobs.read(example);
    ftj.getMetadata().setNamespace("ml");
    ftj.getMetadata().setUid("0000-1111");
    return new TrainerResources(config).job(ftj);
  }

  static String kinds(List<HasMetadata> objects) {
    return objects.stream().map(HasMetadata::getKind).collect(Collectors.joining(","));
  }
}
