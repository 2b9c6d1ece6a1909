package dev.finetune.trainer.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.Shape;
import java.util.Arrays;
import java.util.Random;

/** Text from a model: greedy or sampled decoding, with a KV cache or (the reference) without. */
public final class Generator {
  private final CausalLm net;
  private final TextTokenizer tokenizer;
  private final long[] stopTokens;
  private long generatedTokens;

  public Generator(Model model) {
    this.net = model.net();
    this.tokenizer = model.tokenizer();
    this.stopTokens = model.tokenizerConfig().stopTokens();
  }

  /**
   * Continues {@code prompt} by up to {@code maxNewTokens} tokens and returns only the new text, stopping at any of
   * the model's end tokens (end-of-text, and every eos_token_id of config.json and generation_config.json). Temperature 0 is greedy decoding; above 0 it samples (among the {@code topK} most likely
   * tokens when topK > 0) with {@code seed}. With a KV cache: each new token costs one row of the network, not
   * the whole sequence again; once the text outgrows the context length, the window slides and every token
   * is computed afresh over the last context-length tokens, as without a cache.
   */
  public String generate(String prompt, int maxNewTokens, double temperature, int topK, long seed) {
    return tokenizer.decode(generateTokens(prompt, maxNewTokens, temperature, topK, seed, true));
  }

  /**
   * The new token ids of {@link #generate(String, int, double, int, long)} (the end token not included), with the KV
   * cache or (the reference) without.
   */
  public long[] generateTokens(String prompt, int maxNewTokens, double temperature, int topK, long seed,
      boolean kvCache) {
    return generateTokens(tokenizer.encode(prompt), maxNewTokens, temperature, topK, seed, kvCache);
  }

  /** As {@link #generateTokens(String, int, double, int, long, boolean)}, after a prompt's ids. */
  public long[] generateTokens(long[] ids, int maxNewTokens, double temperature, int topK, long seed, boolean kvCache) {
    long[] out = new long[0];
    Random rnd = new Random(seed);
    int ctx = net.contextLength();
    try (NoGrad noGrad = new NoGrad(); NDManager session = net.manager().newSubManager()) {
      KvCache cache = new KvCache(session);
      for (int n = 0; n < maxNewTokens; n++) {
        long[] all = concat(ids, out);
        long next;
        try (NDManager step = session.newSubManager(); NDScope scope = new NDScope()) {
          float[] last;
          if (kvCache && net.cacheHolds(all.length)) {
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
        if (stops(next)) {
          break;
        }
        out = concat(out, new long[] {next});
      }
    }
    return out;
  }

  private boolean stops(long id) {
    for (long s : stopTokens) {
      if (s == id) {
        return true;
      }
    }
    return false;
  }

  /** Tokens generated so far by this generator (end tokens included), for throughput figures. */
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

}
