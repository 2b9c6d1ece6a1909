package dev.finetune.trainer.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.Shape;
import dev.finetune.api.ModelSpec;
import dev.finetune.api.ScratchModelSpec;
import dev.finetune.api.trainer.TrainerContract;
import dev.finetune.trainer.BadJobException;
import java.io.IOException;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Random;

/** A GPT-2 network with its tokenizer: what an HF model directory holds, and what answers prompts. */
public final class Model implements AutoCloseable {
  private final Gpt2 net;
  private final TextTokenizer tokenizer;
  private long generatedTokens;

  public Model(Gpt2 net, TextTokenizer tokenizer) {
    this.net = net;
    this.tokenizer = tokenizer;
  }

  public Gpt2 net() {
    return net;
  }

  public TextTokenizer tokenizer() {
    return tokenizer;
  }

  /** Loads an HF-layout directory: config.json, model.safetensors, tokenizer.json. */
  public static Model load(Path dir, NDManager manager) throws IOException {
    for (String f : new String[] {"config.json", "model.safetensors", "tokenizer.json"}) {
      if (!Files.isRegularFile(dir.resolve(f))) {
        throw new BadJobException("model directory " + dir + " has no " + f
            + "; it needs config.json, model.safetensors and tokenizer.json (HuggingFace layout)");
      }
    }
    GptConfig config = GptConfig.read(dir.resolve("config.json"));
    TextTokenizer tok = TextTokenizer.load(dir.resolve("tokenizer.json"), config.endOfText());
    return new Model(Gpt2.load(config, dir.resolve("model.safetensors"), manager), tok);
  }

  /**
   * The model a job asks for: {@code scratch}, a {@code path} (on the model volume when a claim is named and
   * mounted, else relative to the job file), or a {@code hub} repository downloaded once into
   * {@code <output>/model-cache/}.
   */
  public static Model fromSpec(ModelSpec spec, Path jobDir, Path outputDir, NDManager manager) throws IOException {
    if (spec.scratch != null) {
      return scratch(spec.scratch, manager);
    }
    if (spec.path != null) {
      Path p = Path.of(spec.path);
      Path mount = TrainerContract.mountDir(TrainerContract.ENV_MODEL_DIR, TrainerContract.MODEL_MOUNT);
      if (!p.isAbsolute()) {
        p = spec.claimName != null && Files.isDirectory(mount) ? mount.resolve(p) : jobDir.resolve(p);
      }
      return load(p, manager);
    }
    if (spec.hub != null) {
      String revision = spec.revision == null ? "main" : spec.revision;
      Path cache = outputDir.resolve("model-cache").resolve(spec.hub.replace('/', '_') + "@" + revision);
      for (String f : new String[] {"config.json", "tokenizer.json", "model.safetensors"}) {
        Path target = cache.resolve(f);
        if (!Files.isRegularFile(target)) {
          URI uri = URI.create("https://huggingface.co/" + spec.hub + "/resolve/" + revision + "/" + f);
          System.out.println("downloading " + uri + " into " + cache);
          Downloads.fetch(uri, target);
        }
      }
      return load(cache, manager);
    }
    throw new BadJobException("spec.model names no model; set one of hub, path or scratch");
  }

  /** A randomly initialised GPT-2 of the given shape with the byte-level tokenizer. */
  public static Model scratch(ScratchModelSpec s, NDManager manager) {
    GptConfig config = new GptConfig(ByteTokenizer.VOCAB_SIZE, s.contextLength, s.embeddingDim, s.layers, s.heads,
        4 * s.embeddingDim, 1e-5, ByteTokenizer.END_OF_TEXT);
    return new Model(Gpt2.random(config, s.seed, manager), new ByteTokenizer());
  }

  /** Writes an HF-layout directory that {@link #load} (and HuggingFace) reads back. */
  public void save(Path dir) throws IOException {
    Files.createDirectories(dir);
    net.config().write(dir.resolve("config.json"));
    net.saveWeights(dir.resolve("model.safetensors"));
    tokenizer.save(dir);
  }

