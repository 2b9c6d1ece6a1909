package dev.finetune.api;

import static org.assertj.core.api.Assertions.assertThat;

import dev.finetune.api.testing.CrdSchema;
import dev.finetune.api.testing.Repo;
import dev.finetune.api.validation.FineTuneJobValidator;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/** Every example works as written: it passes the CRD's schema and the semantic validator. */
class ExamplesTest {

  static List<Path> examples() throws IOException {
    try (Stream<Path> files = Files.list(Repo.examples())) {
      List<Path> list = files.filter(p -> p.toString().endsWith(".yaml")).sorted().toList();
      assertThat(list).as("examples/*.yaml").isNotEmpty();
      return list;
    }
  }

  @ParameterizedTest
  @MethodSource("examples")
  void passesTheCrdSchema(Path example) throws IOException {
    assertThat(CrdSchema.load(Repo.crd()).check(Files.readString(example))).isEmpty();
  }

  @ParameterizedTest
  @MethodSource("examples")
  void passesTheValidator(Path example) throws IOException {
    FineTuneJob job = FineTuneJobs.read(example);
    assertThat(FineTuneJobValidator.validate(job)).isEmpty();
    assertThat(job.getMetadata().getName()).isNotBlank();
  }
}
