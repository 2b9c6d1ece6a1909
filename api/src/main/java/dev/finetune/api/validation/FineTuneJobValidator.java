package dev.finetune.api.validation;

import dev.finetune.api.CheckpointSpec;
import dev.finetune.api.DatasetSpec;
import dev.finetune.api.EarlyStoppingSpec;
import dev.finetune.api.EvaluationSpec;
import dev.finetune.api.FineTuneJob;
import dev.finetune.api.FineTuneJobSpec;
import dev.finetune.api.LoraSpec;
import dev.finetune.api.ModelSpec;
import dev.finetune.api.PromptStyle;
import dev.finetune.api.ResourcesSpec;
import dev.finetune.api.ScratchModelSpec;
import dev.finetune.api.TrainingSpec;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

/**
 * Checks what the CRD schema cannot express (one-of sources, fractions that sum to 1, relations between
 * fields) and repeats the schema's bounds, because a local run never meets the API server. Returns every
 * problem at once, each with its field path and a fix.
 */
public final class FineTuneJobValidator {
  /** The Job, ConfigMap and PVC names derive from the FineTuneJob's; a Job name is also a label value (63). */
  public static final int MAX_NAME_LENGTH = 52;
  private static final String DNS_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
  private static final String QUANTITY = "[0-9]+(\\.[0-9]+)?(m|Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?";
  private static final double SUM_TOLERANCE = 1e-6;
  /** Below this an AdamW step (about lr per weight) is under a float32 weight's resolution (0.02 * 2^-23). */
  private static final double MIN_LEARNING_RATE = 1e-9;

  private final List<Problem> problems = new ArrayList<>();

  private FineTuneJobValidator() {}

  public static List<Problem> validate(FineTuneJob job) {
    FineTuneJobValidator v = new FineTuneJobValidator();
    v.check(job);
    return List.copyOf(v.problems);
  }

  private void check(FineTuneJob job) {
    if (job.getApiVersion() != null && !FineTuneJob.API_VERSION.equals(job.getApiVersion())) {
      add("apiVersion", "is " + job.getApiVersion() + ", must be " + FineTuneJob.API_VERSION);
    }
    if (job.getKind() != null && !"FineTuneJob".equals(job.getKind())) {
      add("kind", "is " + job.getKind() + ", must be FineTuneJob");
    }
    String name = job.getMetadata() == null ? null : job.getMetadata().getName();
    if (name == null || name.isEmpty()) {
      add("metadata.name", "is missing; give the job a name (lower-case letters, digits and '-')");
    } else if (!name.matches(DNS_LABEL) || name.length() > MAX_NAME_LENGTH) {
      add("metadata.name", "'" + name + "' must be at most " + MAX_NAME_LENGTH
          + " lower-case letters, digits or '-', starting and ending with a letter or digit");
    }
    FineTuneJobSpec spec = job.getSpec();
    if (spec == null) {
      add("spec", "is missing; a FineTuneJob needs spec.model and spec.dataset");
      return;
    }
    model(spec.model);
    dataset(spec.dataset, spec.model);
    training(spec.training);
    earlyStopping(spec.earlyStopping);
    checkpoints(spec.checkpoints);
    evaluation(spec.evaluation);
    resources(spec.resources);
    labels(spec.labels);
    atLeast("spec.backoffLimit", spec.backoffLimit, 0);
    if (spec.activeDeadlineSeconds != null && spec.activeDeadlineSeconds < 1) {
      add("spec.activeDeadlineSeconds", "is " + spec.activeDeadlineSeconds + ", must be at least 1 (or left out: no deadline)");
    }
    atLeast("spec.ttlSecondsAfterFinished", spec.ttlSecondsAfterFinished, 0);
    if (spec.imagePullPolicy != null && !List.of("Always", "IfNotPresent", "Never").contains(spec.imagePullPolicy)) {
      add("spec.imagePullPolicy", "is '" + spec.imagePullPolicy + "', must be Always, IfNotPresent or Never");
    }
  }

