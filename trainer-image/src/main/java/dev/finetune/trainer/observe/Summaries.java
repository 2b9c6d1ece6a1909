package dev.finetune.trainer.observe;

import dev.finetune.api.EpochRecord;
import dev.finetune.api.FineTuneJobs;
import dev.finetune.api.trainer.TrainerContract;
import dev.finetune.api.trainer.TrainerContract.ExitCodes;
import dev.finetune.api.trainer.TrainerReport;
import dev.finetune.api.validation.InvalidJobException;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/** summary.json, the termination message cut to Kubernetes' 4 KiB, and the failure reasons. */
public final class Summaries {
  private Summaries() {}

  public static final String COMPLETED = "Completed";
  public static final String EARLY_STOPPED = "EarlyStopped";
  public static final String INVALID_SPEC = "InvalidSpec";
  public static final String INVALID_DATA = "InvalidData";
  public static final String DIVERGED = "Diverged";
  public static final String INTERRUPTED = "Interrupted";
  public static final String ERROR = "Error";

  /**
   * The reason for a failure, from the exit code the process will have and the error: 4 is Diverged, 75
   * Interrupted, 3 InvalidData when the problem is in the data set (a data exception, or a message about the
   * dataset or its records), else InvalidSpec; anything else is Error.
   */
  public static String reason(Throwable error, int exitCode) {
    if (exitCode == ExitCodes.DIVERGED) {
      return DIVERGED;
    }
    if (exitCode == ExitCodes.INTERRUPTED) {
      return INTERRUPTED;
    }
    if (exitCode == ExitCodes.BAD_JOB) {
      if (error instanceof InvalidJobException || error instanceof dev.finetune.trainer.SpecChangedException) {
        return INVALID_SPEC;
      }
      for (Throwable t = error; t != null; t = t.getCause()) {
        String name = t.getClass().getSimpleName().toLowerCase(Locale.ROOT);
        String msg = t.getMessage() == null ? "" : t.getMessage().toLowerCase(Locale.ROOT);
        if (name.contains("data") || msg.startsWith("dataset") || msg.startsWith("invalid dataset")
            || msg.contains("dataset file") || msg.contains("spec.dataset") || msg.contains(" records")) {
          return INVALID_DATA;
        }
      }
      return INVALID_SPEC;
    }
    return ERROR;
  }

  /** What a person reads first: the error's message, or its type when it has none. */
  public static String message(Throwable error) {
    if (error == null) {
      return null;
    }
    String m = error.getMessage();
    return m == null || m.isBlank() ? error.toString() : m.strip();
  }

  /** The whole summary as pretty JSON. */
  public static String toJson(TrainerReport summary) {
    try {
      return FineTuneJobs.json().writerWithDefaultPrettyPrinter().writeValueAsString(summary);
    } catch (IOException e) {
      throw new IllegalStateException("cannot write the summary as JSON", e);
    }
  }

