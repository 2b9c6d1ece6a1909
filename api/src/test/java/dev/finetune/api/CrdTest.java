package dev.finetune.api;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import dev.finetune.api.testing.Repo;
import java.io.IOException;
import java.lang.reflect.Field;
import java.lang.reflect.Modifier;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.stream.StreamSupport;
import org.junit.jupiter.api.Test;

/** The checked-in CRD is exactly what the Java types generate, and says what a person watching needs. */
class CrdTest {
  private static final ObjectMapper YAML = new ObjectMapper(new YAMLFactory());

  /** Every checked-in copy of the CRD; the Helm chart carries one when it exists. */
  private static List<Path> copies() {
    List<Path> copies = new ArrayList<>(List.of(Repo.crd()));
    Path chart = Repo.root().resolve("helm/finetune-operator/crds/" + CrdGeneration.FILE_NAME);
    if (Files.isDirectory(chart.getParent())) {
      copies.add(chart);
    }
    return copies;
  }

  @Test
  void checkedInCrdEqualsGenerated() throws IOException {
    String generated = CrdGeneration.generate();
    if (Boolean.getBoolean("crd.update")) {
      for (Path copy : copies()) {
        Files.createDirectories(copy.getParent());
        Files.writeString(copy, generated);
      }
    }
    for (Path copy : copies()) {
      assertThat(Files.readString(copy))
          .as(copy + " differs from the CRD generated from api/; run: mvn -pl api test -Dtest=CrdTest -Dcrd.update=true")
          .isEqualTo(generated);
    }
  }

  @Test
  void printerColumnsAreForAPersonWatchingTraining() throws IOException {
    JsonNode version = YAML.readTree(Repo.crd().toFile()).at("/spec/versions/0");
    List<String> columns = StreamSupport.stream(version.get("additionalPrinterColumns").spliterator(), false)
        .map(c -> c.get("name").asText() + "=" + c.get("jsonPath").asText()).toList();
    assertThat(columns).containsExactly(
        "Phase=.status.phase", "Epoch=.status.progress", "Train-Loss=.status.trainLoss",
        "Val-Loss=.status.validationLoss", "Best=.status.bestValidationLoss", "Ranks=.status.ranks",
        "Model=.status.model", "Precision=.status.precision", "Device=.status.device", "Results=.status.results",
        "Age=.metadata.creationTimestamp");
    // kubectl get ftj shows the phase, epoch, losses and age; -o wide adds the data-parallel ranks of a job with more
    // than one, the model, what it computes in and on, and where the results are
    assertThat(StreamSupport.stream(version.get("additionalPrinterColumns").spliterator(), false)
        .filter(c -> c.path("priority").asInt() > 0).map(c -> c.get("name").asText()))
        .containsExactly("Ranks", "Model", "Precision", "Device", "Results");
    assertThat(version.at("/subresources/status").isObject()).as("status subresource").isTrue();
  }

  /** The server's rule against spec changes once the training Job exists covers every spec field but suspend. */
  @Test
  void theSpecChangeRuleCoversEveryFieldButSuspend() {
    List<String> fields = new ArrayList<>();
    for (Field f : FineTuneJobSpec.class.getFields()) {
      if (!Modifier.isStatic(f.getModifiers())) {
        fields.add(f.getName());
      }
    }
    assertThat(fields).contains("suspend");
    for (String field : fields) {
      String compared = "self.spec." + field + " == oldSelf.spec." + field;
      if (field.equals("suspend")) {
        assertThat(FineTuneJob.SPEC_BUT_SUSPEND_UNCHANGED).doesNotContain(compared);
      } else {
        assertThat(FineTuneJob.SPEC_BUT_SUSPEND_UNCHANGED).as(field).contains(compared);
      }
    }
  }

  @Test
  void everySpecFieldIsDocumented() throws IOException {
    JsonNode spec = YAML.readTree(Repo.crd().toFile()).at("/spec/versions/0/schema/openAPIV3Schema/properties/spec");
    List<String> undocumented = new ArrayList<>();
    spec.get("properties").fields().forEachRemaining(f -> collectUndocumented("spec." + f.getKey(), f.getValue(), undocumented, 0));
    assertThat(undocumented).as("fields without a description (kubectl explain shows nothing)").isEmpty();
  }

  /** Our own fields are documented; below fabric8's Kubernetes types (affinity, tolerations) we stop. */
  private static void collectUndocumented(String path, JsonNode field, List<String> out, int depth) {
    if (!field.has("description")) {
      out.add(path);
    }
    if (path.startsWith("spec.affinity") || path.startsWith("spec.tolerations") || depth > 4) {
      return;
    }
    JsonNode props = field.has("properties") ? field.get("properties") : field.path("items").get("properties");
    if (props != null) {
      props.fields().forEachRemaining(f -> collectUndocumented(path + "." + f.getKey(), f.getValue(), out, depth + 1));
    }
  }

  @Test
  void crdDefaultsEqualJavaDefaults() throws Exception {
    // The mock API server and local runs see only the Java defaults; a real server applies the CRD's.
    JsonNode spec = YAML.readTree(Repo.crd().toFile()).at("/spec/versions/0/schema/openAPIV3Schema/properties/spec");
    List<String> mismatches = new ArrayList<>();
    int compared = compareDefaults("spec", spec, FineTuneJobSpec.class, mismatches);
    assertThat(mismatches).isEmpty();
    assertThat(compared).as("defaults compared").isGreaterThanOrEqualTo(40);
  }

  /** JSON equality where 123 and 123.0 (a long and a double, say) are the same number. */
  private static final Comparator<JsonNode> SAME_NUMBER = (a, b) -> a.equals(b)
      || a.isNumber() && b.isNumber() && a.asDouble() == b.asDouble() ? 0 : 1;

  /** Compares each field's Java initial value with its CRD default, into nested spec types; returns how many. */
  private static int compareDefaults(String path, JsonNode schema, Class<?> type, List<String> mismatches)
      throws Exception {
    Object instance = type.getDeclaredConstructor().newInstance();
    int compared = 0;
    for (Field f : type.getFields()) {
      JsonNode property = schema.path("properties").get(f.getName());
      if (property == null || Modifier.isStatic(f.getModifiers())) {
        continue;
      }
      Object value = f.get(instance);
      JsonNode java = value == null ? null : FineTuneJobs.json().valueToTree(value);
      JsonNode crd = property.get("default");
      if (java != null || crd != null) {
        compared++;
        boolean same = java != null && crd != null && java.equals(SAME_NUMBER, crd);
        if (!same) {
          mismatches.add(path + "." + f.getName() + ": CRD default " + crd + " vs Java " + java);
        }
      }
      if (f.getType().getPackageName().equals(type.getPackageName()) && !f.getType().isEnum()) {
        compared += compareDefaults(path + "." + f.getName(), property, f.getType(), mismatches);
      }
    }
    return compared;
  }
}
