package dev.finetune.trainer.model;

import dev.finetune.trainer.BadJobException;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.ndarray.types.SparseFormat;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The Llama-family decoder as transformers computes it ({@code LlamaForCausalLM}, {@code Qwen2ForCausalLM},
 * {@code MistralForCausalLM}): token embedding, pre-RMSNorm blocks with rotary (RoPE) grouped-query attention and a
 * SwiGLU MLP, a final RMSNorm, and logits through {@code lm_head} (or the tied embedding).
 *
 * <p>Parameters keep their HF names and orientation ({@code nn.Linear}: [out, in]), so loading and saving an HF
 * directory is a plain copy. Every projection goes through {@link #linear}, the one place where a LoRA adapter adds
 * its update (and where a lower-precision matmul would go). Constants on the autograd path are NDArrays of the
 * step ({@link Gpt2.Consts}).
 */
public final class Llama implements CausalLm {
  private final LlamaConfig config;
  private final NDManager manager;
  private final LinkedHashMap<String, NDArray> params;
  private final float[] inverseFrequencies;
  private float attentionDropout;
  private Lora lora;
  private PrecisionPolicy precision = PrecisionPolicy.FP32;

  private Llama(LlamaConfig config, NDManager manager, LinkedHashMap<String, NDArray> params) {
    this.config = config;
    this.manager = manager;
    this.params = params;
    this.inverseFrequencies = config.rope().inverseFrequencies(config.headDim());
  }

  public LlamaConfig config() {
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
  public Map<String, NDArray> parameters() {
    return params;
  }

  /** HF Llama has no residual or embedding dropout; the job's dropout applies to the attention probabilities. */
  @Override
  public void setDropout(double p) {
    this.attentionDropout = (float) p;
  }

  /**
   * fp32 (the reference path), tf32, or bf16 mixed precision as under PyTorch's autocast: projections, attention
   * matmuls, RoPE and the SwiGLU product in bf16; embedding, RMSNorm, softmax, the residual stream and the loss in fp32.
   */
  @Override
  public void setPrecision(PrecisionPolicy precision) {
    this.precision = precision;
  }

  @Override
  public PrecisionPolicy precision() {
    return precision;
  }

  @Override
  public void attach(Lora adapter) {
    this.lora = adapter;
  }

  @Override
  public Lora lora() {
    return lora;
  }

  /** A randomly initialised model of {@code c} (weights normal(0, 0.02), norms 1, biases 0), for benchmarks. */
  public static Llama random(LlamaConfig c, NDManager parent) {
    NDManager m = parent.newSubManager();
    LinkedHashMap<String, NDArray> params = new LinkedHashMap<>();
    for (Map.Entry<String, Shape> e : c.weights().entrySet()) {
      String name = e.getKey();
      Shape shape = e.getValue();
      params.put(name, name.endsWith("norm.weight") ? m.ones(shape) : name.endsWith(".bias") ? m.zeros(shape)
          : m.randomNormal(0f, 0.02f, shape, DataType.FLOAT32));
    }
    return new Llama(c, m, params);
  }

  /** Loads a model directory's weights (one file or shards); names and shapes must match config.json. */
  public static Llama load(LlamaConfig c, Path dir, NDManager parent) throws IOException {
    return load(c, dir, parent, WeightStorage.FP32);
  }

  /** As {@link #load(LlamaConfig, Path, NDManager)}, each weight read straight into the dtype {@code storage} gives it. */
  public static Llama load(LlamaConfig c, Path dir, NDManager parent, WeightStorage storage) throws IOException {
    NDManager m = parent.newSubManager();
    try {
      Map<String, NDArray> read = HfWeights.read(dir, m, storage);
      // some tied checkpoints store lm_head anyway; rotary buffers are recomputed
      LinkedHashMap<String, NDArray> params = c.match(read,
          k -> (c.tiedEmbeddings() && k.equals("lm_head.weight")) || k.endsWith(".rotary_emb.inv_freq"), dir);
      return new Llama(c, m, params);
    } catch (IOException | RuntimeException e) {
      m.close();
      throw e;
    }
  }

  /** config.json (as read) and model.safetensors (float32, HF names): transformers loads the directory. */
  @Override
  public void save(Path dir, Map<String, NDArray> weights) throws IOException {
    config.write(dir.resolve("config.json"));
    SafeTensors.write(dir.resolve(HfWeights.SINGLE), weights);
  }

  @Override
  public void restore(Path dir) throws IOException {
    try (Llama saved = load(config, dir, manager)) {
      for (Map.Entry<String, NDArray> e : params.entrySet()) {
        NoGrad.copy(saved.params.get(e.getKey()), e.getValue());
      }
    }
  }

  private NDArray p(String name) {
    return params.get(name);
  }

  /**
   * Logits in the precision's compute dtype (bf16 in mixed precision) of token ids [B, n] (int64) at positions
   * past..past+n-1, where past is what {@code cache} holds (0 without one; the new keys and values are appended to
   * it). Intermediates belong to the step's manager ({@code k}); run it in a step scope.
   */
  @Override
  public NDArray logits(NDArray ids, Gpt2.Consts k, boolean training, KvCache cache) {
    long n = ids.getShape().get(1);
    int past = cache == null ? 0 : cache.length();
    if (n > config.contextLength() || cache != null && !cacheHolds(past + (int) n)) {
      throw new IllegalArgumentException((past + n) + " tokens exceed the context length " + config.contextLength()
          + (cache == null ? "" : " or a sliding window, which a KV cache cannot follow"));
    }
    NDArray x = embed(ids, k, training);
    for (int i = 0; i < config.layers(); i++) {
      x = layer(i, x, past, k, training, cache);
    }
    if (cache != null) {
      cache.advance(n);
    }
    return head(x, k);
  }

  @Override
  public NDArray embed(NDArray ids, Gpt2.Consts k, boolean training) {
    return precision.upcast(ids.getNDArrayInternal().embedding(ids, p("model.embed_tokens.weight"), SparseFormat.DENSE)
        .singletonOrThrow());
  }

  @Override
  public NDArray layer(int i, NDArray x, Gpt2.Consts k, boolean training) {
    return layer(i, x, 0, k, training, null);
  }

  /** Decoder layer i on hidden states x [B, n] at positions past..past+n-1, keys and values appended to a cache. */
  private NDArray layer(int i, NDArray x, int past, Gpt2.Consts k, boolean training, KvCache cache) {
    long b = x.getShape().get(0);
    long n = x.getShape().get(1);
    int h = config.heads();
    int kvh = config.kvHeads();
    int hd = config.headDim();
    boolean drop = training && attentionDropout > 0;
    NDArray[] rope = k.memo("rope " + past + " " + n, () -> rotary(k.manager(), past, n));
    String pre = "model.layers." + i + ".";
    NDArray a = rmsNorm(x, pre + "input_layernorm.weight", k);
    NDArray q = applyRotary(linear(a, pre + "self_attn.q_proj", k, training).reshape(b, n, h, hd).transpose(0, 2, 1, 3), rope);
    NDArray kk = applyRotary(linear(a, pre + "self_attn.k_proj", k, training).reshape(b, n, kvh, hd).transpose(0, 2, 1, 3), rope);
    NDArray v = linear(a, pre + "self_attn.v_proj", k, training).reshape(b, n, kvh, hd).transpose(0, 2, 1, 3);
    if (cache != null) {
      kk = cache.keys(i, kk);
      v = cache.values(i, v);
    }
    long all = past + n;
    int window = config.slidingWindow()[i];
    NDArray mask = cache == null ? mask(k, n, window) : n == 1 ? null : k.offsetCausalMask(past, n);
    boolean fusable = cache == null && (window <= 0 || window >= n);
    NDArray y = attention(q, repeatKv(kk, b, all), repeatKv(v, b, all), mask, k, drop, fusable)
        .transpose(0, 2, 1, 3).reshape(b, n, (long) h * hd);
    x = x.add(linear(y, pre + "self_attn.o_proj", k, training));
    NDArray f = rmsNorm(x, pre + "post_attention_layernorm.weight", k);
    NDArray gate = linear(f, pre + "mlp.gate_proj", k, training);
    NDArray up = linear(f, pre + "mlp.up_proj", k, training);
    return x.add(linear(silu(gate).mul(up), pre + "mlp.down_proj", k, training));
  }

  @Override
  public NDArray head(NDArray x, Gpt2.Consts k) {
    x = rmsNorm(x, "model.norm.weight", k);
    NDArray head = config.tiedEmbeddings() ? p("model.embed_tokens.weight") : p("lm_head.weight");
    return precision.linear(x, head, null, k.casts);
  }

  @Override
  public boolean cacheHolds(int tokens) {
    if (tokens > config.contextLength()) {
      return false;
    }
    for (int window : config.slidingWindow()) {
      if (window > 0 && tokens > window) {
        return false; // the cache would need the sliding mask; full passes compute it
      }
    }
    return true;
  }

  /**
   * Causal attention of q [B, H, n, hd] over k, v [B, H, past+n, hd] (already repeated for grouped queries): the
   * fused kernel where the native library has it and {@code fusable} (no cache, the whole window visible), else
   * softmax(q k^T / sqrt(hd) + mask) v with the softmax in fp32 and the matmuls in the compute dtype; a null mask is
   * one new token, which sees everything.
   */
  private NDArray attention(NDArray q, NDArray kk, NDArray v, NDArray mask, Gpt2.Consts k, boolean drop, boolean fusable) {
    if (fusable && precision.fusedAttention()) {
      return precision.nativeOps().get().causalAttention(precision.operand(q), precision.operand(kk),
          precision.operand(v), drop ? attentionDropout : 0);
    }
    NDArray scores = precision.fp32(precision.operand(q).matMul(precision.operand(kk).transpose(0, 1, 3, 2)))
        .mul(k.attentionScale(config.headDim()));
    NDArray att = (mask == null ? scores : scores.add(mask)).softmax(-1);
    if (drop) {
      att = att.getNDArrayInternal().dropout(att, attentionDropout, true).singletonOrThrow();
    }
    return precision.operand(att).matMul(precision.operand(v));
  }

  /** An nn.Linear module by its HF name (weight [out, in], optional bias), plus the LoRA update where one is attached. */
  private NDArray linear(NDArray x, String module, Gpt2.Consts k, boolean training) {
    NDArray y = precision.linear(x, p(module + ".weight"), params.get(module + ".bias"), k.casts);
    return lora == null ? y : lora.apply(module, x, y, k, training, precision);
  }

  /** RMSNorm: w * x / sqrt(mean(x^2) + eps) over the last axis. */
  private NDArray rmsNorm(NDArray x, String weight, Gpt2.Consts k) {
    NDArray variance = x.mul(x).mean(new int[] {-1}, true);
    return x.div(variance.add(k.scalar((float) config.rmsNormEps())).sqrt()).mul(p(weight));
  }

  private static NDArray silu(NDArray x) {
    return x.mul(x.getNDArrayInternal().sigmoid());
  }

  /** cos and sin [T, headDim] for positions past..past+T-1 (each frequency twice, as transformers concatenates them). */
  private NDArray[] rotary(NDManager m, int past, long t) {
    int hd = config.headDim();
    int half = hd / 2;
    float[] cos = new float[(int) t * hd];
    float[] sin = new float[(int) t * hd];
    for (int pos = 0; pos < t; pos++) {
      for (int i = 0; i < half; i++) {
        float angle = (past + pos) * inverseFrequencies[i];
        float c = (float) Math.cos(angle);
        float s = (float) Math.sin(angle);
        cos[pos * hd + i] = c;
        cos[pos * hd + i + half] = c;
        sin[pos * hd + i] = s;
        sin[pos * hd + i + half] = s;
      }
    }
    return new NDArray[] {precision.operand(m.create(cos, new Shape(t, hd))), precision.operand(m.create(sin, new Shape(t, hd)))};
  }

  /** x cos + rotate_half(x) sin, where rotate_half([x1, x2]) = [-x2, x1] over the head dimension. */
  private static NDArray applyRotary(NDArray x, NDArray[] rope) {
    NDList halves = x.split(2, 3);
    NDArray rotated = NDArrays.concat(new NDList(halves.get(1).neg(), halves.get(0)), 3);
    return x.mul(rope[0]).add(rotated.mul(rope[1]));
  }

  /** Grouped-query attention: each key/value head serves queriesPerKv consecutive query heads (HF's repeat_kv). */
  private NDArray repeatKv(NDArray x, long b, long t) {
    int rep = config.queriesPerKv();
    if (rep == 1) {
      return x;
    }
    int kvh = config.kvHeads();
    int hd = config.headDim();
    return x.expandDims(2).broadcast(b, kvh, rep, t, hd).reshape(b, (long) kvh * rep, t, hd);
  }

  /** The additive causal mask, limited to the last {@code window} positions when the layer slides (Mistral). */
  private static NDArray mask(Gpt2.Consts k, long t, int window) {
    if (window <= 0 || window >= t) {
      return k.causalMask(t);
    }
    NDManager m = k.manager();
    NDArray rows = m.arange((int) t).reshape(t, 1);
    NDArray cols = m.arange((int) t).reshape(1, t);
    NDArray hidden = cols.gt(rows).logicalOr(cols.lte(rows.sub(window)));
    return NDArrays.where(hidden, m.full(new Shape(t, t), Float.NEGATIVE_INFINITY), m.zeros(new Shape(t, t)));
  }

  @Override
  public void close() {
    manager.close();
  }
}
