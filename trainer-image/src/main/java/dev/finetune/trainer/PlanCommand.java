package dev.finetune.trainer;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.finetune.api.FineTuneJob;
import dev.finetune.api.FineTuneJobSpec;
import dev.finetune.api.FineTuneJobs;
import dev.finetune.api.LoraSpec;
import dev.finetune.api.TrainingSpec.Precision;
import dev.finetune.api.trainer.TrainerContract.ExitCodes;
import dev.finetune.api.validation.InvalidJobException;
import dev.finetune.trainer.hub.DownloadListener;
import dev.finetune.trainer.hub.HubSettings;
import dev.finetune.trainer.model.Lora;
import dev.finetune.trainer.model.Model;
import dev.finetune.trainer.model.ModelShape;
import dev.finetune.trainer.model.WeightStorage;
import dev.finetune.trainer.train.Distributed;
import dev.finetune.trainer.train.MemoryPlan;
import io.fabric8.kubernetes.api.model.Quantity;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.OptionalLong;
import java.util.stream.Stream;

/**
 * {@code JOB.yaml --plan [--device-memory SIZE] [--json]}: the memory one rank of the job will need where it runs,
 * from the job and the model's {@code config.json} alone (no weights, no data, no run folder). Exit 0 when it fits,
 * 3 when it does not: a check to run on a laptop before a job asks a cluster for GPUs.
 */
final class PlanCommand {
  static final String USAGE = "usage: java -jar finetune-trainer.jar JOB.yaml --plan [--device-memory SIZE] [--json]";
  private static final ObjectMapper JSON = new ObjectMapper();

  private PlanCommand() {}

  /** Where the plan is checked: the memory that must hold it, or none known. */
  record Limit(OptionalLong bytes, String source) {}

  static boolean asked(String[] args) {
    return List.of(args).contains("--plan");
  }

  static int run(String[] args, PrintStream out, PrintStream err) {
    try {
      return plan(args, out);
    } catch (InvalidJobException | BadJobException e) {
      err.println("error: " + e.getMessage());
      return ExitCodes.BAD_JOB;
    } catch (IOException e) { // a hub that cannot be reached: worth another try
      err.println("error: " + e.getMessage());
      return ExitCodes.CRASHED;
    }
  }

