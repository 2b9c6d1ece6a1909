package dev.finetune.trainer.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.ndarray.types.SparseFormat;
import ai.djl.nn.AbstractBlock;
import ai.djl.nn.Parameter;
import ai.djl.training.ParameterStore;
import ai.djl.util.PairList;
import dev.finetune.trainer.BadJobException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

/**
 * GPT-2 as HuggingFace's GPT2LMHeadModel computes it (nanoGPT style: one file, plain tensors): learned token
 * and position embeddings, pre-LayerNorm blocks with fused qkv attention under a causal mask and a tanh-GELU
 * MLP, a final LayerNorm, and logits through the tied token embedding.
 *
 * <p>It is a DJL {@link ai.djl.nn.Block}: every tensor is registered as a {@link Parameter} under its HF name, and
 * {@code forward(parameterStore, [ids], training)} returns [logits] (the step's constants then live on the
 * manager of {@code ids}). The trainer calls {@link #forward(NDArray, Consts, boolean)} directly.
 *
 * <p>Weights keep HuggingFace's names and Conv1D orientation ([in, out], so {@code x.matMul(w)}), which makes
 * loading and saving an HF directory a plain copy. Every constant on the autograd path is an NDArray made on
 * the step's manager ({@link Consts}): a Java scalar there can be freed before the backward pass reads it.
 */
public final class Gpt2 extends AbstractBlock implements CausalLm {
  private final GptConfig config;
  private final NDManager manager;
  /** Parameters by HF name (without the {@code transformer.} prefix), in a fixed order. */
  private final LinkedHashMap<String, NDArray> params;
  private float dropout;
  private PrecisionPolicy precision = PrecisionPolicy.FP32;
  private Lora lora;

  private Gpt2(GptConfig config, NDManager manager, LinkedHashMap<String, NDArray> params) {
    super((byte) 1);
    this.config = config;
    this.manager = manager;
    this.params = params;
    for (Map.Entry<String, NDArray> e : params.entrySet()) {
      String n = e.getKey();
      Parameter.Type type = n.contains("ln_") ? (n.endsWith(".weight") ? Parameter.Type.GAMMA : Parameter.Type.BETA)
          : n.endsWith(".bias") ? Parameter.Type.BIAS : Parameter.Type.WEIGHT;
      addParameter(Parameter.builder().setName(n).setType(type).optArray(e.getValue()).build());
    }
    // Initialised already (weights from a file or the seeded init): DJL must not initialise it again.
    inputShapes = new Shape[] {new Shape(1, config.contextLength())};
  }

  /** DJL Block entry point: [ids (int64, [B, T])] to [logits ([B, T, vocab])]. */
  @Override
  protected NDList forwardInternal(ParameterStore ps, NDList inputs, boolean training, PairList<String, Object> p) {
    NDArray ids = inputs.singletonOrThrow();
    return new NDList(forward(ids, new Consts(ids.getManager()), training));
  }

  @Override
  public Shape[] getOutputShapes(Shape[] inputShapes) {
    Shape in = inputShapes[0];
    return new Shape[] {new Shape(in.get(0), in.get(1), config.vocabSize())};
  }

  public GptConfig config() {
    return config;
  }

  @Override
  public ModelShape shape() {
    return config;
  }

  @Override
  public NDManager manager() {
    return manager;
  }

  @Override
  public void attach(Lora adapter) {
    this.lora = adapter;
  }

  @Override
  public Lora lora() {
    return lora;
  }

  @Override
  public String hfPrefix() {
    return "transformer.";
  }

  @Override
  public boolean fanInFanOut() {
    return true;
  }

  /** Parameters by HF name, in a stable order (the optimizer and checkpoints rely on it). */
  @Override
  public Map<String, NDArray> parameters() {
    return params;
  }

  /** Dropout probability used in training forward passes; 0 turns dropout off. */
  @Override
  public void setDropout(double p) {
    this.dropout = (float) p;
  }

  /** How forward passes compute (fp32 by default; the trainer sets what spec.training.precision resolves to). */
  @Override
  public void setPrecision(PrecisionPolicy precision) {
    this.precision = precision;
  }

  @Override
  public PrecisionPolicy precision() {
    return precision;
  }

