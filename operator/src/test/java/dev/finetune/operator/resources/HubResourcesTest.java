package dev.finetune.operator.resources;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.fasterxml.jackson.databind.node.ObjectNode;

import dev.finetune.api.DatasetSpec;
import dev.finetune.api.FineTuneJob;
import dev.finetune.api.FineTuneJobs;
import dev.finetune.api.ModelSpec;
import dev.finetune.api.trainer.TrainerContract;
import dev.finetune.operator.config.OperatorConfig;
import dev.finetune.operator.testing.Jobs;
import io.fabric8.kubernetes.api.model.Container;
import io.fabric8.kubernetes.api.model.EnvVar;
import io.fabric8.kubernetes.api.model.PodSpec;
import io.fabric8.kubernetes.api.model.Volume;
import io.fabric8.kubernetes.api.model.VolumeMount;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.junit.jupiter.api.Test;

/**
 * HuggingFace hub downloads in the trainer Pods: HF_TOKEN from the job's Secret, the shared cache claim as
 * HF_HUB_CACHE, the operator's hub endpoint and proxies; in every trainer container, the leader's and the workers'.
 */
class HubResourcesTest {
  private static final OperatorConfig PLAIN = OperatorConfig.fromEnv(Map.of());
  private static final OperatorConfig CHART = OperatorConfig.fromEnv(Map.of(
      "FINETUNE_HUB_CACHE_CLAIM", "hub-cache",
      "FINETUNE_HUB_ENDPOINT", "https://hf-mirror.example.com",
      "FINETUNE_HUB_HTTPS_PROXY", "http://proxy.example.com:3128",
      "FINETUNE_HUB_HTTP_PROXY", "http://proxy.example.com:3128",
      "FINETUNE_HUB_NO_PROXY", ".svc,.cluster.local,10.0.0.0/8"));

  /** A job on a hub model; nodes > 1 also makes a workers' Job. */
  private static FineTuneJob hubJob(int nodes) {
    FineTuneJob ftj = Jobs.small("llama", "ml");
    ftj.getMetadata().setUid("u-1");
    ftj.getSpec().model.scratch = null;
    ftj.getSpec().model.hub = "meta-llama/Llama-3.2-1B";
    ftj.getSpec().resources.nodes = nodes;
    return ftj;
  }

  private static List<Job> jobs(OperatorConfig config, FineTuneJob ftj) {
    TrainerResources r = new TrainerResources(config);
    return Names.nodes(ftj) > 1 ? List.of(r.job(ftj), r.workersJob(ftj)) : List.of(r.job(ftj));
  }

  private static Container trainer(Job job) {
    return job.getSpec().getTemplate().getSpec().getContainers().get(0);
  }

  private static Optional<EnvVar> env(Container c, String name) {
    return c.getEnv().stream().filter(e -> e.getName().equals(name)).findFirst();
  }

  private static Map<String, String> values(Container c) {
    Map<String, String> values = new HashMap<>();
    c.getEnv().stream().filter(e -> e.getValue() != null).forEach(e -> values.put(e.getName(), e.getValue()));
    return values;
  }

