package dev.finetune.trainer.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import dev.finetune.api.ModelSpec;
import dev.finetune.api.ScratchModelSpec;
import dev.finetune.trainer.BadJobException;
import dev.finetune.trainer.TextFiles;
import dev.finetune.trainer.Volumes;
import dev.finetune.trainer.hub.DownloadListener;
import dev.finetune.trainer.hub.Hub;
import dev.finetune.trainer.hub.HubSettings;
import dev.finetune.trainer.hub.RepoKind;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;

/**
 * A network (GPT-2 or the Llama family) with its tokenizer: what an HF model directory holds, and what answers
 * prompts.
 */
public final class Model implements AutoCloseable {
  /** The model_type values config.json may name. */
  public static final List<String> SUPPORTED_TYPES = List.of("gpt2", "llama", "qwen2", "mistral");
  /** Files of an HF directory besides config, weights and tokenizer.json that a saved model carries along. */
  static final List<String> SIDECARS = List.of("tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
      "chat_template.jinja");
  /** Where {@link #save} writes a chat template the job gave (transformers and vLLM read it before tokenizer_config's). */
  static final String CHAT_TEMPLATE_FILE = "chat_template.jinja";

  private final CausalLm net;
  private final TextTokenizer tokenizer;
  private final Path source;
  private TokenizerConfig tokenizerConfig;
  private boolean jobChatTemplate;

  public Model(CausalLm net, TextTokenizer tokenizer) {
    this(net, tokenizer, null, TokenizerConfig.none(tokenizer.endOfText()));
  }

  private Model(CausalLm net, TextTokenizer tokenizer, Path source, TokenizerConfig tokenizerConfig) {
    this.net = net;
    this.tokenizer = tokenizer;
    this.source = source;
    this.tokenizerConfig = tokenizerConfig;
  }

  public CausalLm net() {
    return net;
  }

  public TextTokenizer tokenizer() {
    return tokenizer;
  }

  /** The special tokens, chat template and end-of-answer ids of the model's directory (or the job's template). */
  public TokenizerConfig tokenizerConfig() {
    return tokenizerConfig;
  }

  /** The chat template a job gives (spec.dataset.chatTemplate): used instead of the model's, and saved with it. */
  public void useChatTemplate(String template) {
    tokenizerConfig = tokenizerConfig.withChatTemplate(template);
    jobChatTemplate = true;
  }

  /**
   * Loads an HF-layout directory: config.json, model.safetensors (or shards with model.safetensors.index.json),
   * tokenizer.json; config.json's model_type picks the network.
   */
  public static Model load(Path dir, NDManager manager) throws IOException {
    return load(dir, manager, WeightStorage.FP32);
  }

  /** As {@link #load(Path, NDManager)}, each weight read straight into the dtype {@code storage} gives it. */
  public static Model load(Path dir, NDManager manager, WeightStorage storage) throws IOException {
    for (String f : new String[] {"config.json", HfWeights.SINGLE, "tokenizer.json"}) {
      if (!Files.isRegularFile(dir.resolve(f)) && !(f.equals(HfWeights.SINGLE) && HfWeights.present(dir))) {
        throw new BadJobException("model directory " + dir + " has no " + f
            + "; it needs config.json, model.safetensors (or shards with " + HfWeights.INDEX + ") and tokenizer.json"
            + " (HuggingFace layout)");
      }
    }
    Path configJson = dir.resolve("config.json");
    String type = modelType(configJson);
    CausalLm net;
    int endOfText;
    if (type.equals("gpt2")) {
      GptConfig config = GptConfig.read(configJson);
      endOfText = config.endOfText();
      net = Gpt2.load(config, dir.resolve(HfWeights.SINGLE), manager, storage);
    } else if (LlamaConfig.TYPES.contains(type)) {
      LlamaConfig config = LlamaConfig.read(configJson);
      endOfText = config.endOfText();
      net = Llama.load(config, dir, manager, storage);
    } else {
      throw new BadJobException(configJson + ": model_type is '" + type + "'; the trainer supports " + SUPPORTED_TYPES
          + " (GPT-2, Llama incl. SmolLM2, Qwen2, Mistral)");
    }
    try {
      TextTokenizer tok = tokenizer(dir, endOfText);
      return new Model(net, tok, dir, TokenizerConfig.read(dir, tok.endOfText()));
    } catch (IOException | RuntimeException e) {
      net.close();
      throw e;
    }
  }