  /** A randomly initialised GPT-2 (GPT-2's scheme: N(0, 0.02), residual projections scaled by 1/sqrt(2 layers)). */
  public static Gpt2 random(GptConfig c, long seed, NDManager parent) {
    NDManager m = parent.newSubManager();
    Random rnd = new Random(seed);
    LinkedHashMap<String, NDArray> params = new LinkedHashMap<>();
    double projStd = 0.02 / Math.sqrt(2.0 * c.layers());
    for (Map.Entry<String, Shape> e : c.weights().entrySet()) {
      String name = e.getKey();
      int n = (int) e.getValue().size();
      float[] v = new float[n];
      if (name.contains("ln_") && name.endsWith(".weight")) {
        java.util.Arrays.fill(v, 1f);
      } else if (name.endsWith(".weight")) {
        double std = name.endsWith("c_proj.weight") ? projStd : name.equals("wpe.weight") ? 0.01 : 0.02;
        for (int i = 0; i < n; i++) {
          v[i] = (float) (rnd.nextGaussian() * std);
        }
      }
      params.put(name, m.create(v, e.getValue()));
    }
    return new Gpt2(c, m, params);
  }

  /** Loads {@code model.safetensors} (HF names, with or without the {@code transformer.} prefix). */
  public static Gpt2 load(GptConfig c, Path safetensors, NDManager parent) throws IOException {
    return load(c, safetensors, parent, WeightStorage.FP32);
  }

  /** As {@link #load(GptConfig, Path, NDManager)}, each weight read straight into the dtype {@code storage} gives it. */
  public static Gpt2 load(GptConfig c, Path safetensors, NDManager parent, WeightStorage storage) throws IOException {
    NDManager m = parent.newSubManager();
    Map<String, NDArray> read;
    try {
      read = SafeTensors.read(safetensors, m, storage);
    } catch (IOException | RuntimeException e) {
      m.close();
      throw new BadJobException(safetensors + " is not a readable safetensors file: " + e.getMessage(), e);
    }
    Map<String, NDArray> byName = new LinkedHashMap<>();
    for (NDArray a : read.values()) {
      String name = a.getName();
      if (name.startsWith("transformer.")) {
        name = name.substring("transformer.".length());
      }
      byName.put(name, a);
    }
    LinkedHashMap<String, NDArray> params;
    try {
      // attention-mask buffers and the tied lm_head are not parameters
      params = c.match(byName, k -> k.endsWith(".attn.bias") || k.endsWith(".attn.masked_bias") || k.equals("lm_head.weight"),
          safetensors);
    } catch (BadJobException e) {
      m.close();
      throw e;
    }
    return new Gpt2(c, m, params);
  }

  /**
   * config.json and model.safetensors as HF writes them ({@code transformer.} names, Conv1D [in, out]; lm_head is
   * tied, not stored).
   */
  @Override
  public void save(Path dir, Map<String, NDArray> weights) throws IOException {
    config.write(dir.resolve("config.json"));
    LinkedHashMap<String, NDArray> named = new LinkedHashMap<>();
    weights.forEach((k, v) -> named.put("transformer." + k, v));
    SafeTensors.write(dir.resolve("model.safetensors"), named);
  }

  @Override
  public void restore(Path dir) throws IOException {
    try (Gpt2 saved = load(config, dir.resolve("model.safetensors"), manager)) {
      copyFrom(saved);
    }
  }

  /** Copies another model's weights into this one (same config), in place. */
  public void copyFrom(Gpt2 other) {
    for (Map.Entry<String, NDArray> e : params.entrySet()) {
      NoGrad.copy(other.params.get(e.getKey()), e.getValue());
    }
  }

  private NDArray p(String name) {
    return params.get(name);
  }

  /**
   * Logits in the precision's compute dtype (bf16 in mixed precision) of token ids [B, n] (int64) at positions
   * past..past+n-1, where past is what {@code cache} holds (0 without one; the new keys and values are appended to
   * it). {@code training} enables dropout when it is above 0. Intermediates are attached to the manager of
   * {@code ids}'s operations; run it in a step scope.
   */
  @Override
  public NDArray logits(NDArray ids, Consts k, boolean training, KvCache cache) {
    long n = ids.getShape().get(1);
    int past = cache == null ? 0 : cache.length();
    if (past + n > config.contextLength()) {
      throw new IllegalArgumentException((past + n) + " tokens exceed the context length " + config.contextLength());
    }
    NDArray x = embed(ids, past, k, training);
    NDArray mask = cache == null ? k.causalMask(n) : n == 1 ? null : k.offsetCausalMask(past, n);
    for (int i = 0; i < config.layers(); i++) {
      x = layer(i, x, mask, k, training, cache);
    }
    if (cache != null) {
      cache.advance(n);
    }
    return head(x, k);
  }

  @Override
  public NDArray embed(NDArray ids, Consts k, boolean training) {
    return embed(ids, 0, k, training);
  }

