package dev.finetune.trainer;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.Shape;
import ai.djl.pytorch.jni.JniUtils;
import ai.djl.training.GradientCollector;
import dev.finetune.api.TrainingSpec;
import ai.djl.Device;
import ai.djl.util.cuda.CudaUtils;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.finetune.api.FineTuneJobs;
import dev.finetune.trainer.model.CausalLm;
import dev.finetune.trainer.model.Generator;
import dev.finetune.trainer.model.Gpt2;
import dev.finetune.trainer.model.Llama;
import dev.finetune.trainer.model.LlamaConfig;
import dev.finetune.trainer.model.Lora;
import dev.finetune.trainer.model.GptConfig;
import dev.finetune.trainer.model.Model;
import dev.finetune.trainer.model.PrecisionPolicy;
import dev.finetune.trainer.model.TextTokenizer;
import dev.finetune.trainer.train.AdamW;
import dev.finetune.trainer.train.Distributed;
import dev.finetune.trainer.train.MemoryPlan;
import dev.finetune.trainer.train.MicroStep;
import dev.finetune.trainer.train.Trainer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import java.util.Random;

/**
 * Training-step benchmark with the same shape, data and output fields as
 * {@code shared/bench/pytorch_reference.py}: a GPT-2 (default 4 layers, 256 wide, 4 heads, vocabulary 50257)
 * trained with AdamW on random token batches (8 x 128, the last 8 targets -100); prints one JSON line.
 * Options: --vocab --n-embd --n-layer --n-head --seq --batch --steps --warmup --threads (0 = one per core),
 * --precision auto|fp32|tf32|bf16 (as spec.training.precision; default fp32). The JSON says which device and precision ran.
 * {@code --arch llama} times a randomly initialised Llama instead (--n-kv-head, --intermediate; tied embeddings,
 * RoPE theta 500000), and {@code --lora R} trains a rank-R adapter on every projection (alpha 2R) with the base
 * frozen; e.g. Llama 3.2 1B: {@code --arch llama --vocab 128256 --n-embd 2048 --n-layer 16 --n-head 32 --n-kv-head 8
 * --intermediate 8192}. On a GPU the JSON adds the device memory in use after the steps (PyTorch's cached blocks
 * included, so at least the peak).
 * {@code --generate N --tokenizer tokenizer.json} instead times greedy decoding of N new tokens after a short
 * prompt, with and without the KV cache (fp32, random weights of the given shape and --arch). {@code --random-model
 * DIR --tokenizer tokenizer.json} instead writes a randomly initialised model of that shape and --arch (--seq is a
 * GPT-2's context length) in HF layout, for benchmarks of whole jobs. Both take the tokenizer's vocabulary as --vocab
 * (default 50257, GPT-2's). {@code --load DIR} instead loads an HF directory and prints the host memory that took.
 * Launched with torchrun's environment (WORLD_SIZE, RANK, MASTER_ADDR, MASTER_PORT) the training steps all-reduce their
 * gradients over the ranks as the trainer does, bucket by bucket during the backward pass ({@code --overlap 0}: after
 * it, to measure what the overlap saves; the JSON adds the world size, backend and overlap), and {@code --allreduce-mb N}
 * instead times the all-reduce of N MB of fp32 on the device: bus bandwidth as nccl-tests computes it.
 * The training JSON also sets the memory plan the trainer states (less its runtime allowance, {@code plan_mb}) beside
 * the peak resident memory the steps took above the loaded engine ({@code measured_over_runtime_mb}): on a CPU, how
 * far the plan is from the truth.
 */
public final class Bench {
  private Bench() {}

  public static void main(String[] args) throws Exception {
    Main.defaultOffline();
    Map<String, Integer> o = new LinkedHashMap<>();
    Map<String, String> text = new LinkedHashMap<>();
    parseOptions(args, o, text);
    int threads = o.get("threads") > 0 ? o.get("threads") : Runtime.getRuntime().availableProcessors();
    if (text.get("random-model") != null) {
      writeRandomModel(Path.of(text.get("random-model")), Path.of(text.get("tokenizer")), text.get("arch"), o);
      return;
    }
    if (text.get("load") != null) {
      load(Path.of(text.get("load")));
      return;
    }
    if (o.get("allreduce-mb") > 0) {
      allReduce(o.get("allreduce-mb"), o.get("steps"), o.get("warmup"));
      return;
    }
    if (o.get("generate") > 0) {
      generation(Path.of(text.get("tokenizer")), text.get("arch"), o, threads);
      return;
    }
    training(o, text.get("arch"), TrainingSpec.Precision.valueOf(text.get("precision").toUpperCase(Locale.ROOT)), threads);
  }

