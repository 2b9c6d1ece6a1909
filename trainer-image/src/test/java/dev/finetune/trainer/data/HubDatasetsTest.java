package dev.finetune.trainer.data;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.finetune.api.DatasetSpec;
import dev.finetune.trainer.BadDataException;
import dev.finetune.trainer.BadJobException;
import dev.finetune.trainer.hub.DownloadListener;
import dev.finetune.trainer.hub.FakeHub;
import dev.finetune.trainer.hub.HubSettings;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Datasets from a (fake) hub: named files, a split of the Parquet conversion, renamed columns, bad shapes. */
class HubDatasetsTest {
  private FakeHub fake;
  private FakeHub.Repo parquet;
  @TempDir
  Path dir;

  @BeforeEach
  void start() throws Exception {
    fake = new FakeHub();
    FakeHub.Repo repo = fake.dataset("org/alpaca")
        .file("data/train.jsonl", ("{\"q\": \"Say hi\", \"a\": \"hi\"}\n{\"q\": \"Say bye\", \"a\": \"bye\"}\n")
            .getBytes(StandardCharsets.UTF_8))
        .file("data/bad.jsonl", "{\"q\": \"Say hi\", \"a\": 3}\n".getBytes(StandardCharsets.UTF_8));
    parquet = repo.branch(HubDatasets.PARQUET_BRANCH)
        .file("default/train/0000.parquet", fixture("alpaca.parquet"))
        .file("default/train/0001.parquet", fixture("alpaca-zstd.parquet"))
        .file("default/test/0000.parquet", fixture("alpaca-gzip.parquet"))
        .file("other/train/0000.parquet", fixture("messages.parquet"));
  }

  @AfterEach
  void stop() {
    fake.close();
  }

  private static byte[] fixture(String name) throws Exception {
    return Files.readAllBytes(Path.of(HubDatasetsTest.class.getResource("/parquet/" + name).toURI()));
  }

  private Datasets.Splits load(DatasetSpec.HubDataset hub, Map<String, String> columns) throws Exception {
    DatasetSpec spec = new DatasetSpec();
    spec.hub = hub;
    spec.columns = columns;
    spec.split.shuffle = false;
    HubSettings settings = HubSettings.from(Map.of("HF_ENDPOINT", fake.endpoint()));
    return Datasets.load(spec, dir, dir.resolve("run"), settings, DownloadListener.NONE);
  }

  private static DatasetSpec.HubDataset hub(List<String> files, String split) {
    DatasetSpec.HubDataset h = new DatasetSpec.HubDataset();
    h.repo = "org/alpaca";
    h.files = files;
    h.split = split;
    return h;
  }

  @Test
  void aSplitOfTheParquetConversionReadsEachOfItsFilesInOrder() throws Exception {
    Datasets.Splits s = load(hub(null, "train"), null);
    List<Record> all = new java.util.ArrayList<>(s.train());
    all.addAll(s.test());
    all.addAll(s.validation());
    assertThat(all).hasSize(10);
    assertThat(all.get(0).instruction()).isEqualTo("Translate to French.");
    assertThat(all.get(2).output()).isEqualTo("Bien 🙂");
    assertThat(s.source()).isEqualTo("hub dataset org/alpaca@refs/convert/parquet (commit "
        + parquet.commit() + "): default/train/0000.parquet, default/train/0001.parquet");
    // cached in the HF layout, under the run folder when the environment names no cache
    assertThat(dir.resolve("run/data-cache/datasets--org--alpaca/snapshots/" + parquet.commit()
        + "/default/train/0000.parquet")).exists();
  }

  @Test
  void namedFilesWithRenamedColumns() throws Exception {
    Datasets.Splits s = load(hub(List.of("data/train.jsonl"), null), Map.of("instruction", "q", "output", "a"));
    assertThat(s.train().size() + s.validation().size() + s.test().size()).isEqualTo(2);
    assertThat(s.train().get(0).instruction()).isEqualTo("Say hi");
  }

  @Test
  void badShapesNameFileRowAndColumn() throws Exception {
    assertThatThrownBy(() -> load(hub(List.of("data/bad.jsonl"), null), Map.of("instruction", "q", "output", "a")))
        .isInstanceOf(BadDataException.class)
        .hasMessageContaining("data/bad.jsonl line 1: field 'a' (spec.dataset.columns.output) must be a string, not number");
    assertThatThrownBy(() -> load(hub(null, "train"), Map.of("instruction", "prompt")))
        .isInstanceOf(BadDataException.class)
        .hasMessageContaining("default/train/0000.parquet row 0: field 'prompt' (spec.dataset.columns.instruction) is missing")
        .hasMessageContaining("the file's columns: instruction, input, output");
  }

  @Test
  void anUnknownSplitListsTheOnesThereAre() {
    DatasetSpec.HubDataset h = hub(null, "validation");
    assertThatThrownBy(() -> load(h, null)).isInstanceOf(BadDataException.class)
        .hasMessage("dataset org/alpaca has no split 'validation' in config 'default' in its Parquet conversion; it has:"
            + " default/test, default/train, other/train (set spec.dataset.hub.config and split to one of them)");
    h.revision = "v1";
    h.split = "train";
    assertThatThrownBy(() -> load(h, null)).isInstanceOf(BadJobException.class)
        .hasMessageContaining("the hub converts only the main branch to Parquet");
    assertThatThrownBy(() -> load(hub(List.of("data/train.csv"), null), null)).isInstanceOf(BadJobException.class)
        .hasMessageContaining("'data/train.csv' is not .json, .jsonl or .parquet");
  }

  @Test
  void olderConversionsNameTheSplitInTheFileName() {
    List<String> files = List.of("default/alpaca-train.parquet", "default/alpaca-test.parquet",
        "default/alpaca-train-00000-of-00002.parquet", "default/alpaca-train-00001-of-00002.parquet", "README.md");
    assertThat(HubDatasets.split(files, "default", "train")).containsExactly("default/alpaca-train-00000-of-00002.parquet",
        "default/alpaca-train-00001-of-00002.parquet", "default/alpaca-train.parquet");
    assertThat(HubDatasets.splits(files)).containsExactly("default/test", "default/train");
  }
}
