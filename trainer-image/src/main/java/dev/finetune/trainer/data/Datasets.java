package dev.finetune.trainer.data;

import com.fasterxml.jackson.core.JsonLocation;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.finetune.api.DatasetSpec;
import dev.finetune.api.trainer.TrainerContract;
import dev.finetune.trainer.BadDataException;
import dev.finetune.trainer.BadJobException;
import dev.finetune.trainer.TextFiles;
import dev.finetune.trainer.Volumes;
import dev.finetune.trainer.hub.DownloadListener;
import dev.finetune.trainer.hub.Downloads;
import dev.finetune.trainer.hub.HubSettings;
import java.io.IOException;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HexFormat;
import java.util.List;
import java.util.Random;

/** Reads instruction records from the job's dataset source and splits them into train, validation and test. */
public final class Datasets {
  private static final ObjectMapper JSON = new ObjectMapper();

  private Datasets() {}

  /** The three splits; test may be empty. */
  public record Splits(List<Record> train, List<Record> validation, List<Record> test, String source) {}

  /**
   * Loads the records of {@code spec}. Relative paths are resolved against the dataset volume when the job
   * names a claim and the volume is mounted, else against the job file's directory (local runs).
   */
  public static Splits load(DatasetSpec spec, Path jobDir, Path outputDir) throws IOException {
    return load(spec, jobDir, outputDir, HubSettings.fromEnvironment(), DownloadListener.NONE);
  }

  /** As {@link #load(DatasetSpec, Path, Path)}, with a hub dataset from {@code hub}. */
  public static Splits load(DatasetSpec spec, Path jobDir, Path outputDir, HubSettings hub, DownloadListener listener)
      throws IOException {
    Columns columns = new Columns(spec.columns);
    if (spec.files != null) {
      List<Record> train = read(resolve(spec.files.train, spec.claimName, jobDir), columns);
      List<Record> validation = read(resolve(spec.files.validation, spec.claimName, jobDir), columns);
      List<Record> test = spec.files.test == null ? List.of() : read(resolve(spec.files.test, spec.claimName, jobDir), columns);
      return new Splits(train, validation, test, "files " + spec.files.train + ", " + spec.files.validation
          + (spec.files.test == null ? "" : ", " + spec.files.test));
    }
    List<Record> all;
    String source;
    if (spec.synthetic != null) {
      all = SyntheticTasks.generate(spec.synthetic.size, spec.synthetic.seed);
      source = "synthetic tasks (" + spec.synthetic.size + " records, seed " + spec.synthetic.seed + ")";
    } else if (spec.path != null) {
      Path p = resolve(spec.path, spec.claimName, jobDir);
      all = read(p, columns);
      source = p.toString();
    } else if (spec.configMap != null) {
      Path mounted = TrainerContract.mountDir(TrainerContract.ENV_DATASET_CONFIGMAP_DIR, TrainerContract.DATA_CONFIGMAP_MOUNT)
          .resolve(spec.configMap.key);
      Path p = Files.exists(mounted) ? mounted : jobDir.resolve(spec.configMap.key);
      if (!Files.exists(p)) {
        throw new BadDataException("dataset ConfigMap key '" + spec.configMap.key + "' not found at " + mounted
            + " (in a local run, put the file at " + p + ")");
      }
      all = read(p, columns);
      source = "ConfigMap " + spec.configMap.name + "/" + spec.configMap.key;
    } else if (spec.url != null) {
      Path p = download(spec.url, outputDir.resolve("data-cache"));
      all = read(p, columns);
      source = spec.url;
    } else if (spec.hub != null) {
      HubDatasets.Files files = HubDatasets.fetch(spec.hub, hub, outputDir, listener);
      all = new ArrayList<>();
      for (Path p : files.paths()) {
        all.addAll(read(p, columns));
      }
      source = files.source();
    } else {
      throw new BadDataException("spec.dataset names no source; set one of path, configMap, url, synthetic, files or hub");
    }
    return split(all, spec.split, source);
  }

