package dev.finetune.trainer.model;

import static org.assertj.core.api.Assertions.assertThat;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/** Copying weights in place (a restore, the best epoch's weights for the answers) prints nothing of libtorch's. */
class NoGradTest {
  /** What the child JVM runs: copies into a weight that trains, as a restore does, and prints the result. */
  public static void main(String[] args) {
    try (NDManager m = NDManager.newBaseManager()) {
      NDArray from = m.arange(0f, 6f).reshape(new Shape(2, 3));
      NDArray into = m.zeros(new Shape(2, 3));
      into.setRequiresGradient(true);
      NoGrad.copy(from, into);
      System.out.println("copied " + java.util.Arrays.toString(into.toFloatArray()));
    }
  }

  @Test
  void copyingWeightsInPlaceLeavesNoLibtorchWarningOnTheConsole() throws Exception {
    List<String> cmd = List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-cp",
        System.getProperty("java.class.path"), NoGradTest.class.getName());
    ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true);
    pb.environment().put("DJL_OFFLINE", "true");
    Process p = pb.start();
    String output = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertThat(p.waitFor(5, TimeUnit.MINUTES)).isTrue();
    assertThat(p.exitValue()).as(output).isZero();
    // DJL's copyTo printed "[W ...] Warning: AutoNonVariableTypeMode is deprecated ..." here
    assertThat(output).contains("copied [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]").doesNotContain("Warning", "deprecated");
  }
}