  private static TextTokenizer tokenizer(Path dir, int endOfTextInConfig) throws IOException {
    return TextTokenizer.load(dir.resolve("tokenizer.json"), TokenizerConfig.endOfText(dir, endOfTextInConfig));
  }

  /** A tokenizer, its config and the context length it serves, without the weights. */
  public record TokenizerOnly(TextTokenizer tokenizer, TokenizerConfig config, int contextLength) implements AutoCloseable {
    @Override
    public void close() {
      tokenizer.close();
    }
  }

  /**
   * The tokenizer of the job's model and its context length, from config.json and the tokenizer files alone (a hub
   * model: those files alone, into the hub cache, else into {@code cacheDir}): what --inspect-data needs.
   */
  public static TokenizerOnly tokenizer(ModelSpec spec, Path jobDir, HubSettings hub, Path cacheDir) throws IOException {
    if (spec.scratch != null) {
      return new TokenizerOnly(new ByteTokenizer(), TokenizerConfig.none(ByteTokenizer.END_OF_TEXT), spec.scratch.contextLength);
    }
    Path dir;
    if (spec.path != null) {
      dir = resolve(spec, spec.path, jobDir);
    } else if (spec.hub != null) {
      Hub repo = hubRepo(spec, hub, cacheDir, DownloadListener.NONE);
      tokenizerFiles(repo);
      dir = repo.snapshot();
    } else {
      throw new BadJobException("spec.model names no model; set one of hub, path or scratch");
    }
    for (String f : new String[] {"config.json", "tokenizer.json"}) {
      if (!Files.isRegularFile(dir.resolve(f))) {
        throw new BadJobException("model directory " + dir + " has no " + f + "; the tokenizer needs config.json and"
            + " tokenizer.json (HuggingFace layout)");
      }
    }
    ModelShape shape = ModelShape.read(dir.resolve("config.json"));
    TextTokenizer tok = tokenizer(dir, shape.endOfText());
    return new TokenizerOnly(tok, TokenizerConfig.read(dir, tok.endOfText()), shape.contextLength());
  }

  /** config.json's model_type; GPT-2 when it names none (as older GPT-2 checkpoints do). */
  static String modelType(Path configJson) throws IOException {
    return TextFiles.modelConfig(configJson).path("model_type").asText("gpt2");
  }

  /**
   * The model a job asks for: {@code scratch}, a {@code path} (on the model volume when a claim is named and
   * mounted, else relative to the job file), or a {@code hub} repository, taken from the hub cache ({@code
   * HF_HUB_CACHE}, else {@code <output>/model-cache/}) and downloaded into it first where it is not there.
   */
  public static Model fromSpec(ModelSpec spec, Path jobDir, Path outputDir, NDManager manager, WeightStorage storage,
      HubSettings hub, DownloadListener listener) throws IOException {
    if (spec.scratch != null) {
      Model m = scratch(spec.scratch, manager);
      storage.apply(m.net().parameters());
      return m;
    }
    if (spec.path != null) {
      return load(resolve(spec, spec.path, jobDir), manager, storage);
    }
    if (spec.hub != null) {
      return load(snapshot(hubRepo(spec, hub, outputDir, listener)), manager, storage);
    }
    throw new BadJobException("spec.model names no model; set one of hub, path or scratch");
  }

  /** The job's hub repository in the cache the environment names, else the run folder's model-cache/. */
  public static Hub hubRepo(ModelSpec spec, HubSettings hub, Path outputDir, DownloadListener listener) {
    return new Hub(hub, hub.cacheOr(outputDir.resolve("model-cache")), RepoKind.MODEL, spec.hub, spec.revision, listener);
  }