  /**
   * Splits by fractions after an optional seeded shuffle. As the reference does: train is the first part,
   * test the next, validation the rest (so rounding goes to validation).
   */
  public static Splits split(List<Record> all, DatasetSpec.SplitSpec s, String source) {
    List<Record> records = new ArrayList<>(all);
    if (Boolean.TRUE.equals(s.shuffle)) {
      Collections.shuffle(records, new Random(s.seed));
    }
    int n = records.size();
    int train = (int) (n * s.train);
    int test = (int) (n * s.test);
    return new Splits(List.copyOf(records.subList(0, train)), List.copyOf(records.subList(train + test, n)),
        List.copyOf(records.subList(train, train + test)), source);
  }

  static Path resolve(String path, String claimName, Path jobDir) {
    return Volumes.data(path, claimName, jobDir);
  }

  /** Downloads a URL once into {@code cacheDir} (the name is a hash of the URL) and returns the file. */
  static Path download(String url, Path cacheDir) throws IOException {
    String hash;
    try {
      hash = HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(url.getBytes(StandardCharsets.UTF_8)))
          .substring(0, 16);
    } catch (java.security.NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
    String name = Path.of(URI.create(url).getPath()).getFileName() == null ? "data.json"
        : Path.of(URI.create(url).getPath()).getFileName().toString();
    Path target = cacheDir.resolve(hash + "-" + name);
    if (!Files.exists(target)) {
      Downloads.fetch(URI.create(url), target);
    }
    return target;
  }

  /**
   * Reads a JSON array or JSON Lines file of records; a bad record names the file, line and field, and a file
   * that is not UTF-8 or not JSON names the line (and column) in words, with the fix.
   */
  public static List<Record> read(Path file) throws IOException {
    return read(file, new Columns(null));
  }

  /** As {@link #read(Path)}, each field taken from the column {@code columns} names; Parquet files too. */
  static List<Record> read(Path file, Columns columns) throws IOException {
    if (!Files.isRegularFile(file)) {
      throw new BadDataException("dataset file " + file + " does not exist");
    }
    if (file.getFileName().toString().endsWith(".parquet")) {
      return parquet(file, columns);
    }
    String text;
    try {
      text = TextFiles.utf8(file);
    } catch (BadDataException e) {
      throw e;
    } catch (BadJobException e) {
      throw new BadDataException(e.getMessage());
    }
    List<String> problems = new ArrayList<>();
    List<Record> records = new ArrayList<>();
    if (text.stripLeading().startsWith("[")) {
      try (JsonParser p = JSON.getFactory().createParser(text)) {
        p.nextToken();
        int index = 0;
        while (p.nextToken() != JsonToken.END_ARRAY) {
          if (p.currentToken() == null) {
            throw new BadDataException(file + ": the JSON array is not closed; end the file with ']'");
          }
          JsonLocation at = p.currentTokenLocation();
          JsonNode node = p.readValueAsTree();
          record(node, file + " line " + at.getLineNr() + " (record " + index + ")", records, problems, columns);
          index++;
        }
      } catch (JsonProcessingException e) {
        throw new BadDataException(file + " line " + e.getLocation().getLineNr() + ": not valid JSON at column "
            + e.getLocation().getColumnNr() + ": " + TextFiles.jsonProblem(e) + "; the file must be a JSON array of objects with instruction,"
            + " input and output (or JSON Lines: one such object a line)");
      }
    } else {
      String[] lines = text.split("\n", -1);
      for (int i = 0; i < lines.length; i++) {
        if (lines[i].isBlank()) {
          continue;
        }
        String where = file + " line " + (i + 1);
        try {
          record(JSON.readTree(lines[i]), where, records, problems, columns);
        } catch (JsonProcessingException e) {
          problems.add(where + ": not valid JSON at column " + e.getLocation().getColumnNr() + ": " + TextFiles.jsonProblem(e)
              + " (a JSON Lines file has one record object per line)");
        }
        if (problems.size() >= 10) {
          break;
        }
      }
    }
    return checked(file, records, problems, columns);
  }

