package dev.finetune.api;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.finetune.api.validation.FineTuneJobValidator;
import dev.finetune.api.validation.InvalidJobException;
import dev.finetune.api.validation.Problem;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ValidatorTest {
  private static final String MINIMAL = """
      apiVersion: finetune.dev/v1alpha1
      kind: FineTuneJob
      metadata:
        name: minimal
      spec:
        model:
          hub: openai-community/gpt2
        dataset:
          path: data.json
      """;

  @Test
  void aShortJobGetsTheDefaults() {
    FineTuneJob job = FineTuneJobs.parse(MINIMAL);
    assertThat(FineTuneJobValidator.validate(job)).isEmpty();
    FineTuneJobSpec spec = job.getSpec();
    assertThat(spec.training.epochs).isEqualTo(2);
    assertThat(spec.training.batchSize).isEqualTo(8);
    assertThat(spec.training.learningRate).isEqualTo(5e-5);
    assertThat(spec.dataset.promptStyle).isEqualTo(PromptStyle.ALPACA);
    assertThat(spec.dataset.split.train + spec.dataset.split.validation + spec.dataset.split.test).isEqualTo(1.0);
    assertThat(spec.checkpoints.keep).isEqualTo(2);
    assertThat(spec.evaluation.enabled).isTrue();
    assertThat(spec.earlyStopping).isNull();
    assertThat(spec.backoffLimit).isEqualTo(3);
  }

  @Test
  void jsonIsReadToo() {
    FineTuneJob job = FineTuneJobs.parse(FineTuneJobs.toJson(FineTuneJobs.parse(MINIMAL)));
    assertThat(job.getSpec().model.hub).isEqualTo("openai-community/gpt2");
    assertThat(FineTuneJobs.parse(FineTuneJobs.toYaml(job)).getSpec().training.epochs).isEqualTo(2);
  }

  @Test
  void writtenYamlKeepsQuantitiesAsStrings() {
    FineTuneJob job = FineTuneJobs.parse(MINIMAL + "  resources:\n    cpu: \"1\"\n");
    assertThat(FineTuneJobs.toYaml(job)).contains("cpu: \"1\"");
    assertThat(FineTuneJobs.parse(FineTuneJobs.toYaml(job)).getSpec().resources.cpu).isEqualTo("1");
  }

  @Test
  void everyProblemIsReportedAtOnce() {
    FineTuneJob job = FineTuneJobs.parse(MINIMAL.replace("  dataset:\n    path: data.json\n", """
          dataset:
            path: data.json
            split: {train: 0.9, validation: 0.2, test: 0.1}
          training:
            epochs: 0
            learningRate: -1
          earlyStopping:
            patience: 0
        """));
    assertThat(FineTuneJobValidator.validate(job)).extracting(Problem::toString).containsExactlyInAnyOrder(
        "spec.dataset.split: fractions sum to 1.2, must be 1.0 (train + validation + test)",
        "spec.training.epochs: is 0, must be between 1 and 100000",
        "spec.training.learningRate: is -1.0, must be above 0 and at most 10 (typical: 5e-5 to 1e-3)",
        "spec.earlyStopping.patience: is 0, must be at least 1");
  }

  @Test
  void aTypoIsAnErrorNotIgnored() {
    assertThatThrownBy(() -> FineTuneJobs.parse(MINIMAL + "  trainig:\n    epochs: 3\n"))
        .isInstanceOf(InvalidJobException.class)
        .hasMessageContaining("spec.trainig: unknown field")
        .hasMessageContaining("training");
  }

  @Test
  void aFileNamesItselfInTheError(@TempDir Path dir) throws IOException {
    Path file = dir.resolve("job.yaml");
    Files.writeString(file, MINIMAL.replace("name: minimal", "name: Not_A_Name"));
    assertThatThrownBy(() -> FineTuneJobs.readValid(file))
        .isInstanceOf(InvalidJobException.class)
        .hasMessageContaining(file.toString())
        .hasMessageContaining("metadata.name: 'Not_A_Name' must be");
  }

  @Test
  void emptyAndMalformedDocumentsSayWhat() {
    assertThatThrownBy(() -> FineTuneJobs.parse("")).hasMessageContaining("the document is empty");
    assertThatThrownBy(() -> FineTuneJobs.parse("kind: FineTuneJob\nspec: \"unclosed")).hasMessageContaining("not valid YAML or JSON");
    FineTuneJob noSpec = FineTuneJobs.parse("apiVersion: finetune.dev/v1alpha1\nkind: FineTuneJob\nmetadata: {name: x}\n");
    assertThat(FineTuneJobValidator.validate(noSpec)).extracting(Problem::field).containsExactly("spec.model", "spec.dataset");
  }

  @Test
  void separateFilesNeedTrainAndValidation() {
    FineTuneJob job = FineTuneJobs.parse(MINIMAL.replace("    path: data.json\n", "    files:\n      test: t.jsonl\n"));
    assertThat(FineTuneJobValidator.validate(job)).extracting(Problem::toString).containsExactly(
        "spec.dataset.files.train: is missing", "spec.dataset.files.validation: is missing");
  }

  @Test
  void maxLengthMustFitTheScratchModel() {
    FineTuneJob job = FineTuneJobs.parse(MINIMAL.replace("    hub: openai-community/gpt2\n", "    scratch:\n      contextLength: 64\n"));
    assertThat(FineTuneJobValidator.validate(job)).extracting(Problem::toString).containsExactly(
        "spec.dataset.maxLength: 1024 exceeds the model's context length (64); lower maxLength or raise spec.model.scratch.contextLength");
  }

  @Test
  void statusTerminalPhases() {
    assertThat(List.of(FineTuneJobStatus.Phase.values())).filteredOn(FineTuneJobStatus.Phase::isTerminal)
        .containsExactly(FineTuneJobStatus.Phase.Succeeded, FineTuneJobStatus.Phase.Failed);
  }
}
