package dev.finetune.trainer.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.Shape;
import dev.finetune.api.ScratchModelSpec;
import dev.finetune.trainer.BadJobException;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Predicate;

/**
 * What a model's {@code config.json} fixes before any weight exists: the name and shape of every tensor, the layers a
 * LoRA adapter can target, and the activations a training batch keeps. The networks build on it, and the memory plan
 * reads it, so {@code --plan} needs no weights.
 */
public sealed interface ModelShape permits GptConfig, LlamaConfig {

  /** Every weight by the network's name, in HF's order. */
  LinkedHashMap<String, Shape> weights();

  /**
   * The linear layers a LoRA adapter can target: module name (as {@link #weights()} names it, without
   * {@code .weight}) to {in, out}.
   */
  Map<String, long[]> linearLayers();

  /** PEFT's target modules for this architecture when a job names none. */
  List<String> defaultLoraTargets();

  /**
   * The float32 bytes autograd keeps for one decoder layer of a training batch of {@code batch} x {@code tokens}: the
   * tensors its operations save for the backward pass, counted operation by operation as the network computes them
   * (the trainer closes everything else a layer makes as it ends). With the native kernels (fused attention, and
   * GPT-2's one-kernel GELU) attention keeps no tokens x tokens matrix and GELU keeps its input alone. Dropout's masks
   * are not counted.
   */
  long layerActivationBytes(int batch, int tokens, boolean nativeKernels);

  /**
   * The float32 bytes the loss keeps for {@code rows} tokens until their backward pass is done: the logits, their
   * log-softmax, and the gradients of both.
   */
  default long logitBytes(int rows) {
    return 4L * 4 * rows * vocabSize();
  }

  int vocabSize();

  int contextLength();

  /** Decoder layers (blocks). */
  int layers();

  /** The width of the hidden states between the layers. */
  int hiddenSize();

  /** The float32 bytes of one hidden state of a batch [batch, tokens, hiddenSize]: what checkpointing keeps a layer. */
  default long hiddenStateBytes(int batch, int tokens) {
    return 4L * batch * tokens * hiddenSize();
  }

  /** The end-of-text token id config.json names (the tokenizer's special tokens may say otherwise). */
  int endOfText();

  default long parameterCount() {
    return weights().values().stream().mapToLong(Shape::size).sum();
  }

  /** The parameters of a LoRA adapter of rank {@code r} on {@code targetModules}: r (in + out) per layer. */
  default long loraParameterCount(int r, List<String> targetModules) {
    return Lora.targets(linearLayers(), targetModules).values().stream().mapToLong(io -> r * (io[0] + io[1])).sum();
  }

  /**
   * A checkpoint's tensors as the weights of this shape, in its order; {@code ignored} says which other tensors a
   * checkpoint may hold (buffers, a tied head). Anything missing, misshapen or unexpected is a bad job naming each
   * tensor (at most 8 unexpected ones).
   */
  default LinkedHashMap<String, NDArray> match(Map<String, NDArray> read, Predicate<String> ignored, Object where) {
    Map<String, NDArray> left = new LinkedHashMap<>(read);
    LinkedHashMap<String, NDArray> params = new LinkedHashMap<>();
    List<String> problems = new ArrayList<>();
    for (Map.Entry<String, Shape> e : weights().entrySet()) {
      NDArray a = left.remove(e.getKey());
      if (a == null) {
        problems.add("missing " + e.getKey());
      } else if (!a.getShape().equals(e.getValue())) {
        problems.add(e.getKey() + " has shape " + a.getShape() + ", config.json implies " + e.getValue());
      } else {
        params.put(e.getKey(), a);
      }
    }
    left.keySet().removeIf(ignored);
    if (!left.isEmpty()) {
      problems.add("unexpected tensors " + (left.size() > 8 ? List.copyOf(left.keySet()).subList(0, 8) + "..." : left.keySet()));
    }
    if (!problems.isEmpty()) {
      throw new BadJobException(where + ": the weights do not match config.json: " + String.join("; ", problems));
    }
    return params;
  }

  /** The shape config.json describes; its model_type picks the architecture. */
  static ModelShape read(Path configJson) throws IOException {
    String type = Model.modelType(configJson);
    if (type.equals("gpt2")) {
      return GptConfig.read(configJson);
    }
    if (LlamaConfig.TYPES.contains(type)) {
      return LlamaConfig.read(configJson);
    }
    throw new BadJobException(configJson + ": model_type is '" + type + "'; the trainer supports " + Model.SUPPORTED_TYPES
        + " (GPT-2, Llama incl. SmolLM2, Qwen2, Mistral)");
  }

  /** The GPT-2 of spec.model.scratch, with the byte-level tokenizer's vocabulary. */
  static GptConfig scratch(ScratchModelSpec s) {
    return new GptConfig(ByteTokenizer.VOCAB_SIZE, s.contextLength, s.embeddingDim, s.layers, s.heads,
        4 * s.embeddingDim, 1e-5, ByteTokenizer.END_OF_TEXT);
  }
}