  /** Fills {@code numbers} and {@code text} with their defaults, then with {@code --name value} pairs; exits 3 on a bad one. */
  static void parseOptions(String[] args, Map<String, Integer> numbers, Map<String, String> text) {
    numbers.put("vocab", 50257);
    numbers.put("n-embd", 256);
    numbers.put("n-layer", 4);
    numbers.put("n-head", 4);
    numbers.put("seq", 128);
    numbers.put("batch", 8);
    numbers.put("steps", 6);
    numbers.put("warmup", 2);
    numbers.put("threads", 0);
    numbers.put("generate", 0);
    numbers.put("n-kv-head", 0);
    numbers.put("intermediate", 0);
    numbers.put("lora", 0);
    numbers.put("allreduce-mb", 0);
    numbers.put("overlap", 1);
    numbers.put("checkpointing", 0);
    numbers.put("loss-chunk", 0);
    text.put("arch", "gpt2");
    text.put("precision", "fp32");
    text.put("random-model", null);
    text.put("tokenizer", null);
    text.put("load", null);
    for (int i = 0; i < args.length; i += 2) {
      String k = args[i].replaceFirst("^--", "");
      if (!(numbers.containsKey(k) || text.containsKey(k)) || i + 1 >= args.length) {
        System.err.println("usage: Bench " + numbers.keySet().stream().map(s -> "[--" + s + " N]").reduce("", (a, b) -> a + " " + b)
            + " [--precision auto|fp32|tf32|bf16] | --random-model DIR --tokenizer tokenizer.json [--n-embd ...] | --load DIR");
        System.exit(3);
      }
      if (text.containsKey(k)) {
        text.put(k, args[i + 1]);
      } else {
        numbers.put(k, Integer.parseInt(args[i + 1]));
      }
    }
  }

  /** Times AdamW training steps on random batches and prints the JSON line with the peer's fields. */
  static void training(Map<String, Integer> o, String arch, TrainingSpec.Precision requested, int threads)
      throws Exception {
    int vocab = o.get("vocab");
    int d = o.get("n-embd");
    int layers = o.get("n-layer");
    int seq = o.get("seq");
    int batch = o.get("batch");
    try (NDManager base = NDManager.newBaseManager(); Distributed dist = Distributed.fromEnv(System.getenv())) {
      JniUtils.setNumThreads(threads);
      dist.join();
      PrecisionPolicy precision = PrecisionPolicy.resolve(requested);
      System.err.println(precision.describe());
      base.zeros(new Shape(1)).close(); // the engine is loaded: what is resident now is the runtime
      long runtimeKb = statusKb("VmRSS");
      try (CausalLm net = randomNet(arch, o, base)) {
        if (o.get("lora") > 0) {
          int r = o.get("lora");
          net.attach(Lora.create(net, r, 2.0 * r, 0, new ArrayList<>(net.linearLayers().keySet().stream()
              .map(m -> m.substring(m.lastIndexOf('.') + 1)).distinct().toList()), 0));
        }
        net.requireGradients();
        net.setPrecision(precision);
        try (AdamW opt = new AdamW(net.trainable(), base, 0.9, 0.999, 1e-8, 0.1)) {
        opt.useFused(precision.nativeOps().orElse(null));
        if (o.get("lora") == 0) {
          opt.shard(dist); // as the trainer: ZeRO-1 when every weight trains
        }
        MicroStep pass = new MicroStep(net, o.get("checkpointing") != 0, o.get("loss-chunk"), 0, 0);
        long[][] ids = new long[batch][seq];
        long[][] targets = new long[batch][seq];
        randomBatch(ids, targets, vocab);
        int warmup = o.get("warmup");
        double[] times = new double[warmup + o.get("steps")];
        double loss = 0;
        for (int s = 0; s < times.length; s++) {
          long start = System.nanoTime();
          loss = step(net, opt, base, ids, targets, dist, o.get("overlap") != 0, pass);
          times[s] = (System.nanoTime() - start) / 1e9;
        }
        double[] timed = Arrays.copyOfRange(times, warmup, times.length);
        Arrays.sort(timed);
        double stepS = timed[timed.length / 2];

        // the plan (less its runtime allowance) against what the steps took above the runtime
        long planBytes = MemoryPlan.of(net, batch, seq, precision.bf16(), opt.sharded() ? dist.size() : 1,
            new MemoryPlan.Savings(o.get("checkpointing") != 0, o.get("loss-chunk"))).total() - MemoryPlan.RUNTIME;
        double measuredMb = (statusKb("VmHWM") - runtimeKb) / 1e3;
        double gemm = gemmFlops(base);
        long params = net.parameterCount();
        long trainable = net.trainable().values().stream().mapToLong(a -> a.getShape().size()).sum();
        double flops = 6.0 * params * batch * seq + 12.0 * layers * batch * seq * (double) seq * d;
        String impl = "djl-" + Engine.getDjlVersion() + "-pytorch-" + Engine.getInstance().getVersion();
        System.out.println(String.format(Locale.ROOT,
            "{\"impl\": \"%s\", \"arch\": \"%s\", \"checkpointing\": %b, \"loss_chunk\": %d, \"world\": %d, \"backend\": \"%s\", \"overlap\": %b, \"device\": \"%s\", \"precision\": \"%s\", \"threads\": %d, \"params\": %d, \"trainable_params\": %d, \"batch\": %d, \"seq\": %d, \"median_step_s\": %.4f, "
                + "\"tokens_per_s\": %.1f, \"model_flops_per_s\": %.2f, \"gemm_gflops\": %.2f, \"mfu_vs_gemm\": %.3f, "
                + "\"peak_rss_mb\": %.1f, \"gpu_memory_used_mb\": %.1f, \"final_loss\": %.4f, \"plan_mb\": %.1f,"
                + " \"measured_over_runtime_mb\": %.1f, \"plan_over_measured\": %.3f}",
            impl, arch, o.get("checkpointing") != 0, o.get("loss-chunk"), dist.size(), dist.backend(), dist.isDistributed() && o.get("overlap") != 0, precision.device(), precision.precision(), JniUtils.getNumThreads(), params, trainable, batch, seq, stepS,
            batch * seq / stepS, flops / stepS / 1e9, gemm / 1e9, flops / stepS / gemm, peakRssMb(), gpuMemoryMb(), loss,
            planBytes / 1e6, measuredMb, planBytes / 1e6 / measuredMb));
        }
      }
    }
  }

