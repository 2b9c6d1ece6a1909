package dev.finetune.trainer.model;

import dev.finetune.trainer.BadJobException;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeSet;

/**
 * A LoRA adapter as PEFT computes it: for each targeted linear layer, y = W x + b + (alpha / r) B A dropout(x), with
 * A [r, in] and B [out, r]; only A and B train. Saved and loaded in PEFT's layout ({@code adapter_config.json},
 * {@code adapter_model.safetensors} with {@code base_model.model.<module>.lora_A.weight} names), so {@code peft}
 * loads what this writes and this continues what {@code peft} wrote.
 */
public final class Lora implements AutoCloseable {
  public static final String CONFIG = "adapter_config.json";
  public static final String WEIGHTS = "adapter_model.safetensors";
  private static final ObjectMapper JSON = new ObjectMapper();

  private final int rank;
  private final double alpha;
  private final double dropout;
  private final List<String> targetModules;
  private final String hfPrefix;
  private final boolean fanInFanOut;
  private final NDManager manager;
  /** adapter_config.json's base_model_name_or_path: the hub id or path of the model the adapter belongs to. */
  private String baseModel = "";
  /** Module name (as the network names its parameters, without ".weight") to {A, B}. */
  private final LinkedHashMap<String, NDArray[]> adapters = new LinkedHashMap<>();
  private final LinkedHashMap<String, NDArray> params = new LinkedHashMap<>();

  private Lora(int rank, double alpha, double dropout, List<String> targetModules, CausalLm net, NDManager manager) {
    this.rank = rank;
    this.alpha = alpha;
    this.dropout = dropout;
    this.targetModules = List.copyOf(new TreeSet<>(targetModules));
    this.hfPrefix = net.hfPrefix();
    this.fanInFanOut = net.fanInFanOut();
    this.manager = manager;
  }

  /** The layers a target list selects: PEFT matches a module whose name is the target or ends with "." + target. */
  static Map<String, long[]> targets(Map<String, long[]> linearLayers, List<String> targetModules) {
    Map<String, long[]> out = new LinkedHashMap<>();
    for (Map.Entry<String, long[]> e : linearLayers.entrySet()) {
      String module = e.getKey();
      String last = module.substring(module.lastIndexOf('.') + 1);
      if (targetModules.contains(last)) {
        out.put(module, e.getValue());
      }
    }
    List<String> unmatched = new ArrayList<>();
    for (String t : targetModules) {
      if (out.keySet().stream().noneMatch(m -> m.endsWith("." + t))) {
        unmatched.add(t);
      }
    }
    if (!unmatched.isEmpty()) {
      TreeSet<String> known = new TreeSet<>();
      linearLayers.keySet().forEach(m -> known.add(m.substring(m.lastIndexOf('.') + 1)));
      throw new BadJobException("spec.training.lora.targetModules " + unmatched + " name no layer of this model; its"
          + " linear layers are " + known);
    }
    return out;
  }

  /** The dropout on the adapter's input in training (PEFT's lora_dropout). */
  public double dropout() {
    return dropout;
  }

  /**
   * A new adapter as PEFT initialises one: A from kaiming_uniform(a = sqrt(5)), i.e. U(-1/sqrt(in), 1/sqrt(in)),
   * drawn from {@code seed} in layer order; B zeros, so training starts from the base model's outputs.
   */
  public static Lora create(CausalLm net, int rank, double alpha, double dropout, List<String> targetModules, long seed) {
    if (rank < 1) {
      throw new BadJobException("spec.training.lora.r must be at least 1, got " + rank);
    }
    Lora l = new Lora(rank, alpha, dropout, targetModules, net, net.manager().newSubManager());
    Random rnd = new Random(seed);
    for (Map.Entry<String, long[]> e : targets(net.linearLayers(), l.targetModules).entrySet()) {
      long in = e.getValue()[0];
      long out = e.getValue()[1];
      float[] a = new float[(int) (rank * in)];
      double bound = 1 / Math.sqrt(in);
      for (int i = 0; i < a.length; i++) {
        a[i] = (float) ((rnd.nextDouble() * 2 - 1) * bound);
      }
      l.put(e.getKey(), l.manager.create(a, new Shape(rank, in)), l.manager.zeros(new Shape(out, rank)));
    }
    return l;
  }

  /**
   * The adapter a job asks for ({@code spec.training.lora}): {@code initAdapter} (already resolved to a folder) when
   * given, else a new one from the job's seed on the named layers (PEFT's defaults for the model when none are named).
   */
  public static Lora forJob(dev.finetune.api.LoraSpec spec, CausalLm net, Path initAdapter, long seed, String baseModel)
      throws IOException {
    Lora l = forJob(spec, net, initAdapter, seed);
    l.baseModel = baseModel == null ? "" : baseModel;
    return l;
  }

