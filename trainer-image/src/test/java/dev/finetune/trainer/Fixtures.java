package dev.finetune.trainer;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.finetune.api.testing.Skips;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/** Paths of the shared fixtures (Surefire passes {@code finetune.shared}). */
public final class Fixtures {
  private Fixtures() {}

  public static Path shared() {
    return Path.of(System.getProperty("finetune.shared", "../../shared")).toAbsolutePath().normalize();
  }

  public static Path tinyGpt2() {
    return fixture("tiny-gpt2");
  }

  public static Path tinyLlama() {
    return fixture("tiny-llama");
  }

  public static Path gpt2Tokenizer() {
    return fixture("gpt2-tokenizer");
  }

  /** A fixture folder; a test that needs a missing one is skipped with a line that names it. */
  public static Path fixture(String name) {
    Path p = shared().resolve("fixtures").resolve(name);
    Skips.unless(Files.isDirectory(p), "no PyTorch fixture " + p + " (it comes with ../shared beside the repository;"
        + " -Dfinetune.shared=DIR points elsewhere)");
    return p;
  }

  public static JsonNode json(Path p) throws IOException {
    return new ObjectMapper().readTree(p.toFile());
  }

  public static long[][] longs2(JsonNode n) {
    long[][] r = new long[n.size()][];
    for (int i = 0; i < n.size(); i++) {
      r[i] = new long[n.get(i).size()];
      for (int j = 0; j < r[i].length; j++) {
        r[i][j] = n.get(i).get(j).asLong();
      }
    }
    return r;
  }
}
