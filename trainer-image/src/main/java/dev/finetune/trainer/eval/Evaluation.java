package dev.finetune.trainer.eval;

import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.finetune.api.EvaluationSpec;
import dev.finetune.api.EvaluationStatus;
import dev.finetune.api.FineTuneJob;
import dev.finetune.api.DatasetSpec;
import dev.finetune.api.trainer.TrainerContract;
import dev.finetune.trainer.model.Generator;
import dev.finetune.trainer.model.Model;
import dev.finetune.trainer.model.TextTokenizer;
import dev.finetune.trainer.data.PromptFormat;
import dev.finetune.trainer.data.Record;
import dev.finetune.trainer.train.TrainingListener;
import dev.finetune.trainer.observe.Observability;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.List;

/**
 * After training: the best weights answer every test-split prompt (greedy at temperature 0, else sampled with
 * temperature and top-k from the spec's seed; at most maxNewTokens, stopping at any of the model's end tokens) into
 * {@code responses.jsonl}, one JSON object a line:
 * {@code {"instruction", "input", "output", "model_response"}} (the reference's chapter 7 keys; for a conversation
 * also {@code "messages"}, the turns before the held-out assistant turn, which {@code "output"} holds), plus
 * {@code "score"} (0-100) or {@code "score_error"} when a judge is configured. A judge failure is counted in
 * {@link EvaluationStatus#scoreFailures}, never fatal. After three unreachable answers in a row (timeouts,
 * refused connections) the judge is given up and the remaining answers are counted as failures unsent, so a
 * dead endpoint costs minutes, not hours.
 */
public final class Evaluation {
  private static final ObjectMapper JSON = new ObjectMapper();
  /** Unreachable judge answers in a row after which the rest are not sent. */
  static final int GIVE_UP_AFTER = 3;

  private Evaluation() {}

  /** Produces the answer to one prompt; {@code index} is the test record's position. */
  @FunctionalInterface
  public interface Answerer {
    String answer(String prompt, int index);
  }

  /** One line of responses.jsonl. */
  public record Response(Record record, String modelResponse, Integer score, String scoreError) {}

  /**
   * The evaluation step of a finished run, as the trainer's main calls it: skipped when training was
   * interrupted, evaluation is disabled or no epoch finished; otherwise answers the {@code test} split with the
   * best model, reports to {@code obs} and returns the status (null when skipped or failed). Never throws: a
   * failure is printed and added to the summary's message.
   */
  public static EvaluationStatus afterTraining(TrainingListener.Result result, List<Record> test, Observability obs) {
    try {
      FineTuneJob job = obs.job();
      if (result == null || job == null || result.outcome() == TrainingListener.Outcome.INTERRUPTED) {
        return null;
      }
      EvaluationSpec spec = job.getSpec().evaluation == null ? new EvaluationSpec() : job.getSpec().evaluation;
      if (Boolean.FALSE.equals(spec.enabled)) {
        return null;
      }
      if (result.bestModel() == null) {
        obs.evaluationFailed("no best model to answer the test split with (no epoch finished)");
        return null;
      }
      obs.evaluationStarted(test.size());
      EvaluationStatus status = run(spec, job.getSpec().dataset, result.bestModel(), test, obs.outputDir(),
          System.getenv(TrainerContract.ENV_JUDGE_API_KEY));
      obs.evaluationFinished(status);
      return status;
    } catch (Exception | OutOfMemoryError e) {
      System.err.println("evaluation failed (the trained model is kept): " + e);
      e.printStackTrace();
      obs.evaluationFailed(e.toString());
      return null;
    }
  }

  /**
   * Loads the HF-layout model in {@code modelDir} and evaluates with it, in the dataset's prompt format (a chat
   * template the job gave is in the directory: the trainer saves it with the model).
   */
  public static EvaluationStatus run(EvaluationSpec spec, DatasetSpec dataset, Path modelDir, List<Record> test,
      Path outputDir, String judgeApiKey) throws IOException {
    try (NDManager manager = NDManager.newBaseManager(); Model model = Model.load(modelDir, manager)) {
      long start = System.nanoTime();
      Generator generator = new Generator(model);
      PromptFormat format = PromptFormat.of(dataset, model.tokenizer(), model.tokenizerConfig());
      Answerer answerer = answerer(generator, model.tokenizer(), format, test, spec);
      Answerer timed = (prompt, index) -> {
        String answer = answerer.answer(prompt, index);
        if (index == test.size() - 1) {
          double s = (System.nanoTime() - start) / 1e9;
          System.out.printf(java.util.Locale.ROOT, "evaluation: generated %d new tokens in %.1f s (%.1f tokens/s)%n",
              generator.generatedTokens(), s, generator.generatedTokens() / Math.max(s, 1e-9));
        }
        return answer;
      };
      return run(spec, format, timed, test, outputDir, judge(spec, judgeApiKey));
    }
  }

  /**
   * Greedy or sampled decoding with the model, as the spec says, from the format's prompt ids of test record
   * {@code index}; each prompt gets seed + its index.
   */
  public static Answerer answerer(Generator generator, TextTokenizer tokenizer, PromptFormat format, List<Record> test,
      EvaluationSpec spec) {
    return (prompt, index) -> tokenizer.decode(generator.generateTokens(format.promptIds(test.get(index)),
        spec.maxNewTokens, spec.temperature, spec.topK, spec.seed + index, true));
  }

