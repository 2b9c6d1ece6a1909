package dev.finetune.trainer.train;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.training.GradientCollector;
import dev.finetune.trainer.data.Collator;
import dev.finetune.trainer.model.CausalLm;
import dev.finetune.trainer.model.Gpt2;
import dev.finetune.trainer.model.NoGrad;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * The forward and backward pass of one micro-batch, as the job asks for it:
 * <ul>
 *   <li>whole: one graph from the embeddings to the loss, one backward pass;
 *   <li>with the loss in chunks of {@code lossChunkTokens} tokens: the decoder's output is cut from the graph, and
 *       each chunk's logits, loss and backward pass come and go before the next chunk's (so the logits of the whole
 *       batch never exist); their gradients with respect to the decoder's output are then passed through the decoder;
 *   <li>with gradient checkpointing: the forward pass keeps no graph, only each decoder layer's input; the backward pass
 *       recomputes one layer at a time from its input, with its graph, and passes the gradient through it.
 * </ul>
 * The pieces are the network's {@link CausalLm#embed}, {@link CausalLm#layer} and {@link CausalLm#head}, so every
 * way computes the same operations on the same numbers. The gradient that flows into a piece is applied as the
 * backward pass of sum(output * gradient), whose gradient with respect to the output is exactly that gradient.
 * Dropout draws its masks from a seed per micro-batch and piece, so a recomputed layer draws the masks it drew before.
 */
public final class MicroStep {
  private final CausalLm net;
  private final boolean checkpointing;
  private final int lossChunkTokens;
  private final double dropout;
  private final long seed;

  public MicroStep(CausalLm net, boolean checkpointing, int lossChunkTokens, double dropout, long seed) {
    this.net = net;
    this.checkpointing = checkpointing;
    this.lossChunkTokens = lossChunkTokens;
    this.dropout = dropout;
    this.seed = seed;
  }

  /**
   * Whether a batch of {@code tokens} positions is computed in pieces (else as one graph). With dropout always, so
   * that its masks are drawn per piece with or without checkpointing.
   */
  public boolean inPieces(long tokens) {
    return checkpointing || dropout > 0 || lossChunkTokens > 0 && tokens > lossChunkTokens;
  }

  /**
   * The micro-batch's mean loss over its targets, times {@code weight} (a rank's share of the batch's targets); its
   * gradients, divided by {@code groupSize} (the micro-batches of an optimizer step), are added to the trainable
   * weights'. Run inside a gradient collector, in a step scope.
   */
  public double run(GradientCollector gc, NDArray ids, long[][] targets, Gpt2.Consts k, double weight, int groupSize,
      long microIndex) {
    NDManager m = k.manager();
    int layers = net.shape().layers();
    List<NDArray> inputs = checkpointing ? new ArrayList<>(layers) : null;
    NDArray x;
    // With checkpointing there is no graph, so only each layer's input is kept, and the layers use casts of their own,
    // which have none.
    Gpt2.Consts forward = checkpointing ? new Gpt2.Consts(m) : k;
    try (NoGrad noGrad = checkpointing ? new NoGrad() : null) {
      x = decoder(ids, forward, true, microIndex, inputs);
    }
    if (checkpointing) {
      forward.releaseCasts();
    }
    if (!inPieces((long) targets.length * targets[0].length)) { // the head and the loss on the graph, one backward pass
      NDArray loss = net.meanLoss(net.head(x, k), targets, k);
      double value = loss.getFloat() * weight;
      gc.backward(scaled(loss, weight, groupSize, m));
      return value;
    }
    long[] flat = flatten(targets);
    long count = targetCount(flat);
    if (count == 0) {
      return 0; // nothing to learn here: no gradient, as the whole graph's loss of 0 gives none
    }
    // the head and the loss, chunk by chunk, from the decoder's output cut from the graph
    NDArray out = x.stopGradient();
    out.setRequiresGradient(true);
    double loss = headAndLoss(gc, out, flat, count, k, weight, groupSize);
    NDArray g = out.getGradient();
    // the decoder, from the last layer down
    if (!checkpointing) {
      backwardThrough(gc, x, g);
      return loss;
    }
    for (int i = layers - 1; i >= 0; i--) {
      NDArray below;
      try (NDScope layer = new NDScope()) {
        NDArray in = inputs.get(i).stopGradient();
        in.setRequiresGradient(true);
        seed(microIndex, i);
        backwardThrough(gc, net.layer(i, in, k, true), g);
        below = in.getGradient();
        NDScope.unregister(below);
      }
      g.close();
      g = below;
      inputs.get(i).close(); // its layer is done: the input is kept no longer
    }
    if (net.lora() == null) { // the embeddings train too (with an adapter, only the adapter does)
      try (NDScope embed = new NDScope()) {
        seed(microIndex, -1);
        backwardThrough(gc, net.embed(ids, k, true), g);
      }
    }
    return loss;
  }