  private static List<Record> parquet(Path file, Columns columns) throws IOException {
    List<com.fasterxml.jackson.databind.node.ObjectNode> rows;
    try {
      rows = ParquetRows.read(file);
    } catch (IOException e) {
      throw new BadDataException(file + " is not a readable Parquet file: " + e.getMessage());
    }
    List<String> problems = new ArrayList<>();
    List<Record> records = new ArrayList<>();
    for (int i = 0; i < rows.size() && problems.size() < 10; i++) {
      record(rows.get(i), file + " row " + i, records, problems, columns);
    }
    if (!problems.isEmpty() && !rows.isEmpty()) {
      List<String> names = new ArrayList<>();
      rows.get(0).fieldNames().forEachRemaining(names::add);
      problems.add("the file's columns: " + String.join(", ", names));
    }
    return checked(file, records, problems, columns);
  }

  private static List<Record> checked(Path file, List<Record> records, List<String> problems, Columns columns) {
    if (!problems.isEmpty()) {
      throw new BadDataException("invalid dataset records (each needs a string " + columns.describe()
          + "):\n  " + String.join("\n  ", problems));
    }
    if (records.isEmpty()) {
      throw new BadDataException("dataset file " + file + " holds no records");
    }
    return records;
  }

  /** Where each field the trainer reads is in a record: its own name, or the column spec.dataset.columns gives. */
  record Columns(java.util.Map<String, String> names) {
    String of(String field) {
      return names == null ? field : names.getOrDefault(field, field);
    }

    /** The field as a record has it, and where the name comes from when the job renamed it. */
    String describe(String field) {
      return of(field).equals(field) ? "'" + field + "'" : "'" + of(field) + "' (spec.dataset.columns." + field + ")";
    }

    String describe() {
      return describe("instruction") + ", an optional string " + describe("input") + " and a string " + describe("output")
          + ", or a conversation: " + describe("messages") + " [{role, content}] or 'conversations' [{from, value}]";
    }

    /** The field that holds a record's conversation: messages (or the column named for it), else ShareGPT's conversations. */
    String conversation(JsonNode node) {
      if (!node.isObject()) {
        return null;
      }
      if (node.has(of("messages"))) {
        return of("messages");
      }
      return of("messages").equals("messages") && node.has("conversations") ? "conversations" : null;
    }
  }

  private static void record(JsonNode node, String where, List<Record> out, List<String> problems, Columns columns) {
    if (problems.size() >= 10) {
      return;
    }
    String conversation = node == null ? null : columns.conversation(node);
    if (conversation != null) {
      Conversations.read(node.get(conversation), conversation, where, problems).ifPresent(m -> out.add(Record.conversation(m, where)));
      return;
    }
    if (node == null || !node.isObject()) {
      problems.add(where + ": expected an object with " + columns.of("instruction") + ", " + columns.of("input")
          + " and " + columns.of("output"));
      return;
    }
    String instruction = field(node, "instruction", true, where, problems, columns);
    String input = field(node, "input", false, where, problems, columns);
    String output = field(node, "output", true, where, problems, columns);
    if (instruction != null && instruction.isBlank()) {
      problems.add(where + ": field " + columns.describe("instruction") + " is empty");
      return;
    }
    if (instruction != null && output != null) {
      out.add(new Record(instruction, input == null ? "" : input, output, where));
    }
  }

  private static String field(JsonNode node, String name, boolean required, String where, List<String> problems,
      Columns columns) {
    JsonNode v = node.get(columns.of(name));
    if (v == null || v.isNull()) {
      if (required) {
        problems.add(where + ": field " + columns.describe(name) + " is missing");
      }
      return null;
    }
    if (!v.isTextual()) {
      problems.add(where + ": field " + columns.describe(name) + " must be a string, not " + v.getNodeType().toString().toLowerCase());
      return null;
    }
    return v.asText();
  }
}