  /**
   * The summary as compact JSON of at most {@code limit} UTF-8 bytes: the oldest history entries go first,
   * then the message is shortened, then evaluation and checkpoint are dropped; phase and reason always stay. The
   * operator copies it into {@code .status}, precision and device included.
   */
  public static String fit(TrainerReport summary, int limit) {
    TrainerReport s = copy(summary);
    String json = compact(s);
    if (bytes(json) <= limit) {
      return json;
    }
    List<EpochRecord> history = s.history == null ? List.of() : new ArrayList<>(s.history);
    // Fewest oldest entries to drop: binary search over k (dropping more never makes the document longer).
    int lo = 1;
    int hi = history.size();
    while (lo < hi) {
      int mid = (lo + hi) >>> 1;
      s.history = history.subList(mid, history.size());
      if (bytes(compact(s)) <= limit) {
        hi = mid;
      } else {
        lo = mid + 1;
      }
    }
    s.history = new ArrayList<>(history.subList(Math.min(lo, history.size()), history.size()));
    json = compact(s);
    while (bytes(json) > limit && s.message != null && !s.message.isEmpty()) {
      int over = bytes(json) - limit;
      String base = s.message.endsWith(CUT) ? s.message.substring(0, s.message.length() - CUT.length()) : s.message;
      String shorter = truncateUtf8(base, Math.max(0, bytes(base) - over - bytes(CUT)));
      if (shorter.length() >= base.length()) {
        shorter = truncateUtf8(base, bytes(base) / 2); // JSON escapes made it longer than its bytes: halve
      }
      s.message = shorter.isEmpty() ? "" : shorter + CUT;
      json = compact(s);
    }
    if (bytes(json) > limit) {
      s.evaluation = null;
      s.checkpoint = null;
      json = compact(s);
    }
    if (bytes(json) > limit) {
      TrainerReport min = new TrainerReport();
      min.phase = s.phase;
      min.reason = s.reason;
      min.history = null;
      json = compact(min);
    }
    return json;
  }

  private static final String CUT = " ...(cut)";

  /** The longest prefix of {@code s} of at most {@code maxBytes} UTF-8 bytes, never splitting a character. */
  static String truncateUtf8(String s, int maxBytes) {
    int used = 0;
    int i = 0;
    while (i < s.length()) {
      int cp = s.codePointAt(i);
      int n = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
      if (used + n > maxBytes) {
        break;
      }
      used += n;
      i += Character.charCount(cp);
    }
    return s.substring(0, i);
  }

  private static TrainerReport copy(TrainerReport in) {
    return FineTuneJobs.json().convertValue(in, TrainerReport.class);
  }

  private static String compact(TrainerReport s) {
    return FineTuneJobs.toJson(s);
  }

  static int bytes(String s) {
    return s.getBytes(StandardCharsets.UTF_8).length;
  }

  /** The evaluation an earlier run's summary.json reports, or null (no file, no evaluation, unreadable). */
  public static dev.finetune.api.EvaluationStatus readEvaluation(Path outputDir) {
    Path file = outputDir.resolve(TrainerContract.SUMMARY_FILE);
    try {
      if (!Files.isRegularFile(file)) {
        return null;
      }
      var evaluation = dev.finetune.api.FineTuneJobs.json().readTree(file.toFile()).get("evaluation");
      return evaluation == null || !evaluation.isObject() ? null
          : dev.finetune.api.FineTuneJobs.json().treeToValue(evaluation, dev.finetune.api.EvaluationStatus.class);
    } catch (IOException | RuntimeException e) {
      return null;
    }
  }

  /** Writes summary.json through a temporary file and a rename, so a reader never sees half of it. */
  public static void writeSummaryFile(Path outputDir, TrainerReport summary) throws IOException {
    writeAtomically(outputDir.resolve(TrainerContract.SUMMARY_FILE), toJson(summary) + "\n");
  }

  /**
   * Writes the cut summary to the termination log. Not through a rename: in a Pod the path is a file the
   * kubelet bind-mounts, which cannot be replaced, only rewritten.
   */
  public static void writeTerminationLog(Path terminationLog, TrainerReport summary) throws IOException {
    Files.writeString(terminationLog, fit(summary, TrainerContract.TERMINATION_MESSAGE_LIMIT), StandardCharsets.UTF_8,
        StandardOpenOption.CREATE, StandardOpenOption.TRUNCATE_EXISTING, StandardOpenOption.WRITE);
  }

  static void writeAtomically(Path target, String text) throws IOException {
    Files.createDirectories(target.toAbsolutePath().getParent());
    Path tmp = target.resolveSibling("." + target.getFileName() + ".tmp");
    Files.writeString(tmp, text, StandardCharsets.UTF_8);
    try {
      Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
    } catch (IOException e) {
      Files.move(tmp, target, StandardCopyOption.REPLACE_EXISTING);
    }
  }
}