  private void model(ModelSpec model) {
    if (model == null) {
      add("spec.model", "is missing; set spec.model.hub (e.g. openai-community/gpt2), spec.model.path or spec.model.scratch");
      return;
    }
    long sources = Stream.of(model.hub, model.path, model.scratch).filter(s -> s != null).count();
    if (sources != 1) {
      add("spec.model", (sources == 0 ? "names no model" : "names " + sources + " models")
          + "; set exactly one of hub, path or scratch");
    }
    if (model.hub != null && !model.hub.matches("[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?")) {
      add("spec.model.hub", "'" + model.hub + "' is not a hub repository id; write owner/name, e.g. openai-community/gpt2");
    }
    if (model.claimName != null && model.path == null) {
      add("spec.model.claimName", "is set without spec.model.path; say where in the volume the model directory is");
    }
    if (model.claimName != null && !model.claimName.matches(DNS_LABEL + "(\\." + DNS_LABEL + ")*")) {
      add("spec.model.claimName", "'" + model.claimName + "' is not a valid PersistentVolumeClaim name");
    }
    if (model.cacheClaim != null && !model.cacheClaim.matches(DNS_LABEL + "(\\." + DNS_LABEL + ")*")) {
      add("spec.model.cacheClaim", "'" + model.cacheClaim + "' is not a valid PersistentVolumeClaim name");
    }
    ModelSpec.HubTokenSecret token = model.hubTokenSecret;
    if (token != null) {
      if (token.name == null) {
        add("spec.model.hubTokenSecret.name", "is missing; name the Secret that holds the hub token, e.g. hf-token");
      } else if (!token.name.matches(ModelSpec.SECRET_NAME) || token.name.length() > 253) {
        add("spec.model.hubTokenSecret.name", "'" + token.name
            + "' is not a Secret name; use lower-case letters, digits, '-' and '.', e.g. hf-token");
      }
      if (token.key != null && (!token.key.matches(ModelSpec.SECRET_KEY) || token.key.length() > 253)) {
        add("spec.model.hubTokenSecret.key", "'" + token.key
            + "' is not a Secret key; use letters, digits, '-', '_' and '.', e.g. token");
      }
    }
    ScratchModelSpec s = model.scratch;
    if (s != null) {
      between("spec.model.scratch.layers", s.layers, 1, 96);
      between("spec.model.scratch.embeddingDim", s.embeddingDim, 8, 8192);
      between("spec.model.scratch.heads", s.heads, 1, 128);
      between("spec.model.scratch.contextLength", s.contextLength, 8, 32768);
      if (s.embeddingDim != null && s.heads != null && s.heads > 0 && s.embeddingDim % s.heads != 0) {
        add("spec.model.scratch.embeddingDim", s.embeddingDim + " is not divisible by heads (" + s.heads
            + "); choose a multiple of heads, e.g. " + (s.heads * Math.max(1, s.embeddingDim / s.heads)));
      }
    }
  }