  @Test
  void theTokenComesFromTheSecretInEveryTrainerContainerAndNeverAsAValue() {
    FineTuneJob ftj = hubJob(3);
    ftj.getSpec().model.hubTokenSecret = new ModelSpec.HubTokenSecret();
    ftj.getSpec().model.hubTokenSecret.name = "hf-token";
    List<Job> jobs = jobs(PLAIN, ftj);
    assertThat(jobs).hasSize(2);
    for (Job job : jobs) {
      EnvVar token = env(trainer(job), TrainerContract.ENV_HF_TOKEN).orElseThrow();
      assertThat(token.getValue()).as("the operator never has the token").isNull();
      var ref = token.getValueFrom().getSecretKeyRef();
      assertThat(ref.getName()).isEqualTo("hf-token");
      assertThat(ref.getKey()).as("the default key").isEqualTo("token");
      assertThat(ref.getOptional()).as("a missing Secret stops the Pod rather than running without the token").isFalse();
    }

    ftj.getSpec().model.hubTokenSecret.key = "HF_TOKEN";
    assertThat(env(trainer(jobs(PLAIN, ftj).get(1)), TrainerContract.ENV_HF_TOKEN).orElseThrow()
        .getValueFrom().getSecretKeyRef().getKey()).isEqualTo("HF_TOKEN");
    // the job file the trainer reads names the Secret, not the token
    assertThat(TrainerResources.specFile(ftj)).contains("hubTokenSecret").contains("hf-token");

    FineTuneJob none = hubJob(1);
    assertThat(env(trainer(jobs(PLAIN, none).get(0)), TrainerContract.ENV_HF_TOKEN)).isEmpty();
  }

  @Test
  void theJobsCacheClaimIsMountedReadWriteAsHfHubCache() {
    FineTuneJob ftj = hubJob(2);
    ftj.getSpec().model.cacheClaim = "team-hub-cache";
    for (OperatorConfig config : List.of(PLAIN, CHART)) { // the job's claim wins over the chart's default
      for (Job job : jobs(config, ftj)) {
        assertCache(job, "team-hub-cache");
      }
    }
  }

  @Test
  void theChartsDefaultCacheServesJobsThatDownloadFromTheHub() {
    for (Job job : jobs(CHART, hubJob(2))) {
      assertCache(job, "hub-cache");
    }
    // without a default, a hub job downloads into its run folder as before: no cache volume, no HF_HUB_CACHE
    Job plain = jobs(PLAIN, hubJob(1)).get(0);
    assertThat(env(trainer(plain), TrainerContract.ENV_HF_HUB_CACHE)).isEmpty();
    assertThat(plain.getSpec().getTemplate().getSpec().getVolumes()).extracting(Volume::getName)
        .doesNotContain(TrainerResources.VOLUME_HUB_CACHE);
    assertThat(plain.getSpec().getTemplate().getSpec().getSecurityContext().getFsGroupChangePolicy()).isNull();
    // a job that downloads nothing from the hub does not mount the default (it might not exist in its namespace)
    Job scratch = jobs(CHART, Jobs.small("tiny", "ml")).get(0);
    assertThat(env(trainer(scratch), TrainerContract.ENV_HF_HUB_CACHE)).isEmpty();
    assertThat(scratch.getSpec().getTemplate().getSpec().getVolumes()).extracting(Volume::getName)
        .doesNotContain(TrainerResources.VOLUME_HUB_CACHE);
    // unless it names a cache itself
    FineTuneJob named = Jobs.small("tiny", "ml");
    named.getSpec().model.cacheClaim = "mine";
    assertCache(jobs(PLAIN, named).get(0), "mine");
  }

  @Test
  void aDataSetFromTheHubUsesTheDefaultCacheToo() throws Exception {
    assumeTrue(hasField(DatasetSpec.class, "hub"), "this api has no spec.dataset.hub");
    ObjectNode tree = FineTuneJobs.json().valueToTree(Jobs.small("tiny", "ml"));
    ObjectNode dataset = (ObjectNode) tree.at("/spec/dataset");
    dataset.remove("synthetic");
    dataset.putObject("hub").put("repo", "tatsu-lab/alpaca");
    FineTuneJob fromHub = FineTuneJobs.json().treeToValue(tree, FineTuneJob.class);
    assertThat(TrainerResources.downloadsFromHub(fromHub)).isTrue();
    assertCache(jobs(CHART, fromHub).get(0), "hub-cache");
  }

  private static boolean hasField(Class<?> type, String name) {
    try {
      type.getField(name);
      return true;
    } catch (NoSuchFieldException e) {
      return false;
    }
  }