  private static int plan(String[] args, PrintStream out) throws IOException {
    Path jobFile = null;
    String deviceMemory = null;
    boolean json = false;
    for (int i = 0; i < args.length; i++) {
      switch (args[i]) {
        case "--plan" -> { }
        case "--json" -> json = true;
        case "--device-memory" -> {
          if (i + 1 >= args.length) {
            throw new BadJobException("--device-memory needs a size, e.g. 24Gi\n" + USAGE);
          }
          deviceMemory = args[++i];
        }
        default -> {
          if (args[i].startsWith("-") || jobFile != null) {
            throw new BadJobException("unexpected argument '" + args[i] + "'\n" + USAGE);
          }
          jobFile = Path.of(args[i]).toAbsolutePath().normalize();
        }
      }
    }
    if (jobFile == null) {
      throw new BadJobException("no job file given\n" + USAGE);
    }
    if (!Files.isRegularFile(jobFile)) {
      throw new BadJobException("job file " + jobFile + " does not exist\n" + USAGE);
    }
    FineTuneJob job = FineTuneJobs.readValid(jobFile);
    FineTuneJobSpec spec = job.getSpec();
    ModelShape shape = shape(spec, jobFile.getParent());

    int nodes = spec.resources == null || spec.resources.nodes == null ? 1 : Math.max(1, spec.resources.nodes);
    int gpus = spec.resources == null || spec.resources.gpus == null ? 0 : spec.resources.gpus;
    int ranks = nodes * Math.max(1, gpus);
    boolean gpu = gpus > 0 || deviceMemory != null;
    Precision p = spec.training.precision == null ? Precision.AUTO : spec.training.precision;
    // auto is bf16 on GPUs of compute capability 8.0 and up, which is what clusters rent today
    boolean bf16 = p == Precision.BF16 || p == Precision.AUTO && gpu;
    int batch = Distributed.batchShare(spec.training.batchSize, ranks);
    int tokens = Math.min(spec.dataset.maxLength, shape.contextLength());
    LoraSpec lora = spec.training.lora;
    long trainable = lora == null ? shape.parameterCount()
        : shape.loraParameterCount(lora.r, Lora.targetModules(lora, shape));
    WeightStorage storage = WeightStorage.forRun(lora != null, bf16);
    // the trainer image carries the native kernels (fused attention) for GPUs; a CPU run here may not have them
    MemoryPlan plan = MemoryPlan.of(shape, storage, trainable, batch, tokens, bf16,
        Distributed.optimizerShards(lora == null, ranks), MemoryPlan.Savings.of(spec.training), gpu);
    Limit limit = limit(spec, gpu, deviceMemory);
    boolean fits = limit.bytes().isEmpty() || plan.total() <= limit.bytes().getAsLong();

    String model = spec.model.hub != null ? spec.model.hub : spec.model.path != null ? spec.model.path
        : "scratch GPT-2";
    if (json) {
      out.println(json(job, model, shape, trainable, ranks, bf16, gpu, plan, limit, fits));
    } else {
      out.printf("memory plan of %s: %s (%,d parameters, %s), %s on %s, per rank of %d%n", job.getMetadata().getName(),
          model, shape.parameterCount(), lora == null ? "every weight trains" : String.format("LoRA r%d: %,d trainable",
              lora.r, trainable), bf16 ? "bf16" : "fp32", gpu ? "a GPU" : "the CPU", ranks);
      row(out, "weights", plan.weights(), storage == WeightStorage.BF16_BASE
          ? "the frozen base in bf16 (norms and biases fp32)" : "fp32");
      row(out, "gradients", plan.gradients(), lora == null ? "every weight" : "the adapter");
      row(out, "AdamW state", plan.optimizer(), ranks > 1 && lora == null ? "1/" + ranks + " of it (ZeRO-1)" : "");
      if (plan.casts() > 0) {
        row(out, "bf16 weight copies", plan.casts(), "made each step");
      }
      row(out, "activations", plan.activations(), "batch " + batch + " x " + tokens + " tokens, " + (plan.savings()
          .checkpointing() ? "gradient checkpointing (each layer's input, one layer's activations)" : "no checkpointing"));
      row(out, "logits", plan.logits(), "with their log-softmax and both gradients, vocabulary " + shape.vocabSize() + ", "
          + (plan.savings().chunked(batch, tokens) ? plan.savings().lossChunkTokens() + " tokens at a time"
              : "the whole batch at once"));
      row(out, "runtime", MemoryPlan.RUNTIME, "JVM and libtorch");
      row(out, "total", plan.total(), "");
      if (gpu) {
        row(out, "host while loading", plan.loadBuffer() + MemoryPlan.RUNTIME, "the largest tensor and the runtime");
      }
      out.println(limit.bytes().isEmpty()
          ? "no memory limit known to check it against: " + limit.source()
          : (fits ? "fits in " : "does not fit in ") + MemoryPlan.gib(limit.bytes().getAsLong()) + " (" + limit.source()
              + ")" + (fits ? "" : ": " + plan.remedy()));
    }
    return fits ? ExitCodes.SUCCEEDED : ExitCodes.BAD_JOB;
  }

  /** config.json of the job's model: scratch's shape, a path's file, or a hub repository's (fetched alone). */
  static ModelShape shape(FineTuneJobSpec spec, Path jobDir) throws IOException {
    if (spec.model.scratch != null) {
      return ModelShape.scratch(spec.model.scratch);
    }
    if (spec.model.path != null) {
      Path config = Model.resolve(spec.model, spec.model.path, jobDir).resolve("config.json");
      if (!Files.isRegularFile(config)) {
        throw new BadJobException("spec.model.path: " + config + " does not exist; the plan needs the model's"
            + " config.json (and nothing else)");
      }
      return ModelShape.read(config);
    }
    // config.json alone, into the hub cache the environment names, else a folder that goes when the plan is made
    HubSettings hub = HubSettings.fromEnvironment();
    Path tmp = Files.createTempDirectory("finetune-plan-");
    try {
      return ModelShape.read(Model.hubRepo(spec.model, hub, tmp, DownloadListener.NONE).file("config.json"));
    } finally {
      try (Stream<Path> files = Files.walk(tmp)) {
        files.sorted(Comparator.reverseOrder()).forEach(f -> f.toFile().delete());
      }
    }
  }