  private void dataset(DatasetSpec data, ModelSpec model) {
    if (data == null) {
      add("spec.dataset", "is missing; set spec.dataset.path (a JSON or JSON Lines file of instruction/input/output records)");
      return;
    }
    long sources = Stream.of(data.path, data.configMap, data.url, data.synthetic, data.files, data.hub)
        .filter(s -> s != null).count();
    if (sources != 1) {
      add("spec.dataset", (sources == 0 ? "names no data" : "names " + sources + " data sources")
          + "; set exactly one of path, configMap, url, synthetic, files or hub");
    }
    if (data.hub != null) {
      required("spec.dataset.hub.repo", data.hub.repo);
      if (data.hub.repo != null && !data.hub.repo.matches("[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")) {
        add("spec.dataset.hub.repo", "'" + data.hub.repo + "' is not a hub repository id; write it as ORG/NAME, e.g. tatsu-lab/alpaca");
      }
      if ((data.hub.files == null) == (data.hub.split == null)) {
        add("spec.dataset.hub", "must name either files (of the repository) or split (of the hub's Parquet conversion), not both or neither");
      }
    }
    if (data.columns != null) {
      for (String key : data.columns.keySet()) {
        if (!List.of("instruction", "input", "output", "messages").contains(key)) {
          add("spec.dataset.columns." + key, "is not a field the trainer reads; the keys are instruction, input, output and messages");
        }
      }
    }
    if (data.url != null && !data.url.matches("https://\\S+")) {
      add("spec.dataset.url", "'" + data.url + "' must be an https:// URL");
    }
    if (data.configMap != null) {
      required("spec.dataset.configMap.name", data.configMap.name);
      required("spec.dataset.configMap.key", data.configMap.key);
    }
    if (data.claimName != null && data.path == null && data.files == null) {
      add("spec.dataset.claimName", "is set without spec.dataset.path or spec.dataset.files; say where in the volume the data is");
    }
    if (data.files != null) {
      required("spec.dataset.files.train", data.files.train);
      required("spec.dataset.files.validation", data.files.validation);
    } else if (data.split != null) {
      DatasetSpec.SplitSpec split = data.split;
      fraction("spec.dataset.split.train", split.train);
      fraction("spec.dataset.split.validation", split.validation);
      fraction("spec.dataset.split.test", split.test);
      double sum = value(split.train) + value(split.validation) + value(split.test);
      if (Math.abs(sum - 1.0) > SUM_TOLERANCE) {
        add("spec.dataset.split", "fractions sum to " + round(sum) + ", must be 1.0 (train + validation + test)");
      }
      if (split.train != null && split.train <= 0) {
        add("spec.dataset.split.train", "is 0; training needs some records");
      }
      if (split.validation != null && split.validation <= 0) {
        add("spec.dataset.split.validation", "is 0; validation loss picks the best epoch, give it some records (e.g. 0.05)");
      }
    }
    if (data.promptStyle == null) {
      add("spec.dataset.promptStyle", "is empty; use alpaca, phi3 or chat");
    }
    boolean chat = data.promptStyle == PromptStyle.CHAT;
    if (data.chatTemplate != null && !chat) {
      add("spec.dataset.chatTemplate", "is set but promptStyle is not chat; set spec.dataset.promptStyle: chat to use it");
    }
    if (data.chatTemplate != null && (data.chatTemplate.template == null) == (data.chatTemplate.path == null)) {
      add("spec.dataset.chatTemplate", "must give either template (the Jinja text) or path (a file that holds it), not both or neither");
    }
    if (data.trainOn != null && !chat) {
      add("spec.dataset.trainOn", "is set but promptStyle is not chat; with alpaca or phi3, spec.dataset.maskPrompt says what trains");
    }
    if (chat && Boolean.TRUE.equals(data.maskPrompt)) {
      add("spec.dataset.maskPrompt", "is for alpaca and phi3; with promptStyle chat, spec.dataset.trainOn says what trains"
          + " (assistantTurns by default)");
    }
    between("spec.dataset.maxLength", data.maxLength, 2, 1048576);
    if (model != null && model.scratch != null && data.maxLength != null && model.scratch.contextLength != null
        && data.maxLength > model.scratch.contextLength) {
      add("spec.dataset.maxLength", data.maxLength + " exceeds the model's context length ("
          + model.scratch.contextLength + "); lower maxLength or raise spec.model.scratch.contextLength");
    }
    if (data.synthetic != null) {
      between("spec.dataset.synthetic.size", data.synthetic.size, 10, 1000000);
    }
  }

  private void training(TrainingSpec t) {
    if (t == null) {
      return;
    }
    between("spec.training.epochs", t.epochs, 1, 100000);
    between("spec.training.batchSize", t.batchSize, 1, 65536);
    between("spec.training.gradientAccumulationSteps", t.gradientAccumulationSteps, 1, 4096);
    between("spec.training.lossChunkTokens", t.lossChunkTokens, 0, 1048576);
    atLeast("spec.training.warmupSteps", t.warmupSteps, 0);
    if (t.learningRate == null || !(t.learningRate > 0) || t.learningRate > 10) {
      add("spec.training.learningRate", "is " + t.learningRate + ", must be above 0 and at most 10 (typical: 5e-5 to 1e-3)");
    }
    if (t.weightDecay != null && !(t.weightDecay >= 0)) {
      add("spec.training.weightDecay", "is " + t.weightDecay + ", must be 0 or more");
    }
    for (var beta : Map.of("spec.training.beta1", value(t.beta1, 0.9), "spec.training.beta2", value(t.beta2, 0.999)).entrySet()) {
      if (!(beta.getValue() >= 0 && beta.getValue() < 1)) {
        add(beta.getKey(), "is " + beta.getValue() + ", must be at least 0 and below 1");
      }
    }
    if (t.epsilon != null && !(t.epsilon > 0)) {
      add("spec.training.epsilon", "is " + t.epsilon + ", must be above 0 (typical: 1e-8)");
    }
    if (t.schedule == null) {
      add("spec.training.schedule", "is empty; use constant, linear or cosine");
    }
    if (t.minLearningRate != null && t.learningRate != null && t.schedule != TrainingSpec.Schedule.CONSTANT
        && !(t.minLearningRate >= 0 && t.minLearningRate < t.learningRate)) {
      add("spec.training.minLearningRate", "is " + t.minLearningRate + ", must be at least 0 and below learningRate ("
          + t.learningRate + ")");
    }
    if (t.maxGradNorm != null && !(t.maxGradNorm > 0)) {
      add("spec.training.maxGradNorm", "is " + t.maxGradNorm + ", must be above 0 (typical: 1.0), or left out for no clipping");
    }
    if (t.precision == null) {
      add("spec.training.precision", "is empty; use auto, fp32, tf32 or bf16");
    }
    if (t.dropout != null && !(t.dropout >= 0 && t.dropout < 1)) {
      add("spec.training.dropout", "is " + t.dropout + ", must be at least 0 and below 1");
    }
    float32("spec.training.learningRate", t.learningRate, "5e-5 to 1e-3");
    if (t.learningRate != null && t.learningRate > 0 && t.learningRate < MIN_LEARNING_RATE && !reported("spec.training.learningRate")) {
      add("spec.training.learningRate", "is " + t.learningRate + ", too small to change float32 weights (an AdamW step moves a"
          + " weight by about learningRate; a weight of 0.02 moves only by 2e-9 or more); typical: 5e-5 to 1e-3");
    }
    float32("spec.training.weightDecay", t.weightDecay, "0.01 to 0.1");
    float32("spec.training.epsilon", t.epsilon, "1e-8");
    float32("spec.training.minLearningRate", t.minLearningRate, "0 or about a tenth of learningRate");
    float32("spec.training.maxGradNorm", t.maxGradNorm, "1.0");
    float32("spec.training.dropout", t.dropout, "0 to 0.2");
    for (var beta : Map.of("spec.training.beta1", value(t.beta1, 0.9), "spec.training.beta2", value(t.beta2, 0.999)).entrySet()) {
      if (beta.getValue() < 1 && (float) (double) beta.getValue() == 1.0f && !reported(beta.getKey())) {
        add(beta.getKey(), "is " + beta.getValue() + ", which is 1 in float32 (the optimiser would stop averaging);"
            + " use at most 0.9999999 (typical: 0.9 for beta1, 0.999 for beta2)");
      }
    }
    lora(t.lora);
  }

