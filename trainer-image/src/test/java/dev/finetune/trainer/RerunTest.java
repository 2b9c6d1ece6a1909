package dev.finetune.trainer;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.finetune.api.trainer.TrainerContract;
import dev.finetune.api.trainer.TrainerContract.ExitCodes;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
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
  static final String JOB = """
      apiVersion: finetune.dev/v1alpha1
      kind: FineTuneJob
      metadata: {name: rerun}
      spec:
        model: {scratch: {layers: 1, embeddingDim: 16, heads: 2, contextLength: 64, seed: 5}}
        dataset: {synthetic: {size: 40, seed: 3}, promptStyle: phi3, maxLength: 64}
        training: {epochs: 1, batchSize: 8, learningRate: 0.003, schedule: cosine}
        evaluation: {maxNewTokens: 4}
      """;

  /** Runs Main and returns its exit code and what it printed. */
  record Ran(int code, String out, MainTest.Errors errors) {}

  static Ran main(String... args) {
    PrintStream stdout = System.out;
    ByteArrayOutputStream captured = new ByteArrayOutputStream();
    System.setOut(new PrintStream(captured, true, StandardCharsets.UTF_8));
    MainTest.Errors e = new MainTest.Errors();
    try {
      return new Ran(MainTest.run(e, args), captured.toString(StandardCharsets.UTF_8), e);
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
    Jobs.write(dir, JOB.replace("learningRate: 0.003", "learningRate: 0.001").replace("size: 40", "size: 60"));
    Ran r = main(job.toString());
    assertThat(r.code()).isEqualTo(ExitCodes.BAD_JOB);
    assertThat(r.errors().errors.get(0).getMessage()).isEqualTo("the run in " + run + " was trained with a different spec:\n"
        + "  spec.dataset.synthetic.size: 40, now 60\n"
        + "  spec.training.learningRate: 0.003, now 0.001\n"
        + "To train with the new spec, write to a new run folder (--output DIR, or another metadata.name or"
        + " spec.checkpoints.path), or rerun with --restart, which moves this run aside to rerun.old-TIMESTAMP and starts over");
    assertThat(BadInputTest.snapshot(run)).isEqualTo(before);
    JsonNode summary = new ObjectMapper().readTree(run.resolve(TrainerContract.SUMMARY_FILE).toFile());
    assertThat(summary.path("phase").asText()).isEqualTo("Failed");
    assertThat(summary.path("reason").asText()).isEqualTo("InvalidSpec");

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
    Jobs.write(dir, JOB.replace("epochs: 1,", "epochs: 2,"));
    Ran refused = main(job.toString());
    assertThat(refused.code()).isEqualTo(ExitCodes.BAD_JOB);
    assertThat(refused.errors().errors.get(0).getMessage()).startsWith("the run in " + run + " finished its 1 epochs; the"
        + " spec now asks for 2. Training on is a choice: rerun with --more-epochs (the cosine learning-rate schedule is"
        + " then computed over 2 epochs, so the rate rises again)");
    assertThat(BadInputTest.snapshot(run)).isEqualTo(before);

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

    // a changed evaluation answers again, without training
    Jobs.write(dir, JOB.replace("maxNewTokens: 4", "maxNewTokens: 6"));
    Ran reevaluated = main(job.toString());
    assertThat(reevaluated.code()).isEqualTo(ExitCodes.SUCCEEDED);
    assertThat(reevaluated.out()).contains("already finished", "evaluation: answering 4 test prompts");
  }
}
