package dev.finetune.trainer.model;

import dev.finetune.trainer.BadJobException;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.Map;
import java.util.Set;

/**
 * The weights of an HF model directory as the hub ships them: one {@code model.safetensors}, or shards listed by
 * {@code model.safetensors.index.json}'s {@code weight_map}. Tensors are read into the dtype they will live in.
 */
public final class HfWeights {
  public static final String SINGLE = "model.safetensors";
  public static final String INDEX = "model.safetensors.index.json";

  private HfWeights() {}

  /** Whether {@code dir} holds weights in one of the two layouts. */
  public static boolean present(Path dir) {
    return Files.isRegularFile(dir.resolve(SINGLE)) || Files.isRegularFile(dir.resolve(INDEX));
  }

  /** Every tensor by its HF name, in the dtype {@code storage} gives it; the caller's manager owns them. */
  public static LinkedHashMap<String, NDArray> read(Path dir, NDManager manager, WeightStorage storage)
      throws IOException {
    LinkedHashMap<String, NDArray> out = new LinkedHashMap<>();
    for (Path file : files(dir)) {
      try {
        out.putAll(SafeTensors.read(file, manager, storage));
      } catch (IOException | RuntimeException e) {
        throw new BadJobException(file + " is not a readable safetensors file: " + e.getMessage(), e);
      }
    }
    return out;
  }

  /** The safetensors files of a model directory, single file first, else the index's shards in order. */
  static Set<Path> files(Path dir) throws IOException {
    Set<Path> files = new LinkedHashSet<>();
    if (Files.isRegularFile(dir.resolve(SINGLE))) {
      files.add(dir.resolve(SINGLE));
      return files;
    }
    for (String name : shards(dir)) {
      Path shard = dir.resolve(name);
      if (!Files.isRegularFile(shard)) {
        throw new BadJobException(dir.resolve(INDEX) + " names shard " + name + ", which is not in " + dir);
      }
      files.add(shard);
    }
    return files;
  }

  /** The shard file names {@code model.safetensors.index.json} lists, each once, in order; none may leave dir. */
  static Set<String> shards(Path dir) throws IOException {
    Path index = dir.resolve(INDEX);
    if (!Files.isRegularFile(index)) {
      throw new BadJobException("model directory " + dir + " has neither " + SINGLE + " nor " + INDEX);
    }
    JsonNode map = new ObjectMapper().readTree(index.toFile()).path("weight_map");
    if (!map.isObject() || map.isEmpty()) {
      throw new BadJobException(index + " has no weight_map");
    }
    Set<String> names = new LinkedHashSet<>();
    for (Iterator<Map.Entry<String, JsonNode>> it = map.fields(); it.hasNext(); ) {
      String name = it.next().getValue().asText();
      if (!dir.resolve(name).normalize().startsWith(dir.normalize())) {
        throw new BadJobException(index + " names shard " + name + ", which is not in " + dir);
      }
      names.add(name);
    }
    return names;
  }
}
