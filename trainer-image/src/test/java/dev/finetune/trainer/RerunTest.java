package dev.finetune.trainer;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.finetune.api.testing.TinyJob;
import dev.finetune.api.trainer.TrainerContract;
import dev.finetune.api.trainer.TrainerContract.ExitCodes;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import dev.finetune.trainer.train.TrainingListener;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A rerun says what it does: it continues only the run its checkpoints were trained for, refuses a spec that
 * changes the result (naming the fields and the two ways out), trains on past a finished run only when asked,
 * and does not answer the test split again when nothing changed.
 */
class RerunTest {
  /** The tiny job, cut to 40 records (4 test prompts) answered with at most 4 tokens each. */
  static final Map<String, Object> SMALL = Map.of("spec.dataset.synthetic.size", 40, "spec.evaluation.maxNewTokens", 4);
  static final String JOB = job(1, Map.of());

  /** The job of these tests with {@code changes} on top, training {@code epochs}. */
  static String job(int epochs, Map<String, Object> changes) {
    Map<String, Object> all = new java.util.HashMap<>(SMALL);
    all.putAll(changes);
    return TinyJob.yamlWith("rerun", epochs, all);
  }

  /** Runs Main and returns its exit code and what it printed. */
  record Ran(int code, String out, MainTest.Errors errors) {}

  static Ran main(String... args) {
    return main(new TrainingListener() {}, args);
  }

  /** {@link #main(String...)} with one more listener, called after the console printer. */
  static Ran main(TrainingListener extra, String... args) {
    PrintStream stdout = System.out;
    ByteArrayOutputStream captured = new ByteArrayOutputStream();
    System.setOut(new PrintStream(captured, true, StandardCharsets.UTF_8));
    MainTest.Errors e = new MainTest.Errors();
    try {
      return new Ran(Main.run(args, List.of(e, extra), null), captured.toString(StandardCharsets.UTF_8), e);
    } finally {
      System.setOut(stdout);
      System.out.print(captured.toString(StandardCharsets.UTF_8));
    }
  }

  static Path finishedRun(Path dir) throws Exception {
    Path job = Jobs.write(dir, JOB);
    assertThat(main(job.toString()).code()).isEqualTo(ExitCodes.SUCCEEDED);
    return job;
  }

  @Test
  void aChangedSpecIsRefusedWithTheFieldsAndTheWaysOut(@TempDir Path dir) throws Exception {
    Path job = finishedRun(dir);
    Path run = dir.resolve("runs/rerun");
    Map<String, String> before = BadInputTest.snapshot(run);
    byte[] record = Files.readAllBytes(run.resolve(TrainerContract.SUMMARY_FILE));
    Jobs.write(dir, job(1, Map.of("spec.training.learningRate", 0.001, "spec.dataset.synthetic.size", 60)));
    Ran r = main(job.toString());
    assertThat(r.code()).isEqualTo(ExitCodes.BAD_JOB);
    assertThat(r.errors().errors.get(0).getMessage()).isEqualTo("the run in " + run + " was trained with a different spec:\n"
        + "  spec.dataset.synthetic.size: 40, now 60\n"
        + "  spec.training.learningRate: 0.003, now 0.001\n"
        + "To train with the new spec, write to a new run folder (--output DIR, or another metadata.name or"
        + " spec.checkpoints.path), or rerun with --restart, which moves this run aside to rerun.old-TIMESTAMP and starts over");
    assertThat(BadInputTest.snapshot(run)).isEqualTo(before);
    // The refusal is the command's answer (stderr, exit code, termination log); the finished run's record stays.
    assertThat(Files.readAllBytes(run.resolve(TrainerContract.SUMMARY_FILE))).isEqualTo(record);
    JsonNode summary = new ObjectMapper().readTree(record);
    assertThat(summary.path("phase").asText()).isEqualTo("Succeeded");
    assertThat(summary.path("epoch").asInt()).isEqualTo(1);

    // --restart keeps the old run aside, untouched, and trains the new spec from scratch
    assertThat(main(job.toString(), "--restart").code()).isEqualTo(ExitCodes.SUCCEEDED);
    Path aside;
    try (Stream<Path> s = Files.list(dir.resolve("runs"))) {
      aside = s.filter(p -> p.getFileName().toString().startsWith("rerun.old-")).findFirst().orElseThrow();
    }
    assertThat(BadInputTest.snapshot(aside)).isEqualTo(before);
    assertThat(Files.readString(run.resolve(TrainerContract.HISTORY_FILE)).lines()).hasSize(1);
  }

