package dev.finetune.trainer.hub;

import dev.finetune.api.testing.TinyJob;
import dev.finetune.trainer.Fixtures;
import dev.finetune.trainer.Jobs;
import dev.finetune.trainer.Main;
import dev.finetune.trainer.train.TrainingListener;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Random;

/**
 * The figures of the hub downloads, against a fake hub on loopback: the bytes sent for a file whose first transfer
 * drops halfway (the resume saves the rest), and how long a job takes to start training on a model it downloads
 * against one already in the shared cache. Run by bench/hub-bench.sh.
 */
public final class HubBench {
  private HubBench() {}

  public static void main(String[] args) throws Exception {
    int megabytes = args.length > 0 ? Integer.parseInt(args[0]) : 200;
    Path dir = Files.createTempDirectory("hub-bench-");
    try (FakeHub fake = new FakeHub()) {
      byte[] weights = new byte[megabytes << 20];
      new Random(1).nextBytes(weights);
      fake.model("bench/big").file("model.safetensors", weights);
      fake.dropAfter("model.safetensors", weights.length / 2, 1);
      HubSettings settings = HubSettings.from(Map.of("HF_ENDPOINT", fake.endpoint()));
      long t0 = System.nanoTime();
      new Hub(settings, dir.resolve("cache"), RepoKind.MODEL, "bench/big", "main", null).file("model.safetensors");
      double seconds = (System.nanoTime() - t0) / 1e9;
      System.out.printf(Locale.ROOT, "dropped at half, resumed: %d bytes sent for a %d-byte file (%.3fx), %.2f s%n",
          fake.bytesSent("model.safetensors"), weights.length, fake.bytesSent("model.safetensors") / (double) weights.length,
          seconds);

      FakeHub.Repo model = fake.model("finetune-test/tiny-gpt2");
      for (String f : new String[] {"config.json", "model.safetensors", "tokenizer.json"}) {
        model.file(f, Files.readAllBytes(Fixtures.tinyGpt2().resolve(f)));
      }
      HubSettings shared = settings.withCache(dir.resolve("shared"));
      // a warm-up job (a scratch model) first, so that the engine's start-up counts in none of the figures
      Main.run(new String[] {Jobs.write(dir, TinyJob.yamlWith("warmup", 1, Map.of("spec.evaluation.maxNewTokens", 1)))
          .toString()}, List.of(), t -> t.hub(shared));
      for (String name : new String[] {"first", "second", "third"}) {
        Path job = Jobs.write(dir, TinyJob.yamlWith(name, 1, Map.of("spec.model", Map.of("hub", "finetune-test/tiny-gpt2"),
            "spec.evaluation.maxNewTokens", 1)));
        long start = System.nanoTime();
        long[] started = new long[1];
        int requests = fake.requests().size();
        TrainingListener atStart = new TrainingListener() {
          @Override
          public void onStart(RunInfo run) {
            started[0] = System.nanoTime();
          }
        };
        Main.run(new String[] {job.toString()}, List.of(atStart), t -> t.hub(shared));
        System.out.printf(Locale.ROOT, "%s job on tiny-gpt2: training started %.3f s after the run began, %d requests"
            + " to the hub%n", name, (started[0] - start) / 1e9, fake.requests().size() - requests);
      }
    } finally {
      try (var files = Files.walk(dir)) {
        files.sorted(java.util.Comparator.reverseOrder()).forEach(f -> f.toFile().delete());
      }
    }
  }
}
