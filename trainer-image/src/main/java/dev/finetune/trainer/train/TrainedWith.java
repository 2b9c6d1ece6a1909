package dev.finetune.trainer.train;

import com.fasterxml.jackson.databind.JsonNode;
import dev.finetune.api.FineTuneJobSpec;
import dev.finetune.api.FineTuneJobs;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * The parts of a spec that decide what a run computes (model, data, training, early stopping, evaluation), as
 * field path to value: a checkpoint records it, so a rerun with a different spec is refused instead of
 * continuing someone else's run. Epochs and evaluation are compared on their own: more epochs on a finished run
 * is a choice (--more-epochs), and a changed evaluation only means answering the test split again.
 */
public final class TrainedWith {
  static final String EPOCHS = "spec.training.epochs";
  static final String EVALUATION = "spec.evaluation";

  private TrainedWith() {}

  public static Map<String, String> of(FineTuneJobSpec spec) {
    Map<String, String> out = new TreeMap<>();
    JsonNode tree = FineTuneJobs.json().valueToTree(spec);
    for (String part : List.of("model", "dataset", "training", "earlyStopping", "evaluation")) {
      flatten("spec." + part, tree.get(part), out);
    }
    return out;
  }

  private static void flatten(String path, JsonNode node, Map<String, String> out) {
    if (node == null || node.isNull() || node.isMissingNode()) {
      return;
    }
    if (node.isObject()) {
      node.fields().forEachRemaining(f -> flatten(path + "." + f.getKey(), f.getValue(), out));
    } else {
      out.put(path, node.isTextual() ? node.asText() : node.toString());
    }
  }

  /**
   * The fields whose values differ ("spec.training.learningRate: 0.003, now 0.001"), leaving out epochs and
   * evaluation; empty when {@code before} is null (a checkpoint written before runs recorded their spec).
   */
  public static List<String> resultChanges(Map<String, String> before, Map<String, String> now) {
    List<String> out = new ArrayList<>();
    if (before == null) {
      return out;
    }
    Map<String, String> all = new TreeMap<>(before);
    now.forEach(all::putIfAbsent);
    for (String field : all.keySet()) {
      if (field.equals(EPOCHS) || field.startsWith(EVALUATION + ".")) {
        continue;
      }
      String a = before.get(field);
      String b = now.get(field);
      if (a == null ? b != null : !a.equals(b)) {
        out.add(field + ": " + (a == null ? "(not set)" : a) + ", now " + (b == null ? "(not set)" : b));
      }
    }
    return out;
  }

  /** Whether the evaluation settings are the same (so a finished run's answers stand). */
  public static boolean sameEvaluation(Map<String, String> before, Map<String, String> now) {
    if (before == null) {
      return false;
    }
    return evaluation(before).equals(evaluation(now));
  }

  /** {@code before} with the evaluation settings of {@code now}. */
  public static Map<String, String> withEvaluation(Map<String, String> before, Map<String, String> now) {
    Map<String, String> out = new TreeMap<>(before);
    out.keySet().removeIf(k -> k.startsWith(EVALUATION + "."));
    out.putAll(evaluation(now));
    return out;
  }

  private static Map<String, String> evaluation(Map<String, String> m) {
    Map<String, String> out = new TreeMap<>();
    m.forEach((k, v) -> {
      if (k.startsWith(EVALUATION + ".")) {
        out.put(k, v);
      }
    });
    return out;
  }

  /** The epochs the run was planned with, or null when not recorded. */
  public static Integer epochs(Map<String, String> trainedWith) {
    String e = trainedWith == null ? null : trainedWith.get(EPOCHS);
    return e == null ? null : Integer.valueOf(e);
  }
}