  /**
   * Continues {@code prompt} by up to {@code maxNewTokens} tokens and returns only the new text, stopping at
   * end-of-text. Temperature 0 is greedy decoding; above 0 it samples (among the {@code topK} most likely
   * tokens when topK > 0) with {@code seed}. With a KV cache: each new token costs one row of the network, not
   * the whole sequence again; once the text outgrows the context length, the window slides and every token
   * is computed afresh over the last context-length tokens, as without a cache.
   */
  public String generate(String prompt, int maxNewTokens, double temperature, int topK, long seed) {
    return tokenizer.decode(generateTokens(prompt, maxNewTokens, temperature, topK, seed, true));
  }

  /**
   * The new token ids of {@link #generate(String, int, double, int, long)} (end-of-text not included), with the KV
   * cache or (the reference) without.
   */
  public long[] generateTokens(String prompt, int maxNewTokens, double temperature, int topK, long seed,
      boolean kvCache) {
    long[] ids = tokenizer.encode(prompt);
    long[] out = new long[0];
    Random rnd = new Random(seed);
    int ctx = net.config().contextLength();
    try (NoGrad noGrad = new NoGrad(); NDManager session = net.manager().newSubManager()) {
      Gpt2.KvCache cache = new Gpt2.KvCache(session, net.config().layers());
      for (int n = 0; n < maxNewTokens; n++) {
        long[] all = concat(ids, out);
        long next;
        try (NDManager step = session.newSubManager(); NDScope scope = new NDScope()) {
          float[] last;
          if (kvCache && all.length <= ctx) {
            long[] fresh = Arrays.copyOfRange(all, cache.length(), all.length);
            NDArray logits = net.forwardCached(step.create(fresh, new Shape(1, fresh.length)), cache, new Gpt2.Consts(step));
            last = logits.get(0, fresh.length - 1).toFloatArray();
          } else {
            long[] window = all.length > ctx ? Arrays.copyOfRange(all, all.length - ctx, all.length) : all;
            NDArray logits = net.forward(step.create(window, new Shape(1, window.length)), new Gpt2.Consts(step), false);
            last = logits.get(0, window.length - 1).toFloatArray();
          }
          next = temperature <= 0 ? argmax(last) : sample(last, temperature, topK, rnd);
        }
        generatedTokens++;
        if (next == tokenizer.endOfText()) {
          break;
        }
        out = concat(out, new long[] {next});
      }
    }
    return out;
  }

  /** Tokens generated so far by this model (end-of-text included), for throughput figures. */
  public long generatedTokens() {
    return generatedTokens;
  }

  /** Greedy decoding. */
  public String generate(String prompt, int maxNewTokens) {
    return generate(prompt, maxNewTokens, 0, 0, 0);
  }

  private static long argmax(float[] v) {
    int best = 0;
    for (int i = 1; i < v.length; i++) {
      if (v[i] > v[best]) {
        best = i;
      }
    }
    return best;
  }

  private static long sample(float[] logits, double temperature, int topK, Random rnd) {
    double threshold = Double.NEGATIVE_INFINITY;
    if (topK > 0 && topK < logits.length) {
      float[] sorted = logits.clone();
      Arrays.sort(sorted);
      threshold = sorted[sorted.length - topK];
    }
    double max = Double.NEGATIVE_INFINITY;
    for (float l : logits) {
      max = Math.max(max, l);
    }
    double[] p = new double[logits.length];
    double sum = 0;
    for (int i = 0; i < logits.length; i++) {
      p[i] = logits[i] < threshold ? 0 : Math.exp((logits[i] - max) / temperature);
      sum += p[i];
    }
    double r = rnd.nextDouble() * sum;
    for (int i = 0; i < p.length; i++) {
      r -= p[i];
      if (r <= 0 && p[i] > 0) {
        return i;
      }
    }
    return argmax(logits);
  }

  private static long[] concat(long[] a, long[] b) {
    long[] r = Arrays.copyOf(a, a.length + b.length);
    System.arraycopy(b, 0, r, a.length, b.length);
    return r;
  }

  @Override
  public void close() {
    net.close();
    tokenizer.close();
  }
}
