package dev.finetune.trainer.train;

import ai.djl.Device;
import ai.djl.engine.Engine;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.util.cuda.CudaUtils;
import dev.finetune.api.TrainingSpec;
import dev.finetune.api.trainer.TrainerContract;
import dev.finetune.trainer.BadJobException;
import dev.finetune.trainer.model.CausalLm;
import dev.finetune.trainer.model.ModelShape;
import dev.finetune.trainer.model.WeightStorage;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.OptionalLong;

/**
 * The memory a run needs, stated before training: the weights, their gradients and AdamW's two moments (float32, for
 * what trains: everything, or a LoRA adapter alone), in bf16 mixed precision the bf16 copies of the weights each step
 * makes, the activations autograd keeps for the largest batch (4 bytes each, 2 in bf16), the logits with their
 * log-softmax and gradients, and the runtime. A job whose need exceeds the memory it was given fails at once as a bad
 * job (exit 3: retrying cannot help) instead of dying of OOM minutes or hours later. bench/plan-bench.sh measures it
 * against the peak on a CPU. It needs the model's shape alone, so {@code --plan} states it without weights.
 */
public record MemoryPlan(long weights, long gradients, long optimizer, long casts, long activations, long logits,
    long loadBuffer, int batch, int tokens, Savings savings) {
  /** The JVM and libtorch themselves. */
  public static final long RUNTIME = 512L << 20;

  /**
   * What a job does to keep less: gradient checkpointing (the activations of one layer, plus each layer's input) and
   * the loss in chunks of tokens (the logits of one chunk).
   */
  public record Savings(boolean checkpointing, int lossChunkTokens) {
    public static final Savings NONE = new Savings(false, 0);

    public static Savings of(TrainingSpec t) {
      return new Savings(Boolean.TRUE.equals(t.gradientCheckpointing), t.lossChunkTokens == null ? 0 : t.lossChunkTokens);
    }

    /** The rows of logits that exist at once for a batch. */
    int logitRows(int batch, int tokens) {
      long all = (long) batch * tokens;
      return (int) (chunked(batch, tokens) ? lossChunkTokens : all);
    }

    public boolean chunked(int batch, int tokens) {
      return lossChunkTokens > 0 && (long) batch * tokens > lossChunkTokens;
    }
  }

  public static MemoryPlan of(CausalLm net, int batch, int tokens, boolean bf16) {
    return of(net, batch, tokens, bf16, 1);
  }

  /**
   * The plan of one rank of a built network: what trains is its weights or its LoRA adapter, and its weights are
   * stored as {@link #of(ModelShape, WeightStorage, long, int, int, boolean, int)} says for their dtypes.
   */
  public static MemoryPlan of(CausalLm net, int batch, int tokens, boolean bf16, int optimizerShards) {
    return of(net, batch, tokens, bf16, optimizerShards, Savings.NONE);
  }

  /** As above, with the job's savings. */
  public static MemoryPlan of(CausalLm net, int batch, int tokens, boolean bf16, int optimizerShards, Savings savings) {
    long trainable = net.trainable().values().stream().mapToLong(a -> a.getShape().size()).sum();
    return of(net.shape(), net.storage(), trainable, batch, tokens, bf16, optimizerShards, savings,
        net.precision().nativeOps().isPresent());
  }

  /**
   * The plan of one rank: weights stored as {@code storage} says, {@code trainable} parameters train (fp32 master
   * weights, gradients and AdamW's moments), {@code batch} is the rank's share of the batch, and with
   * {@code optimizerShards} above 1 (ZeRO-1) it keeps that fraction of AdamW's state. In bf16 every float32 weight
   * gets a bf16 copy each step; a bf16 base needs none.
   */
  public static MemoryPlan of(ModelShape shape, WeightStorage storage, long trainable, int batch, int tokens,
      boolean bf16, int optimizerShards) {
    return of(shape, storage, trainable, batch, tokens, bf16, optimizerShards, Savings.NONE, false);
  }

  /**
   * As above, with the job's savings, where the native kernels are in use ({@code nativeKernels}) or not. The
   * activations are every layer's (see {@link ModelShape#layerActivationBytes}) and one layer's more, the working set
   * of a layer's backward pass; with checkpointing, each layer's input instead of its activations, and one more layer's
   * for the recomputation. In pieces (checkpointing or a chunked loss) the decoder's output and its gradient are kept
   * besides. The logits are those of one chunk of tokens.
   */
  public static MemoryPlan of(ModelShape shape, WeightStorage storage, long trainable, int batch, int tokens,
      boolean bf16, int optimizerShards, Savings savings, boolean nativeKernels) {
    Map<String, Shape> weights = shape.weights();
    long fp32Params = weights.values().stream().filter(s -> storage.of(s) == DataType.FLOAT32).mapToLong(Shape::size)
        .sum();
    long layer = shape.layerActivationBytes(batch, tokens, nativeKernels);
    long activations = savings.checkpointing() ? shape.layers() * shape.hiddenStateBytes(batch, tokens) + 2 * layer
        : (shape.layers() + 1) * layer;
    if (savings.checkpointing() || savings.chunked(batch, tokens)) {
      activations += 2 * shape.hiddenStateBytes(batch, tokens);
    }
    long logits = shape.logitBytes(savings.logitRows(batch, tokens));
    // the weights load tensor by tensor through one host buffer, as large as the largest tensor in float32
    long loadBuffer = 4 * weights.values().stream().mapToLong(Shape::size).max().orElse(0);
    return new MemoryPlan(storage.bytes(weights), 4 * trainable, 8 * trainable / optimizerShards,
        bf16 ? 2 * fp32Params : 0, bf16 ? activations / 2 : activations, bf16 ? logits / 2 : logits, loadBuffer, batch,
        tokens, savings);
  }

  public long total() {
    return weights + gradients + optimizer + casts + activations + logits + RUNTIME;
  }

  public String describe() {
    return String.format("memory needed: about %s (weights %s, gradients %s, AdamW state %s, %sactivations %s%s and logits"
        + " %s%s for a batch of %d x %d tokens, runtime %s)", gib(total()), gib(weights), gib(gradients), gib(optimizer),
        casts > 0 ? "their bf16 copies " + gib(casts) + ", " : "", gib(activations),
        savings.checkpointing() ? " (checkpointed)" : "", gib(logits), savings.chunked(batch, tokens)
            ? " (" + savings.lossChunkTokens() + " tokens at a time)" : "", batch, tokens, gib(RUNTIME));
  }

  /**
   * Checks the plan where the tensors live. On the CPU the process's memory limit must hold it all. On a GPU the
   * device's memory must, and the host's limit the one tensor at a time the weights load through.
   */
  public void checkWhereItRuns() {
    Device device = Engine.getInstance().defaultDevice();
    if (!device.isGpu()) {
      check(limit(), limitSource());
      return;
    }
    OptionalLong gpu = OptionalLong.empty();
    try {
      gpu = OptionalLong.of(CudaUtils.getGpuMemory(device).getMax());
    } catch (RuntimeException | UnsatisfiedLinkError e) {
      System.out.println("cannot read the memory of " + device + " (" + e + "); not checking it");
    }
    check(gpu, "the memory of " + device);
    OptionalLong host = limit();
    if (host.isPresent() && loadBuffer + RUNTIME > host.getAsLong()) {
      throw new BadJobException("loading the weights needs about " + gib(loadBuffer + RUNTIME) + " of host memory (the"
          + " largest tensor passes through it), but the trainer has " + gib(host.getAsLong()) + " (" + limitSource()
          + "). Raise spec.resources.memory");
    }
  }

  /** Prints the plan and fails the job when {@code limit} (bytes, from {@link #limit()}) cannot hold it. */
  public void check(OptionalLong limit, String source) {
    System.out.println(describe() + (limit.isPresent() ? "; available: " + gib(limit.getAsLong()) + " (" + source + ")" : ""));
    if (limit.isPresent() && total() > limit.getAsLong()) {
      throw new BadJobException(describe() + ", but the trainer has " + gib(limit.getAsLong()) + " (" + source
          + "). Raise spec.resources.memory, " + remedy());
    }
  }

  /**
   * What shrinks the plan: a smaller batch or shorter records, gradient checkpointing unless it is on, and a LoRA
   * adapter unless one trains already.
   */
  public String remedy() {
    boolean adapterOnly = gradients < weights;
    return "lower spec.training.batchSize or spec.dataset.maxLength" + (savings.checkpointing() ? ""
        : ", set spec.training.gradientCheckpointing: true (activations of one layer at a time)") + (adapterOnly ? ""
        : ", or train a LoRA adapter (spec.training.lora) so that gradients and optimizer state cover the adapter alone");
  }

  /**
   * The memory this process may use: {@value TrainerContract#ENV_MEMORY_LIMIT} (bytes) when set, else the container's
   * cgroup limit (v2 memory.max, v1 memory.limit_in_bytes), else none known.
   */
  public static OptionalLong limit() {
    String env = System.getenv(TrainerContract.ENV_MEMORY_LIMIT);
    if (env != null && !env.isBlank()) {
      try {
        return OptionalLong.of(Long.parseLong(env.trim()));
      } catch (NumberFormatException e) {
        throw new BadJobException(TrainerContract.ENV_MEMORY_LIMIT + " is '" + env + "'; it must be a number of bytes");
      }
    }
    for (String f : new String[] {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
      OptionalLong v = readLimit(Path.of(f));
      if (v.isPresent()) {
        return v;
      }
    }
    return OptionalLong.empty();
  }

  public static String limitSource() {
    String env = System.getenv(TrainerContract.ENV_MEMORY_LIMIT);
    return env != null && !env.isBlank() ? TrainerContract.ENV_MEMORY_LIMIT : "the container's memory limit";
  }

  static OptionalLong readLimit(Path file) {
    try {
      String v = Files.readString(file).trim();
      if (v.equals("max")) {
        return OptionalLong.empty();
      }
      long bytes = Long.parseLong(v);
      // cgroup v1 reports "no limit" as a huge number.
      return bytes >= (1L << 60) ? OptionalLong.empty() : OptionalLong.of(bytes);
    } catch (IOException | NumberFormatException | SecurityException e) {
      return OptionalLong.empty();
    }
  }

  public static String gib(long bytes) {
    return bytes >= (1L << 30) ? String.format("%.2f GiB", bytes / (double) (1L << 30))
        : String.format("%.0f MiB", bytes / (double) (1L << 20));
  }
}
