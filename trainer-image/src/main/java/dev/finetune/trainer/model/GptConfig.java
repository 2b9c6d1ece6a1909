package dev.finetune.trainer.model;

import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.finetune.trainer.BadJobException;
import dev.finetune.trainer.TextFiles;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** The GPT-2 shape, read from and written to HuggingFace's {@code config.json}. */
public record GptConfig(int vocabSize, int contextLength, int embeddingDim, int layers, int heads, int inner,
    double layerNormEps, int endOfText) implements ModelShape {

  private static final ObjectMapper JSON = new ObjectMapper();

  @Override
  public int hiddenSize() {
    return embeddingDim;
  }

  public GptConfig {
    if (embeddingDim % heads != 0) {
      throw new IllegalArgumentException("embedding width " + embeddingDim + " is not divisible by " + heads + " heads");
    }
  }

  public int headDim() {
    return embeddingDim / heads;
  }

  /** HF's names without {@code transformer.}; Conv1D weights [in, out]; lm_head is tied to wte. */
  @Override
  public LinkedHashMap<String, Shape> weights() {
    LinkedHashMap<String, Shape> s = new LinkedHashMap<>();
    int d = embeddingDim;
    s.put("wte.weight", new Shape(vocabSize, d));
    s.put("wpe.weight", new Shape(contextLength, d));
    for (int i = 0; i < layers; i++) {
      String p = "h." + i + ".";
      s.put(p + "ln_1.weight", new Shape(d));
      s.put(p + "ln_1.bias", new Shape(d));
      s.put(p + "attn.c_attn.weight", new Shape(d, 3L * d));
      s.put(p + "attn.c_attn.bias", new Shape(3L * d));
      s.put(p + "attn.c_proj.weight", new Shape(d, d));
      s.put(p + "attn.c_proj.bias", new Shape(d));
      s.put(p + "ln_2.weight", new Shape(d));
      s.put(p + "ln_2.bias", new Shape(d));
      s.put(p + "mlp.c_fc.weight", new Shape(d, inner));
      s.put(p + "mlp.c_fc.bias", new Shape(inner));
      s.put(p + "mlp.c_proj.weight", new Shape(inner, d));
      s.put(p + "mlp.c_proj.bias", new Shape(d));
    }
    s.put("ln_f.weight", new Shape(d));
    s.put("ln_f.bias", new Shape(d));
    return s;
  }

  /** c_attn, c_proj and c_fc of every block (Conv1D: the weight is [in, out]). */
  @Override
  public Map<String, long[]> linearLayers() {
    Map<String, long[]> out = new LinkedHashMap<>();
    weights().forEach((name, shape) -> {
      if (name.startsWith("h.") && shape.dimension() == 2) {
        out.put(name.substring(0, name.length() - ".weight".length()), new long[] {shape.get(0), shape.get(1)});
      }
    });
    return out;
  }

  @Override
  public List<String> defaultLoraTargets() {
    return List.of("c_attn");
  }

  @Override
  public long layerActivationBytes(int batch, int tokens, boolean nativeKernels) {
    long n = (long) batch * tokens;
    // the input, ln_1's output, q k v (3), the attention output, the residual sum and ln_2's output: 8 hidden; c_fc's
    // output and GELU's: 2 inner; GELU from operations keeps 4 more (x*x, tanh, x/2, 1 + tanh)
    long perToken = 8L * embeddingDim + (nativeKernels ? 2L : 6L) * inner;
    long attention = nativeKernels ? n * embeddingDim : (long) batch * heads * tokens * tokens;
    return 4 * (n * perToken + attention);
  }

  public static GptConfig read(Path configJson) throws IOException {
    JsonNode c = TextFiles.modelConfig(configJson);
    String type = c.path("model_type").asText("gpt2");
    if (!type.equals("gpt2")) {
      throw new BadJobException(configJson + ": model_type is '" + type + "'; the trainer supports GPT-2 family models only");
    }
    String act = c.path("activation_function").asText("gelu_new");
    if (!act.equals("gelu_new") && !act.equals("gelu_pytorch_tanh")) {
      throw new BadJobException(configJson + ": activation_function '" + act + "' is not supported (gelu_new only)");
    }
    int d = c.path("n_embd").asInt(768);
    int inner = c.path("n_inner").isNumber() ? c.get("n_inner").asInt() : 4 * d;
    return new GptConfig(c.path("vocab_size").asInt(50257), c.path("n_positions").asInt(1024), d,
        c.path("n_layer").asInt(12), c.path("n_head").asInt(12), inner,
        c.path("layer_norm_epsilon").asDouble(1e-5), c.path("eos_token_id").asInt(50256));
  }

  public void write(Path configJson) throws IOException {
    ObjectNode c = JSON.createObjectNode();
    c.putArray("architectures").add("GPT2LMHeadModel");
    c.put("model_type", "gpt2");
    c.put("vocab_size", vocabSize);
    c.put("n_positions", contextLength);
    c.put("n_ctx", contextLength);
    c.put("n_embd", embeddingDim);
    c.put("n_layer", layers);
    c.put("n_head", heads);
    if (inner == 4 * embeddingDim) {
      c.putNull("n_inner");
    } else {
      c.put("n_inner", inner);
    }
    c.put("activation_function", "gelu_new");
    c.put("layer_norm_epsilon", layerNormEps);
    c.put("resid_pdrop", 0.0);
    c.put("embd_pdrop", 0.0);
    c.put("attn_pdrop", 0.0);
    c.put("bos_token_id", endOfText);
    c.put("eos_token_id", endOfText);
    c.put("tie_word_embeddings", true);
    Files.writeString(configJson, JSON.writerWithDefaultPrettyPrinter().writeValueAsString(c));
  }
}