  @Test
  void theEndpointAndProxiesOfTheChartReachEveryTrainerContainer() {
    for (Job job : jobs(CHART, hubJob(3))) {
      assertThat(values(trainer(job)))
          .containsEntry(TrainerContract.ENV_HF_ENDPOINT, "https://hf-mirror.example.com")
          .containsEntry(TrainerContract.ENV_HTTPS_PROXY, "http://proxy.example.com:3128")
          .containsEntry(TrainerContract.ENV_HTTP_PROXY, "http://proxy.example.com:3128")
          .containsEntry(TrainerContract.ENV_NO_PROXY, ".svc,.cluster.local,10.0.0.0/8");
    }
    // unset: the trainer's defaults (huggingface.co, no proxy)
    assertThat(values(trainer(jobs(PLAIN, hubJob(1)).get(0)))).doesNotContainKeys(TrainerContract.ENV_HF_ENDPOINT,
        TrainerContract.ENV_HTTPS_PROXY, TrainerContract.ENV_HTTP_PROXY, TrainerContract.ENV_NO_PROXY,
        TrainerContract.ENV_HF_HUB_CACHE, TrainerContract.ENV_HF_TOKEN);
  }

  @Test
  void badHubSettingsStopTheOperatorAtStartWithTheVariablesName() {
    assertThatThrownBy(() -> OperatorConfig.fromEnv(Map.of("FINETUNE_HUB_CACHE_CLAIM", "Hub_Cache")))
        .hasMessageContaining("FINETUNE_HUB_CACHE_CLAIM").hasMessageContaining("Hub_Cache");
    assertThatThrownBy(() -> OperatorConfig.fromEnv(Map.of("FINETUNE_HUB_ENDPOINT", "hf-mirror.example.com")))
        .hasMessageContaining("FINETUNE_HUB_ENDPOINT").hasMessageContaining("http(s) URL");
    assertThatThrownBy(() -> OperatorConfig.fromEnv(Map.of("FINETUNE_HUB_HTTPS_PROXY", "http://me:s3cret@proxy:3128")))
        .hasMessageContaining("FINETUNE_HUB_HTTPS_PROXY").hasMessageContaining("credentials")
        .hasMessageNotContaining("s3cret");
    assertThat(OperatorConfig.fromEnv(Map.of("FINETUNE_HUB_CACHE_CLAIM", " ", "FINETUNE_HUB_ENDPOINT", "")).hub())
        .as("empty chart values: not set").isEqualTo(OperatorConfig.Hub.none());
  }

  /** The claim at /hub-cache, read-write, HF_HUB_CACHE pointing there, the root filesystem still read-only. */
  private static void assertCache(Job job, String claim) {
    PodSpec pod = job.getSpec().getTemplate().getSpec();
    Container c = pod.getContainers().get(0);
    assertThat(values(c)).containsEntry(TrainerContract.ENV_HF_HUB_CACHE, TrainerContract.HUB_CACHE_MOUNT);
    VolumeMount mount = c.getVolumeMounts().stream()
        .filter(m -> m.getMountPath().equals(TrainerContract.HUB_CACHE_MOUNT)).findFirst().orElseThrow();
    assertThat(mount.getReadOnly()).as("downloads are written into it").isNotEqualTo(Boolean.TRUE);
    Volume volume = pod.getVolumes().stream().filter(v -> v.getName().equals(mount.getName())).findFirst().orElseThrow();
    assertThat(volume.getPersistentVolumeClaim().getClaimName()).isEqualTo(claim);
    assertThat(volume.getPersistentVolumeClaim().getReadOnly()).isNotEqualTo(Boolean.TRUE);
    assertThat(c.getSecurityContext().getReadOnlyRootFilesystem()).isTrue();
    assertThat(pod.getSecurityContext().getFsGroup()).as("the cache is the trainer's group's").isEqualTo(1000L);
    assertThat(pod.getSecurityContext().getFsGroupChangePolicy()).as("no recursive chown of a large cache")
        .isEqualTo("OnRootMismatch");
  }
}
