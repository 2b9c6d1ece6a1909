package dev.finetune.trainer.model;

import dev.finetune.trainer.BadJobException;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

/**
 * A decoder-only language model the trainer can train: GPT-2 ({@link Gpt2}) or the Llama family ({@link Llama}).
 * Parameters are named as in the HF checkpoint, so what is saved is what transformers loads.
 */
public interface CausalLm extends AutoCloseable {

  /**
   * Logits [B, n, vocab] in the precision's compute dtype (bf16 in mixed precision) of token ids [B, n] that follow
   * the tokens {@code cache} holds (none when it is null), whose keys and values are appended to it; {@code training}
   * turns dropout on. Run it in a step scope.
   */
  NDArray logits(NDArray ids, Gpt2.Consts k, boolean training, KvCache cache);

  /** fp32 logits [B, T, vocab] for token ids [B, T]; {@code training} turns dropout on. Run it in a step scope. */
  default NDArray forward(NDArray ids, Gpt2.Consts k, boolean training) {
    return precision().fp32(logits(ids, k, training, null));
  }

  /**
   * Mean cross-entropy over the targets that are not -100 of the forward pass of {@code ids} (see
   * {@link Gpt2#loss(NDArray, long[][], Gpt2.Consts)}): one native kernel on the logits as computed where the
   * library is in use.
   */
  default NDArray loss(NDArray ids, long[][] targets, Gpt2.Consts k, boolean training) {
    return meanLoss(logits(ids, k, training, null), targets, k);
  }

  /** Mean cross-entropy of logits [B, T, vocab] over the targets [B][T] that are not -100 (0 when there are none). */
  default NDArray meanLoss(NDArray logits, long[][] targets, Gpt2.Consts k) {
    if (precision().nativeOps().isPresent()) {
      return precision().nativeOps().get().crossEntropy(logits, PrecisionPolicy.targets(k.manager(), targets));
    }
    return Gpt2.loss(logits, targets, k);
  }

  /*
   * The network piece by piece, for passes that keep less than its whole graph (gradient checkpointing, the loss in
   * chunks of tokens): logits(ids) = head(layer(L-1, ... layer(0, embed(ids)))), the same operations in the same order.
   */

  /** The hidden states [B, T, d] the first decoder layer reads, of ids [B, T] from position 0. */
  NDArray embed(NDArray ids, Gpt2.Consts k, boolean training);

  /** Decoder layer i (of {@link ModelShape#layers()}) on hidden states [B, T, d] of sequences from position 0. */
  NDArray layer(int i, NDArray x, Gpt2.Consts k, boolean training);

  /** The final norm and the output head: logits [..., vocab] in the compute dtype of hidden states [..., d]. */
  NDArray head(NDArray x, Gpt2.Consts k);

  /**
   * fp32 logits [B, n, vocab] of {@code ids} [B, n], the tokens that follow the {@code cache.length()} tokens already
   * in {@code cache}, which they are appended to: the rows a full forward pass over all the tokens gives (no
   * dropout). The caller keeps the total within {@link #cacheHolds}.
   */
  default NDArray forwardCached(NDArray ids, KvCache cache, Gpt2.Consts k) {
    return precision().fp32(logits(ids, k, false, cache));
  }

  /** Whether {@link #forwardCached} can compute a sequence of {@code tokens} tokens (else: full forward passes). */
  default boolean cacheHolds(int tokens) {
    return tokens <= contextLength();
  }

  /** The arithmetic of training ({@code spec.training.precision}). */
  void setPrecision(PrecisionPolicy precision);

  PrecisionPolicy precision();

  /** Every weight by HF name, in a stable order. */
  Map<String, NDArray> parameters();

  /**
   * What the optimizer updates: every weight, or, with a LoRA adapter attached, the adapter alone (the base stays
   * frozen).
   */
  default Map<String, NDArray> trainable() {
    return lora() == null ? parameters() : lora().parameters();
  }

  /** Turns autograd on for what trains. */
  default void requireGradients() {
    trainable().values().forEach(a -> a.setRequiresGradient(true));
  }

  default long parameterCount() {
    return parameters().values().stream().mapToLong(a -> a.getShape().size()).sum();
  }

  /** What config.json fixes: names and shapes of the weights, LoRA's layers, the activations of a batch. */
  ModelShape shape();

  /** How the weights are stored: a frozen base in bf16 (a LoRA run in bf16), or float32. */
  default WeightStorage storage() {
    return parameters().values().stream().anyMatch(PrecisionPolicy::isBf16) ? WeightStorage.BF16_BASE
        : WeightStorage.FP32;
  }

  default int contextLength() {
    return shape().contextLength();
  }

  default int vocabSize() {
    return shape().vocabSize();
  }

  NDManager manager();

  /** Dropout probability for training forward passes; 0 turns it off. */
  void setDropout(double p);

  /** Routes the named linear layers through a LoRA adapter (null detaches it). */
  void attach(Lora adapter);

  Lora lora();

  /** See {@link ModelShape#linearLayers}. */
  default Map<String, long[]> linearLayers() {
    return shape().linearLayers();
  }

  /** See {@link ModelShape#defaultLoraTargets}. */
  default List<String> defaultLoraTargets() {
    return shape().defaultLoraTargets();
  }

  /** What the HF checkpoint puts before {@link #parameters()}' names ({@code transformer.} for GPT-2). */
  default String hfPrefix() {
    return "";
  }

  /** Whether the linear weights are stored [in, out] (GPT-2's Conv1D; PEFT's fan_in_fan_out) instead of [out, in]. */
  default boolean fanInFanOut() {
    return false;
  }

  /** Writes config.json and the weights into {@code dir} (HF layout, float32). */
  default void save(Path dir) throws IOException {
    save(dir, parameters());
  }

  /** Writes config.json and the given weights (named as {@link #parameters()}, e.g. with an adapter merged). */
  void save(Path dir, Map<String, NDArray> weights) throws IOException;

  /** Overwrites the weights in place with those of a directory {@link #save} wrote for the same config. */
  void restore(Path dir) throws IOException;

  @Override
  void close();
}