  /**
   * The mean loss of a batch without dropout or gradients (validation): each layer's intermediates closed as it ends,
   * the logits chunk by chunk as in training.
   */
  double validationLoss(NDArray ids, long[][] targets, Gpt2.Consts k) {
    long[] flat = flatten(targets);
    return headAndLoss(null, decoder(ids, k, false, 0, null), flat, targetCount(flat), k, 1, 1);
  }

  /**
   * The decoder's output [B, T, d], every layer in an NDScope that closes what the layer made but its output: what
   * autograd saved for the backward pass stays (the graph holds it), the rest goes now instead of when the step ends.
   * {@code inputs}, when given, receives each layer's input.
   */
  private NDArray decoder(NDArray ids, Gpt2.Consts k, boolean training, long microIndex, List<NDArray> inputs) {
    seed(microIndex, -1);
    NDArray x = net.embed(ids, k, training);
    for (int i = 0; i < net.shape().layers(); i++) {
      if (inputs != null) {
        inputs.add(x);
      }
      seed(microIndex, i);
      try (NDScope layer = new NDScope()) {
        x = net.layer(i, x, k, training);
        NDScope.unregister(x);
      }
    }
    return x;
  }

  /**
   * Sum over chunks of rows of the mean loss of the chunk times its share of the {@code count} targets of
   * {@code flat} (all rows' targets, one after the other): the batch's mean loss. Each chunk's backward pass (scaled)
   * runs before the next chunk's logits are made (none without {@code gc}).
   */
  private double headAndLoss(GradientCollector gc, NDArray out, long[] flat, long count, Gpt2.Consts k, double weight,
      int groupSize) {
    NDManager m = k.manager();
    NDArray rows = out.reshape(1, flat.length, out.getShape().get(2));
    int chunk = lossChunkTokens > 0 ? lossChunkTokens : flat.length;
    double loss = 0;
    for (int start = 0; start < flat.length; start += chunk) {
      long[] part = Arrays.copyOfRange(flat, start, Math.min(start + chunk, flat.length));
      long n = targetCount(part);
      if (n == 0) {
        continue; // no target here: no loss, no gradient
      }
      try (NDScope scope = new NDScope()) { // the chunk's logits go before the next chunk's are made
        NDArray logits = net.head(rows.get(new NDIndex(":, {}:{}, :", start, start + part.length)), k);
        NDArray mean = net.meanLoss(logits, new long[][] {part}, k);
        NDArray share = mean.mul(m.create((float) ((double) n / count)));
        loss += share.getFloat() * weight;
        if (gc != null) {
          gc.backward(scaled(share, weight, groupSize, m));
        }
      }
    }
    return loss;
  }

  /** The rows of targets one after the other. */
  private static long[] flatten(long[][] targets) {
    return Arrays.stream(targets).flatMapToLong(Arrays::stream).toArray();
  }

  /** How many of {@code targets} the loss trains (not -100). */
  static long targetCount(long[]... targets) {
    return Arrays.stream(targets).flatMapToLong(Arrays::stream).filter(y -> y != Collator.IGNORE).count();
  }

  /** The loss a backward pass starts from: weighted, then divided by the group size. */
  private static NDArray scaled(NDArray loss, double weight, int groupSize, NDManager m) {
    NDArray l = weight == 1 ? loss : loss.mul(m.create((float) weight));
    return groupSize == 1 ? l : l.div(m.create((float) groupSize));
  }

  /** The backward pass of sum(y * g): g flows into y's graph. */
  private static void backwardThrough(GradientCollector gc, NDArray y, NDArray g) {
    gc.backward(y.mul(g.toType(y.getDataType(), false)).sum());
  }

  /** Dropout masks of a micro-batch's piece (the embeddings: -1) depend on the seed, the micro-batch and the piece. */
  private void seed(long microIndex, int piece) {
    if (dropout > 0) {
      Engine.getInstance().setRandomSeed((int) (seed * 31 + microIndex) * 1_000_003 + piece + 1);
    }
  }
}
