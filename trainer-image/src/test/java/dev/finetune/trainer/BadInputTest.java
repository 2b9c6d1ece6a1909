package dev.finetune.trainer;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.finetune.api.FineTuneJobs;
import dev.finetune.api.testing.TinyJob;
import dev.finetune.api.trainer.TrainerContract;
import dev.finetune.api.trainer.TrainerContract.ExitCodes;
import dev.finetune.trainer.data.Record;
import dev.finetune.trainer.data.SyntheticTasks;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Bad input exits 3 (the Job never retries it) with the file, the line or record and the field in the message,
 * and an earlier run's folder keeps its checkpoints, best/, history and answers: only summary.json changes, to
 * say the new attempt failed.
 */
class BadInputTest {
  /** The tiny job on data.jsonl (40 records), records of at most 64 tokens, answers of at most 4. */
  static final Map<String, Object> EARLIER = Map.of("spec.dataset.synthetic", TinyJob.UNSET, "spec.dataset.path",
      "data.jsonl", "spec.dataset.maxLength", 64, "spec.evaluation.maxNewTokens", 4);
  static final String JOB = job("earlier", 1, Map.of());

  /** The earlier run's job with {@code changes} on top. */
  static String job(String name, int epochs, Map<String, Object> changes) {
    Map<String, Object> all = new java.util.HashMap<>(EARLIER);
    all.putAll(changes);
    return TinyJob.yamlWith(name, epochs, all);
  }

  /** The 1-based number of the line of {@code text} that contains {@code part}. */
  static int lineOf(String text, String part) {
    List<String> lines = text.lines().toList();
    for (int i = 0; i < lines.size(); i++) {
      if (lines.get(i).contains(part)) {
        return i + 1;
      }
    }
    throw new AssertionError("no line contains '" + part + "' in\n" + text);
  }

  @TempDir
  static Path earlier;

  /** One finished run that every test starts from (copied). */
  @BeforeAll
  static void trainTheEarlierRun() throws Exception {
    StringBuilder data = new StringBuilder();
    for (Record r : SyntheticTasks.generate(40, 3)) {
      data.append(FineTuneJobs.json().writeValueAsString(Map.of("instruction", r.instruction(), "input", r.input(),
          "output", r.output()))).append('\n');
    }
    Files.writeString(earlier.resolve("data.jsonl"), data);
    Path job = Jobs.write(earlier, JOB);
    assertThat(MainTest.run(new MainTest.Errors(), job.toString())).isEqualTo(ExitCodes.SUCCEEDED);
    assertThat(run(earlier).resolve(TrainerContract.RESPONSES_FILE)).exists();
  }

  static Path run(Path dir) {
    return dir.resolve("runs/earlier");
  }

  /** A copy of the earlier run's job folder. */
  static Path copy(Path to) throws IOException {
    try (Stream<Path> files = Files.walk(earlier)) {
      for (Path p : files.toList()) {
        Path target = to.resolve(earlier.relativize(p).toString());
        if (Files.isDirectory(p)) {
          Files.createDirectories(target);
        } else {
          Files.copy(p, target);
        }
      }
    }
    return to;
  }