  private void lora(LoraSpec l) {
    if (l == null) {
      return;
    }
    between("spec.training.lora.r", l.r, 1, 1024);
    if (l.alpha != null && !(l.alpha > 0)) {
      add("spec.training.lora.alpha", "is " + l.alpha + ", must be above 0 (typical: r or 2 r)");
    }
    if (l.dropout != null && !(l.dropout >= 0 && l.dropout < 1)) {
      add("spec.training.lora.dropout", "is " + l.dropout + ", must be at least 0 and below 1");
    }
    if (l.targetModules != null) {
      for (String m : l.targetModules) {
        if (!LoraSpec.MODULES.contains(m)) {
          add("spec.training.lora.targetModules", "'" + m + "' is not a layer LoRA can adapt; use " + LoraSpec.MODULES);
        }
      }
    }
    if (l.initAdapter != null && l.initAdapter.isBlank()) {
      add("spec.training.lora.initAdapter", "is empty; name a PEFT adapter folder or leave it out");
    }
  }

  private void earlyStopping(EarlyStoppingSpec e) {
    if (e == null) {
      return;
    }
    between("spec.earlyStopping.patience", e.patience, 1, Integer.MAX_VALUE);
    if (e.minDelta != null && !(e.minDelta >= 0)) {
      add("spec.earlyStopping.minDelta", "is " + e.minDelta + ", must be 0 or more");
    }
    float32("spec.earlyStopping.minDelta", e.minDelta, "0 or 0.001");
  }

  private void checkpoints(CheckpointSpec c) {
    if (c == null) {
      return;
    }
    between("spec.checkpoints.keep", c.keep, 1, 1000);
    atLeast("spec.checkpoints.everySteps", c.everySteps, 0);
    if (c.size != null && !c.size.matches(QUANTITY)) {
      add("spec.checkpoints.size", "'" + c.size + "' is not a storage quantity; write e.g. 10Gi");
    }
    if (c.claimName != null && !c.claimName.matches(DNS_LABEL + "(\\." + DNS_LABEL + ")*")) {
      add("spec.checkpoints.claimName", "'" + c.claimName + "' is not a valid PersistentVolumeClaim name");
    }
    if (c.path != null && (c.path.startsWith("/") || c.path.contains(".."))) {
      add("spec.checkpoints.path", "'" + c.path + "' must be a relative path inside the volume, without '..'");
    }
  }