  @Override
  public NDArray layer(int i, NDArray x, Consts k, boolean training) {
    return layer(i, x, k.causalMask(x.getShape().get(1)), k, training, null);
  }

  /** Token and position embeddings of ids [B, n] at positions past..past+n-1, then dropout in training. */
  private NDArray embed(NDArray ids, int past, Consts k, boolean training) {
    long n = ids.getShape().get(1);
    NDArray x = precision.upcast(ids.getNDArrayInternal().embedding(ids, p("wte.weight"), SparseFormat.DENSE).singletonOrThrow());
    x = x.add(precision.upcast(p("wpe.weight").get(new NDIndex("{}:{}", past, past + n))));
    return training && dropout > 0 ? dropout(x) : x;
  }

  /** Block i: pre-LN attention and MLP with residuals, keys and values appended to {@code cache} when given. */
  private NDArray layer(int i, NDArray x, NDArray mask, Consts k, boolean training, KvCache cache) {
    long b = x.getShape().get(0);
    long n = x.getShape().get(1);
    int d = config.embeddingDim();
    int h = config.heads();
    int hd = config.headDim();
    boolean drop = training && dropout > 0;
    String pre = "h." + i + ".";
    NDList parts = linear(layerNorm(x, pre + "ln_1"), pre + "attn.c_attn", k, training).split(3, 2);
    NDArray q = parts.get(0).reshape(b, n, h, hd).transpose(0, 2, 1, 3);
    NDArray kk = parts.get(1).reshape(b, n, h, hd).transpose(0, 2, 1, 3);
    NDArray v = parts.get(2).reshape(b, n, h, hd).transpose(0, 2, 1, 3);
    if (cache != null) {
      kk = cache.keys(i, kk);
      v = cache.values(i, v);
    }
    NDArray y = attention(q, kk, v, mask, k, drop, cache == null).transpose(0, 2, 1, 3).reshape(b, n, d);
    y = linear(y, pre + "attn.c_proj", k, training);
    if (drop) {
      y = dropout(y);
    }
    x = x.add(y);
    NDArray f = linear(layerNorm(x, pre + "ln_2"), pre + "mlp.c_fc", k, training);
    f = linear(gelu(f, k), pre + "mlp.c_proj", k, training);
    if (drop) {
      f = dropout(f);
    }
    return x.add(f);
  }

  @Override
  public NDArray head(NDArray x, Consts k) {
    x = layerNorm(x, "ln_f");
    return precision.operand(x).matMul(precision.weight(p("wte.weight"), k.casts).transpose());
  }

  /** HF's Conv1D (x W + b, W [in, out]), plus the LoRA update where an adapter targets the layer. */
  private NDArray linear(NDArray x, String prefix, Consts k, boolean training) {
    NDArray y = precision.conv1d(x, p(prefix + ".weight"), p(prefix + ".bias"), k.casts);
    return lora == null ? y : lora.apply(prefix, x, y, k, training, precision);
  }

  /**
   * Causal self-attention of q [B, H, n, hd] over k, v [B, H, past+n, hd]: the fused kernel when the native library
   * has it and nothing is cached (no T x T matrix), else softmax(q k^T / sqrt(hd) + mask) v with the softmax in fp32
   * and the matmuls in the compute dtype; a null mask is one new token, which sees everything.
   */
  private NDArray attention(NDArray q, NDArray kk, NDArray v, NDArray mask, Consts k, boolean drop, boolean fusable) {
    if (fusable && precision.fusedAttention()) {
      return precision.nativeOps().get().causalAttention(q, kk, v, drop ? dropout : 0);
    }
    NDArray scores = q.matMul(kk.transpose(0, 1, 3, 2)).mul(k.attentionScale(q.getShape().get(3)));
    NDArray att = (mask == null ? scores : scores.add(mask)).softmax(-1);
    if (drop) {
      att = dropout(att);
    }
    return precision.operand(att).matMul(v);
  }

  private NDArray layerNorm(NDArray x, String prefix) {
    return x.getNDArrayInternal().layerNorm(x, new Shape(config.embeddingDim()), p(prefix + ".weight"),
        p(prefix + ".bias"), (float) config.layerNormEps()).singletonOrThrow();
  }

  private NDArray dropout(NDArray x) {
    return x.getNDArrayInternal().dropout(x, dropout, true).singletonOrThrow();
  }

  /** GPT-2's tanh GELU: one kernel from the native library when it is in use, else {@link #gelu(NDArray, Consts)}. */
  private NDArray gelu(NDArray x, Consts k) {
    return precision.nativeOps().isPresent() ? precision.nativeOps().get().gelu(x) : geluOps(x, k);
  }

