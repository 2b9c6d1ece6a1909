package dev.finetune.api;

import static org.assertj.core.api.Assertions.assertThat;

import dev.finetune.api.testing.CrdSchema;
import dev.finetune.api.testing.Repo;
import dev.finetune.api.validation.FineTuneJobValidator;
import dev.finetune.api.validation.InvalidJobException;
import dev.finetune.api.validation.Problem;
import java.io.IOException;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Broken jobs (src/test/resources/broken) are rejected with a message that names the field. Each file says
 * in its header what the message must be ({@code # expect:}), whether the CRD's OpenAPI schema alone rejects it
 * ({@code # schema: rejects|accepts}), and, for what only the CRD's CEL rules catch, what the API server says
 * ({@code # server:}; RealApiServerTest applies each file).
 */
class BrokenJobsTest {

  /** A broken job and what it must produce. */
  record Broken(Path file, String expect, boolean schemaRejects, String server) {
    @Override
    public String toString() {
      return file.getFileName().toString();
    }

    static Broken read(Path file) {
      try {
        List<String> lines = Files.readAllLines(file);
        String expect = header(lines, "# expect: ");
        boolean schemaRejects = header(lines, "# schema: ").startsWith("rejects");
        String server = schemaRejects ? null : header(lines, "# server: ");
        return new Broken(file, expect, schemaRejects, server);
      } catch (IOException e) {
        throw new java.io.UncheckedIOException(e);
      }
    }

    private static String header(List<String> lines, String prefix) {
      return lines.stream().filter(l -> l.startsWith(prefix)).map(l -> l.substring(prefix.length())).findFirst()
          .orElseThrow(() -> new IllegalStateException("missing '" + prefix + "' line"));
    }
  }

  static List<Broken> brokenJobs() throws IOException, URISyntaxException {
    Path dir = Path.of(BrokenJobsTest.class.getResource("/broken").toURI());
    try (Stream<Path> files = Files.list(dir)) {
      return files.filter(p -> p.toString().endsWith(".yaml")).sorted().map(Broken::read).toList();
    }
  }

  @ParameterizedTest
  @MethodSource("brokenJobs")
  void rejectedWithAMessageThatNamesTheField(Broken broken) {
    List<Problem> problems;
    try {
      problems = FineTuneJobValidator.validate(FineTuneJobs.read(broken.file()));
    } catch (InvalidJobException e) {
      problems = e.problems();
    } catch (IOException e) {
      throw new java.io.UncheckedIOException(e);
    }
    assertThat(problems).extracting(Problem::toString).contains(broken.expect());
  }

  @ParameterizedTest
  @MethodSource("brokenJobs")
  void theSchemaRejectsWhatItCanExpress(Broken broken) throws IOException {
    List<String> complaints = CrdSchema.load(Repo.crd()).check(Files.readString(broken.file()));
    if (broken.schemaRejects()) {
      String field = broken.expect().substring(0, broken.expect().indexOf(':'));
      String leaf = field.contains(".") ? field.substring(field.lastIndexOf('.') + 1) : field;
      assertThat(complaints).as("schema complaints").isNotEmpty().anyMatch(c -> c.contains(leaf));
    } else {
      assertThat(complaints).isEmpty();
    }
  }
}