  /**
   * What must hold the plan: --device-memory; on the CPU spec.resources.memory (the Pod's limit), else this machine's
   * limit; on a GPU nothing known without --device-memory.
   */
  static Limit limit(FineTuneJobSpec spec, boolean gpu, String deviceMemory) {
    if (deviceMemory != null) {
      return new Limit(OptionalLong.of(bytes(deviceMemory, "--device-memory")), "--device-memory " + deviceMemory);
    }
    if (gpu) {
      return new Limit(OptionalLong.empty(), "give the GPU's memory with --device-memory, e.g. 24Gi for an L4");
    }
    String memory = spec.resources == null ? null : spec.resources.memory;
    if (memory != null && !memory.isBlank()) {
      return new Limit(OptionalLong.of(bytes(memory, "spec.resources.memory")), "spec.resources.memory " + memory);
    }
    OptionalLong here = MemoryPlan.limit();
    return here.isPresent() ? new Limit(here, MemoryPlan.limitSource() + " here")
        : new Limit(OptionalLong.empty(), "spec.resources.memory is not set and this machine has no memory limit");
  }

  /** A Kubernetes quantity (24Gi, 80G, 25769803776) in bytes. */
  static long bytes(String quantity, String where) {
    try {
      return Quantity.getAmountInBytes(new Quantity(quantity)).longValueExact();
    } catch (RuntimeException e) {
      throw new BadJobException(where + " '" + quantity + "' is not a memory size; write e.g. 24Gi or 80G");
    }
  }

  private static void row(PrintStream out, String part, long bytes, String note) {
    out.printf("  %-19s %10s%s%n", part, MemoryPlan.gib(bytes), note.isEmpty() ? "" : "  " + note);
  }

  private static String json(FineTuneJob job, String model, ModelShape shape, long trainable, int ranks, boolean bf16,
      boolean gpu, MemoryPlan plan, Limit limit, boolean fits) {
    ObjectNode o = JSON.createObjectNode();
    o.put("job", job.getMetadata().getName());
    o.put("model", model);
    o.put("parameters", shape.parameterCount());
    o.put("trainableParameters", trainable);
    o.put("ranks", ranks);
    o.put("device", gpu ? "gpu" : "cpu");
    o.put("precision", bf16 ? "bf16" : "fp32");
    o.put("batch", plan.batch());
    o.put("tokens", plan.tokens());
    o.put("gradientCheckpointing", plan.savings().checkpointing());
    o.put("lossChunkTokens", plan.savings().lossChunkTokens());
    Map<String, Long> parts = new LinkedHashMap<>();
    parts.put("weightsBytes", plan.weights());
    parts.put("gradientsBytes", plan.gradients());
    parts.put("optimizerBytes", plan.optimizer());
    parts.put("castsBytes", plan.casts());
    parts.put("activationsBytes", plan.activations());
    parts.put("logitsBytes", plan.logits());
    parts.put("runtimeBytes", MemoryPlan.RUNTIME);
    parts.forEach(o::put);
    o.put("totalBytes", plan.total());
    o.put("hostLoadBytes", plan.loadBuffer() + MemoryPlan.RUNTIME);
    if (limit.bytes().isPresent()) {
      o.put("limitBytes", limit.bytes().getAsLong());
    } else {
      o.putNull("limitBytes");
    }
    o.put("limitSource", limit.source());
    o.put("fits", fits);
    return o.toString();
  }
}
