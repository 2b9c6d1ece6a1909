package dev.finetune.trainer;

import static org.assertj.core.api.Assertions.assertThat;

import dev.finetune.api.testing.Repo;
import dev.finetune.api.trainer.TrainerContract.ExitCodes;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/** The trainer runs on Linux x86-64 only, and says so elsewhere instead of failing to load libtorch. */
class PlatformTest {
  private static final Map<String, String> NO_ENV = Map.of();

  @Test
  void linuxX8664Runs() {
    assertThat(Platform.unsupported("Linux", "amd64", NO_ENV)).isNull();
    assertThat(Platform.unsupported("Linux", "x86_64", NO_ENV)).isNull();
  }

  @Test
  void linuxAarch64IsRefusedInWords() {
    assertThat(Platform.unsupported("Linux", "aarch64", NO_ENV))
        .startsWith("this trainer runs on Linux x86-64 only, and this is Linux aarch64")
        .contains("container image", "docker run --platform linux/amd64", "a Linux x86-64 machine")
        .doesNotContain("WSL");
  }

  @Test
  void macAppleSiliconAndIntelAreRefused() {
    assertThat(Platform.unsupported("Mac OS X", "aarch64", NO_ENV))
        .contains("this is macOS aarch64", "os.name 'Mac OS X'", "container image", "a Linux x86-64 machine");
    // an Intel Mac too: the jar has no libtorch for macOS at all
    assertThat(Platform.unsupported("Mac OS X", "x86_64", NO_ENV)).contains("this is macOS x86_64");
  }

  @Test
  void windowsIsRefusedWithWsl() {
    assertThat(Platform.unsupported("Windows 11", "amd64", NO_ENV))
        .contains("this is Windows amd64", "container image", "WSL 2 on an x86-64 PC");
  }

  @Test
  void aLibtorchOfOnesOwnIsLetThrough() {
    assertThat(Platform.unsupported("Linux", "aarch64", Map.of("PYTORCH_LIBRARY_PATH", "/opt/libtorch/lib"))).isNull();
    assertThat(Platform.unsupported("Linux", "aarch64", Map.of("PYTORCH_LIBRARY_PATH", " "))).isNotNull();
  }

  @Test
  void onlyCommandsThatLoadLibtorchAreChecked() {
    assertThat(Platform.needsEngine(new String[] {"job.yaml"})).isTrue();
    assertThat(Platform.needsEngine(new String[] {"--check-engine"})).isTrue();
    assertThat(Platform.needsEngine(new String[] {"job.yaml", "--nproc-per-node", "2"})).isTrue();
    // a laptop may still plan a cluster job and read the help
    assertThat(Platform.needsEngine(new String[] {"job.yaml", "--plan", "--device-memory", "24Gi"})).isFalse();
    assertThat(Platform.needsEngine(new String[] {"--help"})).isFalse();
    assertThat(Platform.needsEngine(new String[] {"--version"})).isFalse();
  }

  /** The real entry point on a Mac (the JVM told so): exit 3 and one line of words, no stack trace, no libtorch. */
  @Test
  void mainExitsWithTheMessage() throws IOException, InterruptedException {
    String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
    ProcessBuilder pb = new ProcessBuilder(java, "-Xmx256m", "-Dos.name=Mac OS X", "-Dos.arch=aarch64", "-cp",
        System.getProperty("java.class.path"), Main.class.getName(),
        Repo.examples().resolve("small-cpu.yaml").toString(), "--output", "/nonexistent/never-written")
        .redirectErrorStream(true);
    pb.environment().remove("PYTORCH_LIBRARY_PATH");
    Process p = pb.start();
    String output = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertThat(p.waitFor(60, TimeUnit.SECONDS)).isTrue();
    assertThat(p.exitValue()).as(output).isEqualTo(ExitCodes.BAD_JOB);
    assertThat(output.strip().lines().toList()).as(output).singleElement().satisfies(line -> assertThat(line)
        .startsWith("error: this trainer runs on Linux x86-64 only, and this is macOS aarch64"));
    assertThat(List.of(output)).noneSatisfy(o -> assertThat(o).contains("Exception", "\tat "));
  }
}
