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
    assertThat(spec.training.precision).isEqualTo(TrainingSpec.Precision.AUTO);
  }

  @Test
  void precisionIsOneOfFour() {
    String training = "  training:\n    precision: %s\n";
    FineTuneJob bf16 = FineTuneJobs.parse(MINIMAL + training.formatted("bf16"));
    assertThat(bf16.getSpec().training.precision).isEqualTo(TrainingSpec.Precision.BF16);
    assertThat(FineTuneJobs.toYaml(bf16)).contains("precision: bf16");
    assertThatThrownBy(() -> FineTuneJobs.parse(MINIMAL + training.formatted("fp16")))
        .hasMessageContaining("spec.training.precision").hasMessageContaining("bf16");
    FineTuneJob empty = FineTuneJobs.parse(MINIMAL);
    empty.getSpec().training.precision = null;
    assertThat(FineTuneJobValidator.validate(empty)).extracting(Problem::toString)
        .containsExactly("spec.training.precision: is empty; use auto, fp32, tf32 or bf16");
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
  void loraGetsPeftDefaultsAndItsProblemsAreNamed() {
    FineTuneJob job = FineTuneJobs.parse(MINIMAL + "  training:\n    lora: {}\n");
    assertThat(FineTuneJobValidator.validate(job)).isEmpty();
    LoraSpec lora = job.getSpec().training.lora;
    assertThat(lora.r).isEqualTo(8);
    assertThat(lora.alpha).isEqualTo(8.0);
    assertThat(lora.dropout).isEqualTo(0.0);
    assertThat(lora.targetModules).isNull();
    assertThat(FineTuneJobs.parse(MINIMAL).getSpec().training.lora).as("full fine-tune by default").isNull();

    FineTuneJob bad = FineTuneJobs.parse(MINIMAL + """
          training:
            lora:
              r: 0
              alpha: 0
              dropout: 1.5
              targetModules: [q_proj, qproj]
              initAdapter: " "
        """);
    assertThat(FineTuneJobValidator.validate(bad)).extracting(Problem::toString).containsExactlyInAnyOrder(
        "spec.training.lora.r: is 0, must be between 1 and 1024",
        "spec.training.lora.alpha: is 0.0, must be above 0 (typical: r or 2 r)",
        "spec.training.lora.dropout: is 1.5, must be at least 0 and below 1",
        "spec.training.lora.targetModules: 'qproj' is not a layer LoRA can adapt; use " + LoraSpec.MODULES,
        "spec.training.lora.initAdapter: is empty; name a PEFT adapter folder or leave it out");
  }

  @Test
  void aTypoIsAnErrorNotIgnored() {
    assertThatThrownBy(() -> FineTuneJobs.parse(MINIMAL + "  trainig:\n    epochs: 3\n"))
        .isInstanceOf(InvalidJobException.class)
        .hasMessageContaining("spec.trainig: unknown field")
        .hasMessageContaining("training");
  }

  @Test
  void typosAndBadValuesAreReportedTogetherWithADidYouMean(@TempDir Path dir) throws IOException {
    Path file = dir.resolve("job.yaml");
    Files.writeString(file, MINIMAL.replace("    path: data.json\n", "    path: data.json\n    promptstyle: phi3\n")
        + "  trainig:\n    epochs: 3\n  evaluation:\n    maxNewTokens: 0\n    temprature: 0.5\n"
        + "  checkpoints:\n    keep: many\n  earlyStopping: {patience: 0}\n");
    assertThatThrownBy(() -> FineTuneJobs.readValid(file))
        .isInstanceOf(InvalidJobException.class)
        .satisfies(e -> assertThat(((InvalidJobException) e).problems()).extracting(Problem::toString).containsExactlyInAnyOrder(
            "spec.dataset.promptstyle: unknown field (line 10); did you mean promptStyle? (known fields here: chatTemplate,"
                + " claimName, columns, configMap, files, hub, maskPrompt, maxLength, path, promptStyle, split, synthetic, trainOn,"
                + " truncateLongRecords, url)",
            "spec.trainig: unknown field (line 11); did you mean training? (known fields here: activeDeadlineSeconds,"
                + " affinity, backoffLimit, checkpoints, dataset, earlyStopping, evaluation, image, imagePullPolicy, labels,"
                + " model, nodeSelector, priorityClassName, resources, serviceAccountName, suspend, tolerations, training,"
                + " ttlSecondsAfterFinished)",
            "spec.evaluation.temprature: unknown field (line 15); did you mean temperature? (known fields here: enabled,"
                + " judge, maxNewTokens, seed, temperature, topK)",
            "spec.checkpoints.keep: 'many' is not an integer (line 17)",
            "spec.evaluation.maxNewTokens: is 0, must be between 1 and 8192",
            "spec.earlyStopping.patience: is 0, must be at least 1"))
        .hasMessageContaining("invalid FineTuneJob in " + file + " (6 problems)");
  }

  /** A misspelt field leaves the one it meant at its default; checks of that default would only mislead. */
  @Test
  void aMisspeltFieldIsTheOneProblemNotTheDefaultItLeft(@TempDir Path dir) throws IOException {
    Path file = dir.resolve("job.yaml");
    Files.writeString(file, MINIMAL + "  training:\n    learningRat: 3.0e-3\n    schedule: cosine\n    minLearningRate: 1.0e-4\n");
    assertThatThrownBy(() -> FineTuneJobs.readValid(file))
        .isInstanceOf(InvalidJobException.class)
        .satisfies(e -> assertThat(((InvalidJobException) e).problems()).extracting(Problem::field)
            .containsExactly("spec.training.learningRat"));
    // the same check still speaks when nothing was misspelt
    Files.writeString(file, MINIMAL + "  training:\n    learningRate: 5.0e-5\n    schedule: cosine\n    minLearningRate: 1.0e-4\n");
    assertThatThrownBy(() -> FineTuneJobs.readValid(file))
        .hasMessageContaining("spec.training.minLearningRate: is 1.0E-4, must be at least 0 and below learningRate");
  }

  @Test
  void anIndentationErrorSaysWhereAndWhatTheParserExpected(@TempDir Path dir) throws IOException {
    Path file = dir.resolve("job.yaml");
    Files.writeString(file, MINIMAL.replace("    path: data.json\n", "      path: data.json\n    maxLength: 64\n"));
    assertThatThrownBy(() -> FineTuneJobs.readValid(file))
        .isInstanceOf(InvalidJobException.class)
        .hasMessage("invalid FineTuneJob in " + file + ": spec: not valid YAML: expected <block end>, but found"
            + " '<block mapping start>' at line 10, column 5 (maxLength: 64), while parsing a block mapping at line 6,"
            + " column 3 (model:). Check the indentation: a field must line up with the fields beside it");
  }

  @Test
  void aNameFarFromEveryFieldGetsNoGuess() {
    assertThatThrownBy(() -> FineTuneJobs.parse(MINIMAL + "  colour: blue\n"))
        .hasMessageContaining("spec.colour: unknown field (line 10) (known fields here: ")
        .hasMessageNotContaining("did you mean");
  }

  @Test
  void numbersThatFloat32CannotHoldAreRefused() {
    FineTuneJob job = FineTuneJobs.parse(MINIMAL + """
          training:
            epsilon: 1.0e-50
            beta2: 0.99999999999
            learningRate: 1.0e-12
            maxGradNorm: 1.0e+300
          earlyStopping:
            minDelta: 1.0e+400
        """);
    assertThat(FineTuneJobValidator.validate(job)).extracting(Problem::toString).containsExactlyInAnyOrder(
        "spec.training.epsilon: is 1.0E-50, too small for float32, where training computes (the smallest normal float32"
            + " is 1.2e-38; this would be 0 or lose its precision); typical: 1e-8",
        "spec.training.beta2: is 0.99999999999, which is 1 in float32 (the optimiser would stop averaging); use at most"
            + " 0.9999999 (typical: 0.9 for beta1, 0.999 for beta2)",
        "spec.training.learningRate: is 1.0E-12, too small to change float32 weights (an AdamW step moves a weight by"
            + " about learningRate; a weight of 0.02 moves only by 2e-9 or more); typical: 5e-5 to 1e-3",
        "spec.training.maxGradNorm: is 1.0E300, too large for float32 (at most 3.4e38); typical: 1.0",
        "spec.earlyStopping.minDelta: is Infinity, must be a finite number (typical: 0 or 0.001)");
  }

  @Test
  void aJobFileThatIsNotUtf8NamesTheLine(@TempDir Path dir) throws IOException {
    Path file = dir.resolve("job.yaml");
    byte[] text = MINIMAL.replace("name: minimal", "name: caf\u00e9").getBytes(java.nio.charset.StandardCharsets.ISO_8859_1);
    Files.write(file, text);
    assertThatThrownBy(() -> FineTuneJobs.readValid(file))
        .isInstanceOf(InvalidJobException.class)
        .hasMessage("invalid FineTuneJob in " + file + ": line 4, byte 12 (0xE9) is not UTF-8; save the file as UTF-8"
            + " (e.g. iconv -f latin1 -t utf-8)");
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
    assertThatThrownBy(() -> FineTuneJobs.parse("kind: FineTuneJob\nspec: \"unclosed"))
        .hasMessageContaining("not valid YAML: found unexpected end of stream at line 2, column 16");
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