  private static Lora forJob(dev.finetune.api.LoraSpec spec, CausalLm net, Path initAdapter, long seed) throws IOException {
    double dropout = spec.dropout == null ? 0 : spec.dropout;
    if (initAdapter != null) {
      Lora l = load(net, initAdapter, dropout);
      System.out.println("LoRA: continuing the adapter in " + initAdapter + " (its r " + l.rank + ", alpha " + l.alpha
          + ", target modules " + l.targetModules + " apply)");
      return l;
    }
    return create(net, spec.r, spec.alpha, dropout, targetModules(spec, net.shape()), seed);
  }

  /** The modules a job's adapter targets: the ones it names, else PEFT's defaults for the architecture. */
  public static List<String> targetModules(dev.finetune.api.LoraSpec spec, ModelShape shape) {
    return spec.targetModules == null || spec.targetModules.isEmpty() ? shape.defaultLoraTargets() : spec.targetModules;
  }

  /**
   * Reads a PEFT adapter folder for {@code net}. Its rank, alpha and target modules come from its
   * adapter_config.json; {@code dropout} is the job's.
   */
  public static Lora load(CausalLm net, Path dir, double dropout) throws IOException {
    Path configFile = dir.resolve(CONFIG);
    if (!Files.isRegularFile(configFile) || !Files.isRegularFile(dir.resolve(WEIGHTS))) {
      throw new BadJobException("LoRA adapter folder " + dir + " needs " + CONFIG + " and " + WEIGHTS + " (PEFT layout)");
    }
    JsonNode c = JSON.readTree(configFile.toFile());
    if (!c.path("peft_type").asText("LORA").equals("LORA")) {
      throw new BadJobException(configFile + ": peft_type " + c.get("peft_type") + " is not LORA");
    }
    for (String unsupported : new String[] {"use_dora", "use_rslora"}) {
      if (c.path(unsupported).asBoolean(false)) {
        throw new BadJobException(configFile + ": " + unsupported + " is not supported");
      }
    }
    if (!c.path("rank_pattern").isEmpty() || !c.path("alpha_pattern").isEmpty()) {
      throw new BadJobException(configFile + ": rank_pattern/alpha_pattern are not supported (one r and alpha for all layers)");
    }
    List<String> targets = new ArrayList<>();
    c.path("target_modules").forEach(t -> targets.add(t.asText()));
    if (targets.isEmpty()) {
      throw new BadJobException(configFile + ": target_modules must be a list of module names");
    }
    Lora l = new Lora(c.path("r").asInt(8), c.path("lora_alpha").asDouble(8), dropout, targets, net,
        net.manager().newSubManager());
    try {
      Map<String, long[]> layers = targets(net.linearLayers(), l.targetModules);
      Map<String, NDArray> read = SafeTensors.read(dir.resolve(WEIGHTS), l.manager);
      Map<String, NDArray> byName = new LinkedHashMap<>();
      read.forEach((k, v) -> byName.put(k.replace(".default.weight", ".weight"), v));
      List<String> problems = new ArrayList<>();
      for (Map.Entry<String, long[]> e : layers.entrySet()) {
        String peft = l.peftName(e.getKey());
        NDArray a = byName.remove(peft + ".lora_A.weight");
        NDArray b = byName.remove(peft + ".lora_B.weight");
        Shape as = new Shape(l.rank, e.getValue()[0]);
        Shape bs = new Shape(e.getValue()[1], l.rank);
        if (a == null || b == null) {
          problems.add("missing " + peft + ".lora_A/lora_B");
        } else if (!a.getShape().equals(as) || !b.getShape().equals(bs)) {
          problems.add(peft + " has A " + a.getShape() + " and B " + b.getShape() + ", expected " + as + " and " + bs);
        } else {
          l.put(e.getKey(), a, b);
        }
      }
      if (!byName.isEmpty()) {
        problems.add("unexpected tensors " + byName.keySet());
      }
      if (!problems.isEmpty()) {
        throw new BadJobException(dir + " does not fit this model: " + String.join("; ", problems));
      }
      return l;
    } catch (IOException | RuntimeException e) {
      l.close();
      throw e;
    }
  }

  private void put(String module, NDArray a, NDArray b) {
    adapters.put(module, new NDArray[] {a, b});
    params.put(module + ".lora_A.weight", a);
    params.put(module + ".lora_B.weight", b);
  }

  private String peftName(String module) {
    return "base_model.model." + hfPrefix + module;
  }

