package dev.finetune.api.testing;

import com.fasterxml.jackson.databind.node.ObjectNode;
import com.fasterxml.jackson.dataformat.yaml.YAMLMapper;
import dev.finetune.api.FineTuneJob;
import dev.finetune.api.FineTuneJobs;
import java.util.Comparator;
import java.util.Map;

/**
 * The tiny FineTuneJob the modules' tests share: a one-layer scratch GPT-2 on synthetic tasks (seconds per
 * epoch on a CPU), small enough for a test cluster's quota. A test changes what it needs on the parsed job.
 */
public final class TinyJob {
  private TinyJob() {}

  /** Name, namespace and epochs to fill in. */
  public static final String YAML = """
      apiVersion: finetune.dev/v1alpha1
      kind: FineTuneJob
      metadata:
        name: %s
        namespace: %s
      spec:
        model:
          scratch:
            layers: 1
            embeddingDim: 32
            heads: 2
            contextLength: 96
            seed: 5
        dataset:
          synthetic:
            size: 120
            seed: 3
          promptStyle: phi3
          maskPrompt: true
          maxLength: 96
        training:
          epochs: %d
          batchSize: 8
          learningRate: 0.003
          warmupSteps: 3
          schedule: cosine
          maxGradNorm: 1.0
          gradientAccumulationSteps: 2
          seed: 11
        checkpoints:
          size: 1Gi
        resources:
          cpu: "1"
          memory: 1Gi
      """;

  public static String yaml(String name, String namespace, int epochs) {
    return YAML.formatted(name, namespace, epochs);
  }

  public static FineTuneJob job(String name, String namespace, int epochs) {
    return FineTuneJobs.parse(yaml(name, namespace, epochs));
  }

  /** A value for {@link #yamlWith} that removes the field. */
  public static final Object UNSET = new Object();

  /**
   * The tiny job for a local run (no namespace) as YAML, with some fields changed: each key is a dotted path
   * ("spec.training.learningRate"), each value what it becomes (a map replaces a whole section, {@link #UNSET}
   * removes the field). Shorter paths are applied first, so a replaced section can then be edited; a new field
   * goes last in its section.
   */
  public static String yamlWith(String name, int epochs, Map<String, ?> changes) {
    try {
      YAMLMapper yaml = new YAMLMapper();
      ObjectNode doc = (ObjectNode) yaml.readTree(yaml(name, "", epochs));
      ((ObjectNode) doc.get("metadata")).remove("namespace");
      for (String path : changes.keySet().stream()
          .sorted(Comparator.comparingInt(String::length).thenComparing(Comparator.naturalOrder())).toList()) {
        String[] parts = path.split("\\.");
        ObjectNode parent = doc;
        for (int i = 0; i < parts.length - 1; i++) {
          parent = parent.get(parts[i]) instanceof ObjectNode o ? o : parent.putObject(parts[i]);
        }
        Object value = changes.get(path);
        String field = parts[parts.length - 1];
        if (value == UNSET) {
          parent.remove(field);
        } else {
          parent.set(field, yaml.valueToTree(value));
        }
      }
      return FineTuneJobs.toYaml(doc);
    } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
      throw new IllegalStateException(e);
    }
  }
}