  /** GPT-2's tanh GELU: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). DJL's gelu is the erf form. */
  public static NDArray geluOps(NDArray x, Consts k) {
    NDArray inner = x.add(x.mul(x).mul(x).mul(k.scalar(0.044715f))).mul(k.scalar((float) Math.sqrt(2 / Math.PI)));
    return x.mul(k.scalar(0.5f)).mul(inner.tanh().add(k.scalar(1f)));
  }

  /**
   * Mean cross-entropy over the targets that are not -100 (PyTorch's {@code ignore_index}). A batch with no
   * target at all has loss 0 and no gradient.
   */
  public static NDArray loss(NDArray logits, long[][] targets, Consts k) {
    int b = targets.length;
    int t = targets[0].length;
    long[] safe = new long[b * t];
    float[] weight = new float[b * t];
    int count = 0;
    for (int i = 0; i < b; i++) {
      for (int j = 0; j < t; j++) {
        long y = targets[i][j];
        if (y != -100) {
          safe[i * t + j] = y;
          weight[i * t + j] = 1f;
          count++;
        }
      }
    }
    NDManager m = k.manager();
    NDArray idx = m.create(safe, new Shape(b, t, 1));
    NDArray w = m.create(weight, new Shape(b, t));
    NDArray picked = logits.logSoftmax(-1).gather(idx, 2).reshape(b, t);
    return picked.mul(w).sum().neg().div(m.create((float) Math.max(count, 1)));
  }

  @Override
  public void close() {
    manager.close();
  }

  /**
   * Constants of one step, made as NDArrays on the step's manager so that they live until the step's
   * manager closes (after the backward pass).
   */
  public static final class Consts {
    private final NDManager manager;
    private final Map<Float, NDArray> scalars = new java.util.HashMap<>();
    private final Map<Long, NDArray> masks = new java.util.HashMap<>();
    private final Map<String, Object> memos = new java.util.HashMap<>();
    /** bf16 casts of the weights in mixed precision, made once per step (autocast's cast cache). */
    final Map<NDArray, NDArray> casts = PrecisionPolicy.newCache();

    public Consts(NDManager manager) {
      this.manager = manager;
    }

    public NDManager manager() {
      return manager;
    }

    NDArray scalar(float v) {
      return scalars.computeIfAbsent(v, x -> stepLong(manager.create(x)));
    }

    /**
     * Takes {@code a} out of the NDScope it was made in, so that it lives until the step's manager closes: what these
     * caches hold is read again by later layers, which the trainer may compute in scopes of their own.
     */
    static NDArray stepLong(NDArray a) {
      ai.djl.ndarray.NDScope.unregister(a);
      return a;
    }

    /** Closes the bf16 weight casts made so far (a forward pass without gradients made them; the next pass needs its own). */
    public void releaseCasts() {
      casts.values().forEach(NDArray::close);
      casts.clear();
    }

    /** A value made once per step (Llama's rotary tables, which every layer and every recomputation reads). */
    @SuppressWarnings("unchecked")
    <T> T memo(String key, java.util.function.Supplier<T> make) {
      return (T) memos.computeIfAbsent(key, x -> {
        T v = make.get();
        if (v instanceof NDArray[] arrays) {
          ai.djl.ndarray.NDScope.unregister(arrays);
        }
        return v;
      });
    }

    public NDArray attentionScale(long headDim) {
      return scalar((float) (1.0 / Math.sqrt(headDim)));
    }

    /** Additive mask [n, past + n] for n new tokens after {@code past} cached ones: -inf on keys after each query. */
    NDArray offsetCausalMask(int past, long n) {
      NDArray rows = manager.arange(past, past + (int) n).reshape(n, 1);
      NDArray cols = manager.arange(0, past + (int) n).reshape(1, past + n);
      NDArray future = cols.gt(rows);
      return ai.djl.ndarray.NDArrays.where(future, manager.full(new Shape(n, past + n), Float.NEGATIVE_INFINITY),
          manager.zeros(new Shape(n, past + n)));
    }

    /** Additive causal mask [T, T]: 0 on and below the diagonal, -inf above, from arange comparisons. */
    public NDArray causalMask(long t) {
      return masks.computeIfAbsent(t, n -> {
        NDArray rows = manager.arange(n.intValue()).reshape(n, 1);
        NDArray cols = manager.arange(n.intValue()).reshape(1, n);
        NDArray future = cols.gt(rows);
        return stepLong(ai.djl.ndarray.NDArrays.where(future, manager.full(new Shape(n, n), Float.NEGATIVE_INFINITY),
            manager.zeros(new Shape(n, n))));
      });
    }
  }
}