  public int rank() {
    return rank;
  }

  public double alpha() {
    return alpha;
  }

  public List<String> targetModules() {
    return targetModules;
  }

  public double scaling() {
    return alpha / rank;
  }

  /** The adapter's tensors ({@code <module>.lora_A.weight}, {@code <module>.lora_B.weight}): what trains. */
  public Map<String, NDArray> parameters() {
    return params;
  }

  public long parameterCount() {
    return params.values().stream().mapToLong(a -> a.getShape().size()).sum();
  }

  /** y plus the adapter's update of a layer's input x, when the layer is targeted. */
  NDArray apply(String module, NDArray x, NDArray y, Gpt2.Consts k, boolean training, PrecisionPolicy precision) {
    NDArray[] ab = adapters.get(module);
    if (ab == null) {
      return y;
    }
    NDArray in = training && dropout > 0 ? x.getNDArrayInternal().dropout(x, (float) dropout, true).singletonOrThrow() : x;
    NDArray up = precision.linear(precision.linear(in, ab[0], null, k.casts), ab[1], null, k.casts);
    return y.add(up.mul(k.scalar((float) scaling())));
  }

  /**
   * The base weights with every adapter merged in (W + scaling B A; transposed for GPT-2's Conv1D), as new arrays on
   * {@code m}: the network's own weights stay untouched.
   */
  public Map<String, NDArray> merged(Map<String, NDArray> base, NDManager m) {
    LinkedHashMap<String, NDArray> out = new LinkedHashMap<>(base);
    try (ai.djl.ndarray.NDScope scope = new ai.djl.ndarray.NDScope()) {
      for (Map.Entry<String, NDArray[]> e : adapters.entrySet()) {
        String w = e.getKey() + ".weight";
        NDArray delta = e.getValue()[1].matMul(e.getValue()[0]).mul((float) scaling());
        NDArray merged = WeightStorage.float32(base.get(w)).add(fanInFanOut ? delta.transpose() : delta);
        merged.attach(m);
        ai.djl.ndarray.NDScope.unregister(merged);
        out.put(w, merged);
      }
    }
    return out;
  }

  /** Writes the adapter as PEFT does (adapter_config.json, adapter_model.safetensors). */
  public void save(Path dir) throws IOException {
    Files.createDirectories(dir);
    ObjectNode c = JSON.createObjectNode();
    c.put("peft_type", "LORA");
    c.put("task_type", "CAUSAL_LM");
    c.put("base_model_name_or_path", baseModel);
    c.put("r", rank);
    c.put("lora_alpha", alpha);
    c.put("lora_dropout", dropout);
    targetModules.forEach(c.putArray("target_modules")::add);
    c.put("fan_in_fan_out", fanInFanOut);
    c.put("bias", "none");
    c.put("use_rslora", false);
    c.put("use_dora", false);
    c.put("init_lora_weights", true);
    c.put("inference_mode", true);
    c.putNull("modules_to_save");
    c.putNull("layers_to_transform");
    c.putNull("layers_pattern");
    c.putObject("rank_pattern");
    c.putObject("alpha_pattern");
    c.putNull("revision");
    Files.writeString(dir.resolve(CONFIG), JSON.writerWithDefaultPrettyPrinter().writeValueAsString(c));
    LinkedHashMap<String, NDArray> named = new LinkedHashMap<>();
    for (Map.Entry<String, NDArray[]> e : adapters.entrySet()) {
      named.put(peftName(e.getKey()) + ".lora_A.weight", e.getValue()[0]);
      named.put(peftName(e.getKey()) + ".lora_B.weight", e.getValue()[1]);
    }
    SafeTensors.write(dir.resolve(WEIGHTS), named);
  }

  /** Overwrites the adapter in place with one {@link #save} wrote for the same model and settings. */
  public void restore(Path dir) throws IOException {
    NDManager tmp = manager.newSubManager();
    try (tmp) {
      Map<String, NDArray> read = SafeTensors.read(dir.resolve(WEIGHTS), tmp);
      for (Map.Entry<String, NDArray[]> e : adapters.entrySet()) {
        String peft = peftName(e.getKey());
        for (int i = 0; i < 2; i++) {
          NDArray src = read.get(peft + (i == 0 ? ".lora_A.weight" : ".lora_B.weight"));
          if (src == null || !src.getShape().equals(e.getValue()[i].getShape())) {
            throw new IOException(dir + ": adapter tensor of " + peft + " is missing or has another shape");
          }
          NoGrad.copy(src, e.getValue()[i]);
        }
      }
    }
  }

  @Override
  public void close() {
    manager.close();
  }
}