  /** Random token ids and targets from seed 0, the last 8 targets of each row -100, as the reference makes them. */
  static void randomBatch(long[][] ids, long[][] targets, int vocab) {
    Random rnd = new Random(0);
    int seq = ids[0].length;
    for (int b = 0; b < ids.length; b++) {
      for (int t = 0; t < seq; t++) {
        ids[b][t] = rnd.nextInt(vocab);
        targets[b][t] = t >= seq - 8 ? -100 : rnd.nextInt(vocab);
      }
    }
  }

  /**
   * One forward, backward (distributed: gradients all-reduced, as the trainer does it during the backward pass with
   * {@code overlap}, else after it) and AdamW step; returns the loss.
   */
  static double step(CausalLm net, AdamW opt, NDManager base, long[][] ids, long[][] targets, Distributed dist,
      boolean overlap, MicroStep pass) throws java.io.IOException {
    double loss;
    // a pass in pieces gives weights gradients more than once: summed over the ranks after it, as the trainer does
    overlap = overlap && !pass.inPieces((long) ids.length * ids[0].length);
    try (NDManager step = base.newSubManager(); NDScope scope = new NDScope()) {
      Gpt2.Consts k = new Gpt2.Consts(step);
      if (overlap) {
        dist.syncGradientsDuringBackward(net.trainable().values());
      }
      try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
        loss = pass.run(gc, Trainer.ids(step, ids), targets, k, 1, 1, 0);
      }
      if (overlap) {
        dist.finishGradientSync();
      } else {
        dist.allReduceGradients(net.trainable().values(), step);
      }
    }
    opt.step(net.trainable(), 5e-5);
    opt.shareUpdated(net.trainable());
    AdamW.zeroGradients(net.trainable());
    try (NDScope scope = new NDScope()) {
      // Waits for the step's queued GPU work (the optimizer's kernels) before the clock stops.
      net.trainable().values().iterator().next().flatten().get(0).getFloat();
    }
    return loss;
  }

  /**
   * The all-reduce of {@code mb} MB of fp32 on the default device over the ranks of torchrun's environment: median
   * seconds, algorithm bandwidth (bytes / s) and bus bandwidth (x 2(W-1)/W, nccl-tests' figure for a ring).
   */
  static void allReduce(int mb, int steps, int warmup) throws Exception {
    try (NDManager base = NDManager.newBaseManager(); Distributed dist = Distributed.fromEnv(System.getenv())) {
      dist.join();
      NDArray buffer = base.ones(new Shape((long) mb << 18)); // mb MB of fp32
      double[] times = new double[steps];
      for (int s = -warmup; s < steps; s++) {
        long start = System.nanoTime();
        dist.allReduceSum(java.util.List.of(buffer));
        try (NDScope scope = new NDScope()) {
          buffer.get(0).getFloat(); // waits for the device
        }
        if (s >= 0) {
          times[s] = (System.nanoTime() - start) / 1e9;
        }
      }
      Arrays.sort(times);
      double t = times[steps / 2];
      double bytes = (double) mb * (1 << 20);
      int w = dist.size();
      System.out.println(String.format(Locale.ROOT,
          "{\"impl\": \"allreduce\", \"rank\": %d, \"world\": %d, \"backend\": \"%s\", \"device\": \"%s\", \"mb\": %d, "
              + "\"median_s\": %.6f, \"algbw_gb_per_s\": %.2f, \"busbw_gb_per_s\": %.2f}",
          dist.rank(), w, dist.backend(), Engine.getInstance().defaultDevice(), mb, t, bytes / t / 1e9,
          bytes / t / 1e9 * (w > 1 ? 2.0 * (w - 1) / w : 1)));
    }
  }

  /** Greedy decoding speed with and without the KV cache; the tokens must be the same. */
  static void generation(Path tokenizer, String arch, Map<String, Integer> o, int threads) throws Exception {
    int tokens = o.get("generate");
    try (NDManager base = NDManager.newBaseManager()) {
      JniUtils.setNumThreads(threads);
      try (Model model = new Model(randomNet(arch, o, base), TextTokenizer.load(tokenizer, o.get("vocab") - 1))) {
        String prompt = "Below is an instruction that describes a task. Write a response that appropriately completes"
            + " the request.\n\n### Instruction:\nRewrite the sentence using a simile.\n\n### Input:\nThe car is very"
            + " fast.\n\n### Response:\n";
        Generator generator = new Generator(model);
        generator.generateTokens(prompt, 4, 0, 0, 0, true); // warm-up
        double[] seconds = new double[2];
        long[][] out = new long[2][];
        for (int cached = 0; cached < 2; cached++) {
          long start = System.nanoTime();
          out[cached] = generator.generateTokens(prompt, tokens, 0, 0, 0, cached == 1);
          seconds[cached] = (System.nanoTime() - start) / 1e9;
        }
        System.out.println(String.format(Locale.ROOT,
            "{\"impl\": \"djl-generate\", \"device\": \"%s\", \"threads\": %d, \"params\": %d, \"prompt_tokens\": %d, "
                + "\"new_tokens\": %d, \"tokens_per_s_no_cache\": %.1f, \"tokens_per_s_kv_cache\": %.1f, \"speedup\": %.2f, "
                + "\"same_tokens\": %b}",
            Engine.getInstance().defaultDevice(), JniUtils.getNumThreads(), model.net().parameterCount(),
            model.tokenizer().encode(prompt).length, out[1].length, out[0].length / seconds[0], out[1].length / seconds[1],
            seconds[0] / seconds[1], Arrays.equals(out[0], out[1])));
      }
    }
  }

  /** A randomly initialised GPT-2 of the given shape with {@code tokenizer}'s vocabulary, in HF layout in {@code dir}. */
  static void writeRandomModel(Path dir, Path tokenizer, String arch, Map<String, Integer> o) throws Exception {
    try (NDManager base = NDManager.newBaseManager()) {
      try (Model model = new Model(randomNet(arch, o, base), TextTokenizer.load(tokenizer, o.get("vocab") - 1))) {
        model.save(dir);
        System.out.printf("wrote a random %s (%d parameters) to %s%n", arch, model.net().parameterCount(), dir);
      }
    }
  }

  /**
   * The host memory a model's load takes: the process's peak resident set (VmHWM) before and after loading an HF
   * directory in float32, beside the model's own bytes and its largest tensor's, as one JSON line.
   */
  static void load(Path dir) throws Exception {
    try (NDManager base = NDManager.newBaseManager()) {
      base.zeros(new Shape(1)).close(); // the engine loaded before the first reading
      long before = statusKb("VmHWM");
      long start = System.nanoTime();
      try (Model model = Model.load(dir, base)) {
        double seconds = (System.nanoTime() - start) / 1e9;
        long peak = statusKb("VmHWM");
        long params = model.net().parameterCount();
        long largest = model.net().parameters().values().stream().mapToLong(a -> a.getShape().size()).max().orElse(0);
        System.out.println(String.format(Locale.ROOT, "{\"impl\": \"djl-load\", \"params\": %d, \"model_mb\": %.1f,"
            + " \"largest_tensor_mb\": %.1f, \"peak_rss_before_mb\": %.1f, \"peak_rss_after_mb\": %.1f,"
            + " \"load_peak_over_model\": %.3f, \"load_s\": %.1f}", params, 4 * params / 1e6, 4 * largest / 1e6,
            before / 1e3, peak / 1e3, (peak - before) * 1e3 / (4.0 * params), seconds));
      }
    }
  }

  /** A field of /proc/self/status in kB (VmHWM: the peak resident set), or -1 where there is none. */
  static long statusKb(String field) {
    try {
      for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
        if (line.startsWith(field + ":")) {
          return Long.parseLong(line.replaceAll("[^0-9]", ""));
        }
      }
    } catch (java.io.IOException | NumberFormatException e) {
      // not Linux
    }
    return -1;
  }

  /** Dense 1024 x 1024 matmul FLOP/s in the same engine (3 warm-up, 10 timed), as the reference measures it. */
  static double gemmFlops(NDManager base) {
    int n = 1024;
    try (NDManager m = base.newSubManager()) {
      NDArray x = m.randomNormal(new Shape(n, n));
      NDArray y = m.randomNormal(new Shape(n, n));
      for (int i = 0; i < 3; i++) {
        x.matMul(y).close();
      }
      long start = System.nanoTime();
      for (int i = 0; i < 10; i++) {
        x.matMul(y).close();
      }
      return 2.0 * n * n * n * 10 / ((System.nanoTime() - start) / 1e9);
    }
  }

  /**
   * A random network of the options' shape: GPT-2 as the PyTorch reference builds it, or a Llama (config.json
   * written as HF would, read back by the trainer's own reader).
   */
  static CausalLm randomNet(String arch, Map<String, Integer> o, NDManager base) throws Exception {
    int vocab = o.get("vocab");
    int d = o.get("n-embd");
    int heads = o.get("n-head");
    if (arch.equals("gpt2")) {
      int ff = o.get("intermediate") > 0 ? o.get("intermediate") : 4 * d;
      return Gpt2.random(new GptConfig(vocab, o.get("seq"), d, o.get("n-layer"), heads, ff, 1e-5, vocab - 1), 0, base);
    }
    if (!arch.equals("llama")) {
      System.err.println("--arch is gpt2 or llama, not " + arch);
      System.exit(3);
    }
    ObjectNode c = FineTuneJobs.json().createObjectNode();
    c.put("model_type", "llama").put("vocab_size", vocab).put("hidden_size", d)
        .put("intermediate_size", o.get("intermediate") > 0 ? o.get("intermediate") : 8 * d / 3)
        .put("num_hidden_layers", o.get("n-layer")).put("num_attention_heads", heads)
        .put("num_key_value_heads", o.get("n-kv-head") > 0 ? o.get("n-kv-head") : heads)
        .put("max_position_embeddings", Math.max(o.get("seq"), 2048)).put("rms_norm_eps", 1e-5)
        .put("rope_theta", 500000.0).put("tie_word_embeddings", true).put("eos_token_id", vocab - 1);
    Path file = Files.createTempFile("bench-llama", ".json");
    try {
      Files.writeString(file, c.toString());
      return Llama.random(LlamaConfig.read(file), base);
    } finally {
      Files.delete(file);
    }
  }

  /** Device memory in use (cudaMemGetInfo) on a GPU, NaN on a CPU. */
  static double gpuMemoryMb() {
    Device device = Engine.getInstance().defaultDevice();
    if (!device.isGpu()) {
      return Double.NaN;
    }
    try {
      return CudaUtils.getGpuMemory(device).getUsed() / (1024.0 * 1024.0);
    } catch (RuntimeException | UnsatisfiedLinkError e) {
      return Double.NaN;
    }
  }

  static double peakRssMb() {
    long kb = statusKb("VmHWM");
    return kb < 0 ? Double.NaN : kb / 1024.0;
  }
}