  private void evaluation(EvaluationSpec e) {
    if (e == null) {
      return;
    }
    between("spec.evaluation.maxNewTokens", e.maxNewTokens, 1, 8192);
    atLeast("spec.evaluation.topK", e.topK, 0);
    if (e.temperature != null && !(e.temperature >= 0 && e.temperature <= 10)) {
      add("spec.evaluation.temperature", "is " + e.temperature + ", must be between 0 (greedy) and 10");
    }
    float32("spec.evaluation.temperature", e.temperature, "0 (greedy) or 0.7");
    if (e.judge != null) {
      if (e.judge.url == null || !e.judge.url.matches("https?://\\S+")) {
        add("spec.evaluation.judge.url", (e.judge.url == null ? "is missing" : "'" + e.judge.url + "' is not an http(s) URL")
            + "; write the API's base URL, e.g. http://ollama:11434/v1");
      }
      required("spec.evaluation.judge.model", e.judge.model);
      between("spec.evaluation.judge.timeoutSeconds", e.judge.timeoutSeconds, 1, 3600);
      if (e.judge.apiKeySecret != null) {
        required("spec.evaluation.judge.apiKeySecret.name", e.judge.apiKeySecret.name);
        required("spec.evaluation.judge.apiKeySecret.key", e.judge.apiKeySecret.key);
      }
    }
  }

  private void resources(ResourcesSpec r) {
    if (r == null) {
      return;
    }
    between("spec.resources.gpus", r.gpus, 0, 64);
    between("spec.resources.nodes", r.nodes, 1, 64);
    if (r.cpu != null && !r.cpu.matches(QUANTITY)) {
      add("spec.resources.cpu", "'" + r.cpu + "' is not a CPU quantity; write e.g. 4 or 3500m");
    }
    if (r.memory != null && !r.memory.matches(QUANTITY)) {
      add("spec.resources.memory", "'" + r.memory + "' is not a memory quantity; write e.g. 16Gi");
    }
    if (r.gpus != null && r.gpus > 0 && (r.gpuResource == null || r.gpuResource.isBlank())) {
      add("spec.resources.gpuResource", "is empty; write the GPU resource name, e.g. nvidia.com/gpu");
    }
  }

  private void labels(Map<String, String> labels) {
    if (labels == null) {
      return;
    }
    labels.forEach((k, v) -> {
      if (!k.matches("([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")) {
        add("spec.labels." + k, "is not a valid label key");
      }
      if (v != null && !v.isEmpty() && !v.matches("[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")) {
        add("spec.labels." + k, "'" + v + "' is not a valid label value (at most 63 letters, digits, '-', '_', '.')");
      }
    });
  }

  /**
   * Training computes in float32: a number that is 0, a denormal or infinite there would silently change the
   * run (epsilon 1e-50 becomes 0 and the optimiser divides by zero), so it is refused with a typical value.
   */
  private void float32(String field, Double value, String typical) {
    if (value == null || value == 0 || reported(field)) {
      return;
    }
    if (!Double.isFinite(value)) {
      add(field, "is " + value + ", must be a finite number (typical: " + typical + ")");
    } else if (Math.abs(value) < Float.MIN_NORMAL) {
      add(field, "is " + value + ", too small for float32, where training computes (the smallest normal float32 is"
          + " 1.2e-38; this would be 0 or lose its precision); typical: " + typical);
    } else if (Math.abs(value) > Float.MAX_VALUE) {
      add(field, "is " + value + ", too large for float32 (at most 3.4e38); typical: " + typical);
    }
  }

  private boolean reported(String field) {
    return problems.stream().anyMatch(p -> p.field().equals(field));
  }

  private void required(String field, String value) {
    if (value == null || value.isBlank()) {
      add(field, "is missing");
    }
  }

  private void between(String field, Integer value, int min, int max) {
    if (value == null) {
      add(field, "is empty; give a whole number from " + min + (max == Integer.MAX_VALUE ? " up" : " to " + max));
    } else if (value < min || value > max) {
      add(field, "is " + value + ", must be " + (max == Integer.MAX_VALUE ? "at least " + min : "between " + min + " and " + max));
    }
  }

  private void atLeast(String field, Integer value, int min) {
    if (value != null && value < min) {
      add(field, "is " + value + ", must be at least " + min);
    }
  }

  private void fraction(String field, Double value) {
    if (value == null || !(value >= 0 && value <= 1)) {
      add(field, "is " + value + ", must be a fraction between 0 and 1");
    }
  }

  private static double value(Double d) {
    return d == null || d.isNaN() ? 0 : d;
  }

  private static double value(Double d, double fallback) {
    return d == null ? fallback : d;
  }

  private static String round(double d) {
    return java.math.BigDecimal.valueOf(d).round(new java.math.MathContext(6)).stripTrailingZeros().toPlainString();
  }

  private void add(String field, String message) {
    problems.add(new Problem(field, message));
  }
}