  @Test
  void moreEpochsOnAFinishedRunIsAnExplicitChoice(@TempDir Path dir) throws Exception {
    Path job = finishedRun(dir);
    Path run = dir.resolve("runs/rerun");
    Map<String, String> before = BadInputTest.snapshot(run);
    byte[] record = Files.readAllBytes(run.resolve(TrainerContract.SUMMARY_FILE));
    Jobs.write(dir, job(2, Map.of()));
    Ran refused = main(job.toString());
    assertThat(refused.code()).isEqualTo(ExitCodes.BAD_JOB);
    assertThat(refused.errors().errors.get(0).getMessage()).startsWith("the run in " + run + " finished its 1 epochs; the"
        + " spec now asks for 2. Training on is a choice: rerun with --more-epochs (the cosine learning-rate schedule is"
        + " then computed over 2 epochs, so the rate rises again)");
    assertThat(BadInputTest.snapshot(run)).isEqualTo(before);
    assertThat(Files.readAllBytes(run.resolve(TrainerContract.SUMMARY_FILE))).isEqualTo(record);

    Ran more = main(job.toString(), "--more-epochs");
    assertThat(more.code()).isEqualTo(ExitCodes.SUCCEEDED);
    assertThat(Files.readString(run.resolve(TrainerContract.HISTORY_FILE)).lines()).hasSize(2);
  }

  @Test
  void aFinishedUnchangedRunDoesNotAnswerTheTestSplitAgain(@TempDir Path dir) throws Exception {
    Path job = finishedRun(dir);
    Path run = dir.resolve("runs/rerun");
    Map<String, String> before = BadInputTest.snapshot(run);
    long answered = Files.getLastModifiedTime(run.resolve(TrainerContract.RESPONSES_FILE)).toMillis();
    Ran again = main(job.toString());
    assertThat(again.code()).isEqualTo(ExitCodes.SUCCEEDED);
    assertThat(again.out()).contains("already finished", "evaluation: unchanged since the run finished")
        .doesNotContain("evaluation: answering");
    assertThat(Files.getLastModifiedTime(run.resolve(TrainerContract.RESPONSES_FILE)).toMillis()).isEqualTo(answered);
    assertThat(BadInputTest.snapshot(run)).isEqualTo(before);
    JsonNode summary = new ObjectMapper().readTree(run.resolve(TrainerContract.SUMMARY_FILE).toFile());
    assertThat(summary.path("phase").asText()).isEqualTo("Succeeded");
    assertThat(summary.path("evaluation").path("responses").asInt()).isEqualTo(4);
  }

  @Test
  void aChangedEvaluationAnswersAgainOnceAndIsRecordedForTheNextRerun(@TempDir Path dir) throws Exception {
    Path job = finishedRun(dir);
    Path run = dir.resolve("runs/rerun");
    Map<String, String> trained = BadInputTest.snapshot(run.resolve(TrainerContract.BEST_DIR));

    // a changed evaluation answers again, without training
    Jobs.write(dir, job(1, Map.of("spec.evaluation.maxNewTokens", 6)));
    Ran reevaluated = main(job.toString());
    assertThat(reevaluated.code()).isEqualTo(ExitCodes.SUCCEEDED);
    assertThat(reevaluated.out()).contains("already finished", "evaluation: answering 4 test prompts");
    assertThat(BadInputTest.snapshot(run.resolve(TrainerContract.BEST_DIR))).isEqualTo(trained);
    assertThat(Files.readString(run.resolve(TrainerContract.HISTORY_FILE)).lines()).hasSize(1);

    // the same settings again: the answers stand, and nothing but summary.json is written
    Map<String, String> answered = BadInputTest.snapshot(run);
    Ran again = main(job.toString());
    assertThat(again.code()).isEqualTo(ExitCodes.SUCCEEDED);
    assertThat(again.out()).contains("already finished", "evaluation: unchanged since the run finished")
        .doesNotContain("evaluation: answering");
    assertThat(BadInputTest.snapshot(run)).isEqualTo(answered);
    JsonNode summary = new ObjectMapper().readTree(run.resolve(TrainerContract.SUMMARY_FILE).toFile());
    assertThat(summary.path("phase").asText()).isEqualTo("Succeeded");
    assertThat(summary.path("evaluation").path("responses").asInt()).isEqualTo(4);

    // and going back to the first settings answers again
    Jobs.write(dir, JOB);
    assertThat(main(job.toString()).out()).contains("evaluation: answering 4 test prompts");
  }
}