  /**
   * The snapshot folder with what {@link #load} reads, downloading what is missing: config.json first (it pins the
   * revision to a commit), then the optional files, the tokenizer and the weights. A snapshot that has them all
   * (from an earlier run, or {@code huggingface-cli download}) needs no network.
   */
  static Path snapshot(Hub hub) throws IOException {
    Optional<String> commit = hub.cachedCommit();
    if (commit.isPresent() && complete(hub.snapshot())) {
      return hub.snapshot();
    }
    tokenizerFiles(hub);
    if (hub.optionalFile(HfWeights.SINGLE).isEmpty()) {
      hub.file(HfWeights.INDEX); // larger models ship shards listed by an index
      for (String shard : HfWeights.shards(hub.snapshot())) {
        hub.file(shard);
      }
    }
    return hub.snapshot();
  }

  /** config.json first (it pins the revision to a commit), the optional files, then the tokenizer. */
  private static void tokenizerFiles(Hub hub) throws IOException {
    hub.file("config.json");
    for (String f : SIDECARS) {
      hub.optionalFile(f);
    }
    hub.file("tokenizer.json");
  }

  private static boolean complete(Path dir) throws IOException {
    if (!Files.isRegularFile(dir.resolve("config.json")) || !Files.isRegularFile(dir.resolve("tokenizer.json"))) {
      return false;
    }
    if (Files.isRegularFile(dir.resolve(HfWeights.SINGLE))) {
      return true;
    }
    if (!Files.isRegularFile(dir.resolve(HfWeights.INDEX))) {
      return false;
    }
    return HfWeights.shards(dir).stream().allMatch(s -> Files.isRegularFile(dir.resolve(s)));
  }

  /**
   * A path a job names next to its model (spec.model.path, a LoRA initAdapter): on the model volume when a claim is
   * named and mounted, else relative to the job file.
   */
  public static Path resolve(ModelSpec spec, String path, Path jobDir) {
    return Volumes.model(path, spec.claimName, jobDir);
  }

  /** A randomly initialised GPT-2 of the given shape with the byte-level tokenizer. */
  public static Model scratch(ScratchModelSpec s, NDManager manager) {
    return new Model(Gpt2.random(ModelShape.scratch(s), s.seed, manager), new ByteTokenizer());
  }

  /**
   * Writes an HF-layout directory that {@link #load} (and HuggingFace) reads back; with a LoRA adapter attached, the
   * weights have it merged in (the network's own weights stay as they are).
   */
  public void save(Path dir) throws IOException {
    Lora lora = net.lora();
    if (lora == null) {
      save(dir, net.parameters());
      return;
    }
    try (NDManager merged = net.manager().newSubManager()) {
      save(dir, lora.merged(net.parameters(), merged));
    }
  }

  /**
   * What a checkpoint must hold to continue training: the model (HF layout), or, when a LoRA adapter trains, the
   * adapter alone (PEFT layout; the base is the job's model, unchanged).
   */
  public void saveTrained(Path dir) throws IOException {
    if (net.lora() == null) {
      save(dir);
    } else {
      net.lora().save(dir);
    }
  }

  /** Puts back what {@link #saveTrained} wrote. */
  public void restoreTrained(Path dir) throws IOException {
    if (net.lora() == null) {
      net.restore(dir);
    } else {
      net.lora().restore(dir);
    }
  }

  /** As {@link #save(Path)}, with other weights of the same names (e.g. a LoRA adapter merged in). */
  public void save(Path dir, java.util.Map<String, NDArray> weights) throws IOException {
    Files.createDirectories(dir);
    try (NDManager fp32 = net.manager().newSubManager()) {
      // a model on disk is float32 whatever its base lived in
      java.util.LinkedHashMap<String, NDArray> f32 = new java.util.LinkedHashMap<>(weights);
      f32.replaceAll((name, a) -> {
        NDArray f = WeightStorage.float32(a);
        if (f != a) {
          f.attach(fp32);
        }
        return f;
      });
      net.save(dir, f32);
    }
    tokenizer.save(dir);
    for (String f : SIDECARS) {
      if (source != null && Files.isRegularFile(source.resolve(f))) {
        Files.copy(source.resolve(f), dir.resolve(f), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
      }
    }
    if (jobChatTemplate) {
      Files.writeString(dir.resolve(CHAT_TEMPLATE_FILE), tokenizerConfig.chatTemplate().orElseThrow());
    }
  }

  @Override
  public void close() {
    net.close();
    tokenizer.close();
  }
}
