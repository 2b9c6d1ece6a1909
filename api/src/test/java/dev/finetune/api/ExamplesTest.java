package dev.finetune.api;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import dev.finetune.api.testing.CrdSchema;
import dev.finetune.api.testing.Repo;
import dev.finetune.api.validation.FineTuneJobValidator;
import io.fabric8.kubernetes.api.model.Container;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.PodSpec;
import io.fabric8.kubernetes.client.utils.Serialization;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Every example works as written: a FineTuneJob passes the CRD's schema and the semantic validator; the one helper
 * Pod (results-pod.yaml, README "Getting the results") mounts a job's claim read-only and runs restricted.
 */
class ExamplesTest {
  private static final ObjectMapper YAML = new ObjectMapper(new YAMLFactory());

  private static List<Path> all() throws IOException {
    try (Stream<Path> files = Files.list(Repo.examples())) {
      List<Path> list = files.filter(p -> p.toString().endsWith(".yaml")).sorted().toList();
      assertThat(list).as("examples/*.yaml").isNotEmpty();
      return list;
    }
  }

  private static String kind(Path file) {
    try {
      return YAML.readTree(file.toFile()).path("kind").asText();
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** The FineTuneJob examples. */
  static List<Path> examples() throws IOException {
    List<Path> list = all().stream().filter(p -> kind(p).equals("FineTuneJob")).toList();
    assertThat(list).as("examples/*.yaml of kind FineTuneJob").isNotEmpty();
    return list;
  }

  /** The example that copies results off a job's claim; its claim is examples/job.yaml's. */
  static Path resultsPod() {
    return Repo.examples().resolve("results-pod.yaml");
  }

  @Test
  void everyExampleIsAFineTuneJobOrTheResultsPod() throws IOException {
    assertThat(all()).allSatisfy(p -> assertThat(kind(p).equals("FineTuneJob") || p.equals(resultsPod()))
        .as(p + " is of kind " + kind(p)).isTrue());
    assertThat(kind(resultsPod())).isEqualTo("Pod");
  }

  @Test
  void theResultsPodMountsTheQuickStartJobsClaimReadOnlyAndRunsRestricted() throws IOException {
    Pod pod = Serialization.unmarshal(Files.readString(resultsPod()), Pod.class);
    String job = FineTuneJobs.read(Repo.examples().resolve("job.yaml")).getMetadata().getName();
    PodSpec spec = pod.getSpec();
    assertThat(pod.getMetadata().getName()).isEqualTo("results");
    assertThat(spec.getVolumes()).singleElement().satisfies(v -> {
      assertThat(v.getPersistentVolumeClaim().getClaimName()).as("the operator's claim name: NAME-checkpoints")
          .isEqualTo(job + "-checkpoints");
      assertThat(v.getPersistentVolumeClaim().getReadOnly()).isTrue();
    });
    Container c = spec.getContainers().get(0);
    assertThat(spec.getContainers()).hasSize(1);
    assertThat(c.getVolumeMounts()).singleElement().satisfies(m -> {
      assertThat(m.getMountPath()).isEqualTo("/results");
      assertThat(m.getReadOnly()).isTrue();
    });
    assertThat(c.getCommand()).first().isEqualTo("sleep");
    assertThat(spec.getRestartPolicy()).isEqualTo("Never");
    assertThat(spec.getAutomountServiceAccountToken()).isFalse();
    // the restricted Pod Security Standard, as the trainer Pod (RealApiServerTest has the API server enforce it)
    assertThat(spec.getSecurityContext().getRunAsNonRoot()).isTrue();
    assertThat(spec.getSecurityContext().getRunAsUser()).as("the trainer's default UID, which wrote the files").isEqualTo(1000L);
    assertThat(spec.getSecurityContext().getSeccompProfile().getType()).isEqualTo("RuntimeDefault");
    assertThat(c.getSecurityContext().getReadOnlyRootFilesystem()).isTrue();
    assertThat(c.getSecurityContext().getAllowPrivilegeEscalation()).isFalse();
    assertThat(c.getSecurityContext().getCapabilities().getDrop()).containsExactly("ALL");

    // the README's sed that makes it fill a claim: both readOnly become false, and group 1000 may write the volume
    Pod filling = Serialization.unmarshal(Files.readString(resultsPod()).replace("readOnly: true", "readOnly: false"), Pod.class);
    assertThat(filling.getSpec().getVolumes().get(0).getPersistentVolumeClaim().getReadOnly()).isFalse();
    assertThat(filling.getSpec().getContainers().get(0).getVolumeMounts().get(0).getReadOnly()).isFalse();
    assertThat(filling.getSpec().getSecurityContext().getFsGroup()).isEqualTo(1000L);
  }

  @ParameterizedTest
  @MethodSource("examples")
  void passesTheCrdSchema(Path example) throws IOException {
    assertThat(CrdSchema.load(Repo.crd()).check(Files.readString(example))).isEmpty();
  }

  @ParameterizedTest
  @MethodSource("examples")
  void passesTheValidator(Path example) throws IOException {
    FineTuneJob job = FineTuneJobs.read(example);
    assertThat(FineTuneJobValidator.validate(job)).isEmpty();
    assertThat(job.getMetadata().getName()).isNotBlank();
  }
}