  /** The judge the spec names, or null. */
  public static JudgeClient judge(EvaluationSpec spec, String apiKey) {
    return spec.judge == null ? null : new JudgeClient(spec.judge, apiKey, spec.seed);
  }

  /** Answers, writes responses.jsonl, judges when a judge is given (rewriting the file with the scores). */
  public static EvaluationStatus run(EvaluationSpec spec, PromptFormat format, Answerer answerer, List<Record> test,
      Path outputDir, JudgeClient judge) throws IOException {
    Path file = outputDir.resolve(TrainerContract.RESPONSES_FILE);
    long start = System.nanoTime();
    List<Response> responses = answerAll(format, answerer, test, start);
    write(file, responses);
    EvaluationStatus status = new EvaluationStatus();
    status.responses = responses.size();
    status.responsesPath = TrainerContract.RESPONSES_FILE;
    status.exactMatches = (int) responses.stream().filter(Evaluation::exactMatch).count();
    status.exactMatchRate = responses.isEmpty() ? null : (double) status.exactMatches / responses.size();
    System.out.printf("evaluation: exact match %d/%d (%s) on the test split%n", status.exactMatches, responses.size(),
        status.exactMatchRate == null ? "-" : String.format("%.1f%%", 100 * status.exactMatchRate));
    if (judge == null) {
      System.out.printf("evaluation: %d answers in %s (%.0f s)%n", responses.size(), file, (System.nanoTime() - start) / 1e9);
      return status;
    }
    System.out.println("evaluation: scoring " + responses.size() + " answers with the judge at " + judge.endpoint());
    List<Response> scored = new ArrayList<>(responses.size());
    int ok = 0;
    int failures = 0;
    long sum = 0;
    int unreachableInARow = 0;
    String lastError = null;
    for (Response r : responses) {
      JudgeClient.Score s;
      boolean sent = unreachableInARow < GIVE_UP_AFTER;
      if (!sent) {
        s = new JudgeClient.Score(null, "not sent: the judge was unreachable " + GIVE_UP_AFTER + " times in a row (last: "
            + lastError + ")");
      } else {
        s = judge.score(r.record(), r.modelResponse());
        unreachableInARow = s.unreachable() ? unreachableInARow + 1 : 0;
      }
      if (s.ok()) {
        ok++;
        sum += s.value();
      } else {
        failures++;
        if (sent) {
          lastError = s.error();
        }
      }
      scored.add(new Response(r.record(), r.modelResponse(), s.value(), s.error()));
    }
    write(file, scored);
    status.scored = ok;
    status.scoreFailures = failures;
    status.meanScore = ok == 0 ? null : (double) sum / ok;
    System.out.printf("evaluation: %d answers, %d scored (mean %s), %d not scored%s (%.0f s)%n", responses.size(), ok,
        status.meanScore == null ? "-" : String.format("%.1f", status.meanScore), failures,
        lastError == null ? "" : "; last problem: " + lastError, (System.nanoTime() - start) / 1e9);
    return status;
  }

  /** The answerer's answer to every test prompt, in order, with a progress line every 25. */
  private static List<Response> answerAll(PromptFormat format, Answerer answerer, List<Record> test, long start) {
    List<Response> responses = new ArrayList<>(test.size());
    System.out.println("evaluation: answering " + test.size() + " test prompts");
    for (int i = 0; i < test.size(); i++) {
      Record r = test.get(i);
      String answer = answerer.answer(format.prompt(r), i).strip();
      responses.add(new Response(r, answer, null, null));
      if ((i + 1) % 25 == 0) {
        System.out.printf("evaluation: %d/%d answered (%.0f s)%n", i + 1, test.size(), (System.nanoTime() - start) / 1e9);
      }
    }
    return responses;
  }

  /** The answer is the expected output, both stripped of surrounding white space. */
  static boolean exactMatch(Response r) {
    return r.modelResponse() != null && r.modelResponse().strip().equals(r.record().output().strip());
  }

  /** responses.jsonl through a temporary file and a rename. */
  static void write(Path file, List<Response> responses) throws IOException {
    StringBuilder sb = new StringBuilder();
    for (Response r : responses) {
      ObjectNode line = JSON.createObjectNode();
      line.put("instruction", r.record().instruction());
      line.put("input", r.record().input() == null ? "" : r.record().input());
      line.put("output", r.record().output());
      if (r.record().isConversation()) {
        line.set("messages", JSON.valueToTree(r.record().context())); // what the answer continues
      }
      line.put("model_response", r.modelResponse());
      if (r.score() != null) {
        line.put("score", r.score());
      }
      if (r.scoreError() != null) {
        line.put("score_error", r.scoreError());
      }
      sb.append(JSON.writeValueAsString(line)).append('\n');
    }
    Files.createDirectories(file.toAbsolutePath().getParent());
    Path tmp = file.resolveSibling("." + file.getFileName() + ".tmp");
    Files.writeString(tmp, sb.toString(), StandardCharsets.UTF_8);
    Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
  }
}
