package dev.finetune.trainer;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.finetune.api.trainer.TrainerContract.ExitCodes;
import dev.finetune.trainer.model.Downloads;
import java.net.URI;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A failure that may pass (no network) exits 1, the retry code, with one paragraph that says so, and leaves no
 * half-written cache folder behind. Hosts under .invalid never resolve (RFC 2606), network or not.
 */
class TransientFailureTest {

  @Test
  void anUnreachableDatasetUrlIsARetryWithAParagraphAndNoEmptyCache(@TempDir Path dir) throws Exception {
    Path job = Jobs.write(dir, """
        apiVersion: finetune.dev/v1alpha1
        kind: FineTuneJob
        metadata: {name: offline}
        spec:
          model: {scratch: {layers: 1, embeddingDim: 16, heads: 2, contextLength: 64}}
          dataset: {url: "https://data.example.invalid/tasks.jsonl", maxLength: 64}
        """);
    MainTest.Errors e = new MainTest.Errors();
    assertThat(MainTest.run(e, job.toString())).isEqualTo(ExitCodes.CRASHED);
    assertThat(e.errors.get(0)).isInstanceOf(TransientException.class);
    // "the host name does not resolve", or with a resolver that answers everything, "the connection was refused"
    assertThat(e.errors.get(0).getMessage()).startsWith("cannot download https://data.example.invalid/tasks.jsonl: the ")
        .contains(". This may pass: the Job retries (exit code 1) and the run resumes where it stopped")
        .doesNotContain("\n", "Exception");
    assertThat(dir.resolve("runs/offline/data-cache")).doesNotExist();
  }

  @Test
  void aFailedModelDownloadLeavesNoEmptyModelCache(@TempDir Path dir) {
    Path target = dir.resolve("run/model-cache/owner_model@main/config.json");
    assertThatThrownBy(() -> Downloads.fetch(URI.create("https://hub.example.invalid/owner/model/config.json"), target))
        .isInstanceOf(TransientException.class);
    assertThat(dir.resolve("run")).doesNotExist();
  }
}
