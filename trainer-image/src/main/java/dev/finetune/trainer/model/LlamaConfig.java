package dev.finetune.trainer.model;

import dev.finetune.trainer.BadJobException;
import dev.finetune.trainer.TextFiles;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The shape of a Llama-family decoder (HF {@code LlamaForCausalLM}, {@code Qwen2ForCausalLM},
 * {@code MistralForCausalLM}; SmolLM2 is a Llama), read from {@code config.json}. The file itself is kept and written
 * back unchanged, so a saved model carries every field transformers needs.
 *
 * @param qkvBias q/k/v projections have biases (Qwen2; Llama's {@code attention_bias})
 * @param outBias o_proj has a bias (Llama's {@code attention_bias} only)
 * @param slidingWindow per layer: the attention window in tokens, 0 for full causal attention
 */
public record LlamaConfig(String modelType, int vocabSize, int hidden, int intermediate, int layers, int heads,
    int kvHeads, int headDim, int contextLength, double rmsNormEps, Rope rope, boolean qkvBias, boolean outBias,
    boolean mlpBias, boolean tiedEmbeddings, int[] slidingWindow, int endOfText, ObjectNode json) implements ModelShape {

  @Override
  public int hiddenSize() {
    return hidden;
  }

  /** The model_type values this network serves. */
  public static final List<String> TYPES = List.of("llama", "qwen2", "mistral");

  private static final ObjectMapper JSON = new ObjectMapper();

  /**
   * Rotary embedding parameters. {@code type} "default" (plain RoPE) or "llama3" (Llama 3.1's frequency
   * rescaling with {@code factor}, {@code lowFreqFactor}, {@code highFreqFactor}, {@code originalContext}).
   */
  public record Rope(double theta, String type, double factor, double lowFreqFactor, double highFreqFactor,
      int originalContext) {

    /** Inverse frequencies, one per pair of head dimensions, computed in float32 as transformers does. */
    public float[] inverseFrequencies(int headDim) {
      float[] inv = new float[headDim / 2];
      for (int i = 0; i < inv.length; i++) {
        inv[i] = (float) (1.0 / Math.pow(theta, (float) (2 * i) / headDim));
      }
      if (type.equals("llama3")) {
        double lowWavelen = originalContext / lowFreqFactor;
        double highWavelen = originalContext / highFreqFactor;
        for (int i = 0; i < inv.length; i++) {
          double wavelen = 2 * Math.PI / inv[i];
          if (wavelen > lowWavelen) {
            inv[i] = (float) (inv[i] / factor);
          } else if (wavelen >= highWavelen) {
            double smooth = (originalContext / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
            inv[i] = (float) ((1 - smooth) * inv[i] / factor + smooth * inv[i]);
          }
        }
      }
      return inv;
    }
  }

  /** Reads config.json; anything this network cannot compute exactly is a bad-job error naming the field. */
  public static LlamaConfig read(Path configJson) throws IOException {
    JsonNode c = TextFiles.modelConfig(configJson);
    String type = c.path("model_type").asText("");
    if (!TYPES.contains(type)) {
      throw new BadJobException(configJson + ": model_type '" + type + "' is not a Llama-family model (" + TYPES + ")");
    }
    String act = c.path("hidden_act").asText("silu");
    if (!act.equals("silu")) {
      throw new BadJobException(configJson + ": hidden_act '" + act + "' is not supported (silu only)");
    }
    int hidden = required(c, "hidden_size", configJson);
    int heads = required(c, "num_attention_heads", configJson);
    int kvHeads = c.path("num_key_value_heads").isNumber() ? c.get("num_key_value_heads").asInt() : heads;
    int headDim = c.path("head_dim").isNumber() ? c.get("head_dim").asInt() : hidden / heads;
    if (heads % kvHeads != 0) {
      throw new BadJobException(configJson + ": num_attention_heads " + heads + " is not a multiple of num_key_value_heads " + kvHeads);
    }
    if (headDim % 2 != 0) {
      throw new BadJobException(configJson + ": head dimension " + headDim + " is odd; rotary embeddings need it even");
    }
    if (c.path("partial_rotary_factor").asDouble(1.0) != 1.0) {
      throw new BadJobException(configJson + ": partial_rotary_factor is not supported (1.0 only)");
    }
    int layers = required(c, "num_hidden_layers", configJson);
    boolean attentionBias = c.path("attention_bias").asBoolean(false);
    boolean qwen = type.equals("qwen2");
    return new LlamaConfig(type, required(c, "vocab_size", configJson), hidden, required(c, "intermediate_size", configJson),
        layers, heads, kvHeads, headDim, c.path("max_position_embeddings").asInt(2048),
        c.path("rms_norm_eps").asDouble(1e-6), rope(c, configJson), qwen || attentionBias, !qwen && attentionBias,
        c.path("mlp_bias").asBoolean(false), c.path("tie_word_embeddings").asBoolean(false),
        slidingWindows(c, type, layers), firstId(c.get("eos_token_id"), firstId(c.get("bos_token_id"), 0)),
        (ObjectNode) c);
  }

  /** Writes config.json as it was read. */
  public void write(Path configJson) throws IOException {
    Files.writeString(configJson, JSON.writerWithDefaultPrettyPrinter().writeValueAsString(json));
  }

  /** HF's names; linear weights [out, in]; lm_head only when not tied to the embedding. */
  @Override
  public LinkedHashMap<String, Shape> weights() {
    LinkedHashMap<String, Shape> s = new LinkedHashMap<>();
    long d = hidden;
    long q = (long) heads * headDim;
    long kv = (long) kvHeads * headDim;
    s.put("model.embed_tokens.weight", new Shape(vocabSize, d));
    for (int i = 0; i < layers; i++) {
      String p = "model.layers." + i + ".";
      s.put(p + "input_layernorm.weight", new Shape(d));
      linear(s, p + "self_attn.q_proj", q, d, qkvBias);
      linear(s, p + "self_attn.k_proj", kv, d, qkvBias);
      linear(s, p + "self_attn.v_proj", kv, d, qkvBias);
      linear(s, p + "self_attn.o_proj", d, q, outBias);
      s.put(p + "post_attention_layernorm.weight", new Shape(d));
      linear(s, p + "mlp.gate_proj", intermediate, d, mlpBias);
      linear(s, p + "mlp.up_proj", intermediate, d, mlpBias);
      linear(s, p + "mlp.down_proj", d, intermediate, mlpBias);
    }
    s.put("model.norm.weight", new Shape(d));
    if (!tiedEmbeddings) {
      s.put("lm_head.weight", new Shape(vocabSize, d));
    }
    return s;
  }

  private static void linear(Map<String, Shape> s, String name, long out, long in, boolean bias) {
    s.put(name + ".weight", new Shape(out, in));
    if (bias) {
      s.put(name + ".bias", new Shape(out));
    }
  }

  /** The seven projections of every layer (weight [out, in]). */
  @Override
  public Map<String, long[]> linearLayers() {
    Map<String, long[]> out = new LinkedHashMap<>();
    weights().forEach((name, shape) -> {
      if (name.startsWith("model.layers.") && name.endsWith("_proj.weight")) {
        out.put(name.substring(0, name.length() - ".weight".length()), new long[] {shape.get(1), shape.get(0)});
      }
    });
    return out;
  }

  @Override
  public List<String> defaultLoraTargets() {
    return List.of("q_proj", "v_proj");
  }

  @Override
  public long layerActivationBytes(int batch, int tokens, boolean nativeKernels) {
    long n = (long) batch * tokens;
    long q = (long) heads * headDim;
    long kv = (long) kvHeads * headDim;
    // the input, both norms' normalised and scaled outputs, the residual sum: 6 hidden; q: its projection, rotated
    // half and rotated result, and the attention output: 4 q; k and v: 4 kv (with grouped queries: k's projection and
    // rotated half, and the repeated k and v); the MLP: gate, its sigmoid, silu, up and their product: 5 intermediate
    long perToken = 6L * hidden + 4 * q + (queriesPerKv() == 1 ? 4 * kv : 2 * kv + 2 * q) + 5L * intermediate;
    // the attention probabilities, or with the fused kernel its output (the log-sum-exp is negligible)
    long attention = nativeKernels ? n * q : (long) batch * heads * tokens * tokens;
    return 4 * (n * perToken + attention);
  }

  public int queriesPerKv() {
    return heads / kvHeads;
  }

  private static int required(JsonNode c, String field, Path file) {
    if (!c.path(field).isNumber()) {
      throw new BadJobException(file + ": " + field + " is missing");
    }
    return c.get(field).asInt();
  }

  /** An id field that may be a number or a list (Llama 3 lists several end tokens: the first counts). */
  static int firstId(JsonNode n, int fallback) {
    if (n != null && n.isArray() && n.size() > 0) {
      return n.get(0).asInt();
    }
    return n != null && n.isNumber() ? n.asInt() : fallback;
  }

  /** rope_theta and rope_scaling (transformers 4) or rope_parameters (transformers 5). */
  private static Rope rope(JsonNode c, Path file) {
    JsonNode params = c.path("rope_parameters").isObject() ? c.get("rope_parameters") : c.path("rope_scaling");
    double theta = params.path("rope_theta").isNumber() ? params.get("rope_theta").asDouble()
        : c.path("rope_theta").asDouble(10000.0);
    String type = params.isObject() ? params.path("rope_type").asText(params.path("type").asText("default")) : "default";
    switch (type) {
      case "default":
        return new Rope(theta, "default", 1, 1, 1, 0);
      case "llama3":
        return new Rope(theta, "llama3", params.path("factor").asDouble(8), params.path("low_freq_factor").asDouble(1),
            params.path("high_freq_factor").asDouble(4), params.path("original_max_position_embeddings").asInt(8192));
      default:
        throw new BadJobException(file + ": rope type '" + type + "' is not supported (default or llama3)");
    }
  }

  /** Mistral's sliding_window applies to every layer; Qwen2's only with use_sliding_window, per layer_types. */
  private static int[] slidingWindows(JsonNode c, String type, int layers) {
    int[] w = new int[layers];
    int window = c.path("sliding_window").isNumber() ? c.get("sliding_window").asInt() : 0;
    if (window <= 0 || type.equals("llama")) {
      return w;
    }
    if (type.equals("mistral")) {
      java.util.Arrays.fill(w, window);
      return w;
    }
    if (!c.path("use_sliding_window").asBoolean(false)) {
      return w;
    }
    JsonNode kinds = c.path("layer_types");
    int maxWindowLayers = c.path("max_window_layers").asInt(layers);
    for (int i = 0; i < layers; i++) {
      boolean sliding = kinds.isArray() && kinds.size() == layers ? kinds.get(i).asText().equals("sliding_attention")
          : i >= maxWindowLayers;
      w[i] = sliding ? window : 0;
    }
    return w;
  }
}