  /** Every file of a run folder but summary.json, with a hash of its content. */
  static Map<String, String> snapshot(Path runDir) throws Exception {
    Map<String, String> files = new TreeMap<>();
    try (Stream<Path> walk = Files.walk(runDir)) {
      for (Path p : walk.filter(Files::isRegularFile).toList()) {
        String rel = runDir.relativize(p).toString();
        if (!rel.equals(TrainerContract.SUMMARY_FILE)) {
          files.put(rel, HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(Files.readAllBytes(p))));
        }
      }
    }
    return files;
  }

  /** Runs the job in {@code dir}; asserts exit 3, the folder unchanged but for a failed summary; returns the message. */
  static String rerunFails(Path dir, String reason) throws Exception {
    Map<String, String> before = snapshot(run(dir));
    assertThat(before).containsKeys(TrainerContract.HISTORY_FILE, TrainerContract.RESPONSES_FILE, "best/model.safetensors");
    MainTest.Errors e = new MainTest.Errors();
    assertThat(MainTest.run(e, dir.resolve("job.yaml").toString())).isEqualTo(ExitCodes.BAD_JOB);
    assertThat(snapshot(run(dir))).isEqualTo(before);
    JsonNode summary = new ObjectMapper().readTree(run(dir).resolve(TrainerContract.SUMMARY_FILE).toFile());
    assertThat(summary.path("phase").asText()).isEqualTo("Failed");
    assertThat(summary.path("reason").asText()).isEqualTo(reason);
    String message = e.errors.get(0).getMessage();
    assertThat(summary.path("message").asText()).contains(message.lines().findFirst().orElseThrow());
    // our words, not the parser's
    assertThat(message).doesNotContain("line: ", "column: ", "(code ", "Exception", "Input length");
    return message;
  }

  static void replaceLine(Path file, int line, byte[] content) throws IOException {
    List<byte[]> lines = new ArrayList<>();
    for (String l : Files.readString(file).split("\n")) {
      lines.add(l.getBytes(StandardCharsets.UTF_8));
    }
    lines.set(line - 1, content);
    var out = new java.io.ByteArrayOutputStream();
    for (byte[] l : lines) {
      out.writeBytes(l);
      out.write('\n');
    }
    Files.write(file, out.toByteArray());
  }

  @Test
  void aDataFileThatIsNotUtf8NamesTheLine(@TempDir Path dir) throws Exception {
    copy(dir);
    replaceLine(dir.resolve("data.jsonl"), 3,
        "{\"instruction\": \"Say caf\u00e9.\", \"output\": \"caf\u00e9\"}".getBytes(StandardCharsets.ISO_8859_1));
    assertThat(rerunFails(dir, "InvalidData")).contains(dir.resolve("data.jsonl") + ": line 3, byte 25 (0xE9) is not UTF-8;"
        + " save the file as UTF-8");
  }

  @Test
  void aMalformedJsonLinesRecordNamesItsLineAndColumn(@TempDir Path dir) throws Exception {
    copy(dir);
    replaceLine(dir.resolve("data.jsonl"), 5, "{\"instruction\": \"a\" \"output\": \"b\"}".getBytes(StandardCharsets.UTF_8));
    assertThat(rerunFails(dir, "InvalidData")).contains(dir.resolve("data.jsonl") + " line 5: not valid JSON at column 21:"
        + " unexpected '\"' (a missing comma or quote, or a trailing comma?)");
  }

  @Test
  void anInvalidSpecReportsEveryProblemAndMarksTheSummaryFailed(@TempDir Path dir) throws Exception {
    copy(dir);
    String job = job("earlier", 0, Map.of("spec.training.epsilon", 1.0e-50, "spec.training.warmup", 3));
    Jobs.write(dir, job);
    String message = rerunFails(dir, "InvalidSpec");
    assertThat(message).contains(dir.resolve("job.yaml") + " (3 problems)", "spec.training.warmup: unknown field (line "
        + lineOf(job, "warmup: 3") + "); did you mean warmupSteps?", "spec.training.epochs: is 0",
        "spec.training.epsilon: is 1.0E-50, too small for float32");
  }

  @Test
  void aJobFileThatIsNotUtf8NamesTheLineAndMarksTheSummaryFailed(@TempDir Path dir) throws Exception {
    copy(dir);
    int line = lineOf(JOB, "maxNewTokens: 4");
    String latin1 = JOB.lines().toList().get(line - 1) + " # \u00e0 bient\u00f4t";
    replaceLine(dir.resolve("job.yaml"), line, latin1.getBytes(StandardCharsets.ISO_8859_1));
    assertThat(rerunFails(dir, "InvalidSpec")).isEqualTo("invalid FineTuneJob in " + dir.resolve("job.yaml") + ": line " + line
        + ", byte " + (latin1.indexOf('\u00e0') + 1) + " (0xE0) is not UTF-8; save the file as UTF-8 (e.g. iconv -f latin1 -t"
        + " utf-8)");
  }

  @Test
  void aRecordFarAboveMaxLengthIsNamedUnlessTheSpecOptsIntoTruncation(@TempDir Path dir) throws Exception {
    copy(dir);
    replaceLine(dir.resolve("data.jsonl"), 7, ("{\"instruction\": \"Repeat.\", \"output\": \"" + "la ".repeat(60) + "\"}")
        .getBytes(StandardCharsets.UTF_8));
    assertThat(rerunFails(dir, "InvalidData")).contains("1 of 40 records are more than 2 times spec.dataset.maxLength (64"
        + " tokens)", dir.resolve("data.jsonl") + " line 7 (", "set spec.dataset.truncateLongRecords: true");

    Path fresh = Files.createDirectories(dir.resolve("fresh"));
    Files.copy(dir.resolve("data.jsonl"), fresh.resolve("data.jsonl"));
    Jobs.write(fresh, job("earlier", 1, Map.of("spec.dataset.truncateLongRecords", true, "spec.evaluation.enabled", false)));
    assertThat(MainTest.run(new MainTest.Errors(), fresh.resolve("job.yaml").toString())).isEqualTo(ExitCodes.SUCCEEDED);
  }

  @Test
  void aModelWhoseConfigOrTokenizerIsBrokenNamesTheFile(@TempDir Path dir) throws Exception {
    Path model = copy(dir).resolve("model");
    Files.createDirectories(model);
    for (String f : List.of("config.json", "model.safetensors", "tokenizer.json")) {
      Files.copy(run(dir).resolve("best").resolve(f), model.resolve(f));
    }
    Jobs.write(dir, job("frommodel", 1, Map.of("spec.model", Map.of("path", "model"))));
    Files.writeString(model.resolve("config.json"), "{\n  \"n_embd\": 16,\n  \"n_layer\": 1\n  \"n_head\": 2\n}\n");
    MainTest.Errors e = new MainTest.Errors();
    assertThat(MainTest.run(e, dir.resolve("job.yaml").toString())).isEqualTo(ExitCodes.BAD_JOB);
    assertThat(e.errors.get(0).getMessage()).startsWith(model.resolve("config.json") + " line 4: not valid JSON at column 3:");

    Files.copy(run(dir).resolve("best/config.json"), model.resolve("config.json"), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
    Files.writeString(model.resolve("tokenizer.json"), "{\"model\": {\"type\": \"BPE\", ");
    e = new MainTest.Errors();
    assertThat(MainTest.run(e, dir.resolve("job.yaml").toString())).isEqualTo(ExitCodes.BAD_JOB);
    assertThat(e.errors.get(0).getMessage()).startsWith(model.resolve("tokenizer.json") + ": HuggingFace tokenizers cannot"
        + " read it (");
  }
}
