package dev.finetune.operator.resources;

import static org.assertj.core.api.Assertions.assertThat;

import dev.finetune.api.FineTuneJob;
import dev.finetune.api.FineTuneJobs;
import dev.finetune.api.testing.Repo;
import dev.finetune.operator.config.OperatorConfig;
import dev.finetune.operator.testing.Jobs;
import io.fabric8.kubernetes.api.model.LocalObjectReference;
import io.fabric8.kubernetes.api.model.PodSpec;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.client.utils.Serialization;
import java.io.IOException;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** Which trainer image a job's Pods run (the CPU or the CUDA build) and the Secrets they pull it with. */
class TrainerImageTest {
  private static final OperatorConfig CHART = OperatorConfig.fromEnv(Map.of(
      "FINETUNE_TRAINER_IMAGE", "registry.example/finetune-trainer:1.2.3-cuda",
      "FINETUNE_TRAINER_CPU_IMAGE", "registry.example/finetune-trainer:1.2.3",
      "FINETUNE_TRAINER_IMAGE_PULL_SECRETS", " regcred, mirror-cred ,,"));

  private static FineTuneJob job(Integer gpus, int nodes) {
    FineTuneJob ftj = Jobs.small("img", "ml");
    ftj.getMetadata().setUid("u-1");
    ftj.getSpec().resources.gpus = gpus;
    ftj.getSpec().resources.nodes = nodes;
    return ftj;
  }

  private static PodSpec pod(Job job) {
    return job.getSpec().getTemplate().getSpec();
  }

  @Test
  void noGpusGetTheCpuImageAndGpusTheCudaImage() {
    TrainerResources r = new TrainerResources(CHART);
    assertThat(r.image(job(0, 1))).isEqualTo("registry.example/finetune-trainer:1.2.3");
    assertThat(r.image(job(null, 1))).as("gpus unset: 0").isEqualTo("registry.example/finetune-trainer:1.2.3");
    assertThat(r.image(job(1, 1))).isEqualTo("registry.example/finetune-trainer:1.2.3-cuda");
    assertThat(r.image(job(8, 1))).isEqualTo("registry.example/finetune-trainer:1.2.3-cuda");
    // the image the Pods run, the leader's and the workers' alike
    FineTuneJob cpuNodes = job(0, 2);
    assertThat(List.of(r.job(cpuNodes), r.workersJob(cpuNodes))).allSatisfy(j ->
        assertThat(pod(j).getContainers().get(0).getImage()).isEqualTo("registry.example/finetune-trainer:1.2.3"));
    FineTuneJob gpuNodes = job(2, 2);
    assertThat(List.of(r.job(gpuNodes), r.workersJob(gpuNodes))).allSatisfy(j ->
        assertThat(pod(j).getContainers().get(0).getImage()).isEqualTo("registry.example/finetune-trainer:1.2.3-cuda"));
  }

  @Test
  void theJobsOwnImageWins() {
    FineTuneJob ftj = job(0, 1);
    ftj.getSpec().image = "registry.example/custom:7";
    assertThat(new TrainerResources(CHART).image(ftj)).isEqualTo("registry.example/custom:7");
    ftj.getSpec().resources.gpus = 1;
    assertThat(new TrainerResources(CHART).image(ftj)).isEqualTo("registry.example/custom:7");
  }

  @Test
  void theExamplesGetTheImageTheirGpusNeed() throws IOException {
    TrainerResources r = new TrainerResources(CHART);
    assertThat(r.image(FineTuneJobs.read(Repo.examples().resolve("small-cpu.yaml"))))
        .isEqualTo("registry.example/finetune-trainer:1.2.3");
    assertThat(r.image(FineTuneJobs.read(Repo.examples().resolve("job.yaml"))))
        .isEqualTo("registry.example/finetune-trainer:1.2.3-cuda");
  }

  @Test
  void defaultImagesCarryTheProjectVersion() {
    OperatorConfig defaults = OperatorConfig.defaults();
    assertThat(OperatorConfig.VERSION).matches("\\d+\\.\\d+\\.\\d+.*");
    assertThat(defaults.trainerCpuImage()).isEqualTo("ghcr.io/finetune-dev/finetune-trainer:" + OperatorConfig.VERSION);
    assertThat(defaults.trainerImage()).isEqualTo("ghcr.io/finetune-dev/finetune-trainer:" + OperatorConfig.VERSION + "-cuda");
    assertThat(defaults.imagePullSecrets()).isEmpty();
  }

  @Test
  void pullSecretsReachEveryTrainerPod() {
    assertThat(CHART.imagePullSecrets()).containsExactly("regcred", "mirror-cred");
    TrainerResources r = new TrainerResources(CHART);
    FineTuneJob ftj = job(0, 2);
    assertThat(List.of(r.job(ftj), r.workersJob(ftj))).allSatisfy(j -> assertThat(pod(j).getImagePullSecrets())
        .extracting(LocalObjectReference::getName).containsExactly("regcred", "mirror-cred"));
  }

  @Test
  void noPullSecretsLeaveThePodSpecWithoutThem() {
    Job job = new TrainerResources(OperatorConfig.defaults()).job(job(0, 1));
    assertThat(pod(job).getImagePullSecrets()).isNullOrEmpty();
    assertThat(Serialization.asYaml(job)).doesNotContain("imagePullSecrets");
  }
}
