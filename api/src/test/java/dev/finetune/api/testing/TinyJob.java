package dev.finetune.api.testing;

import dev.finetune.api.FineTuneJob;
import dev.finetune.api.FineTuneJobs;

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
}
