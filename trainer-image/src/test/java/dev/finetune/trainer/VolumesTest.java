package dev.finetune.trainer;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A job written for a cluster names claims; a local run says where it reads their paths instead. */
class VolumesTest {

  @Test
  void aClaimWithoutItsVolumeIsReadBesideTheJobAndSaysSoOnce(@TempDir Path dir) throws Exception {
    PrintStream saved = System.out;
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    System.setOut(new PrintStream(out, true, StandardCharsets.UTF_8));
    Path first;
    Path again;
    try {
      first = Volumes.resolve("spec.test", "models/m", "weights", "FINETUNE_TEST_UNSET_DIR", dir.resolve("no-mount").toString(), dir);
      again = Volumes.resolve("spec.test", "models/m", "weights", "FINETUNE_TEST_UNSET_DIR", dir.resolve("no-mount").toString(), dir);
    } finally {
      System.setOut(saved);
    }
    assertThat(first).isEqualTo(dir.resolve("models/m")).isEqualTo(again);
    assertThat(out.toString(StandardCharsets.UTF_8)).isEqualTo("spec.test.claimName 'weights': no volume is mounted at "
        + dir.resolve("no-mount") + " here, so models/m is read beside the job file (" + dir.resolve("models/m")
        + "). To read a copy of the volume instead, set FINETUNE_TEST_UNSET_DIR to its folder\n");

    Path mount = Files.createDirectories(dir.resolve("mount"));
    assertThat(Volumes.resolve("spec.other", "models/m", "weights", "FINETUNE_TEST_UNSET_DIR", mount.toString(), dir))
        .as("the Pod's mounted volume").isEqualTo(mount.resolve("models/m"));
    assertThat(Volumes.resolve("spec.other", "/abs/m", "weights", "FINETUNE_TEST_UNSET_DIR", mount.toString(), dir))
        .isEqualTo(Path.of("/abs/m"));
  }
}
