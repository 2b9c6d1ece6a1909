package dev.finetune.helm;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import dev.finetune.api.FineTuneJobs;
import dev.finetune.api.testing.Repo;
import dev.finetune.api.trainer.TrainerContract;
import dev.finetune.operator.config.OperatorConfig;
import dev.finetune.operator.resources.TrainerResources;
import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.apps.Deployment;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

/**
 * No Docker engine here, so the Dockerfiles are checked by reading them: a non-root user, an entry point that
 * runs the jar the build makes, and for CUDA what ../shared/notes/djl.md says such an image needs.
 */
class ImagesTest {
  private static final Path OPERATOR = Repo.root().resolve("operator/Dockerfile");
  private static final Path TRAINER_CPU = Repo.root().resolve("trainer-image/Dockerfile");
  private static final Path TRAINER_CUDA = Repo.root().resolve("trainer-image/Dockerfile.cuda");

  /** One instruction: keyword and arguments, continuation lines joined. */
  record Instruction(String keyword, String args) {}

  static List<Instruction> read(Path dockerfile) throws IOException {
    List<Instruction> out = new ArrayList<>();
    StringBuilder current = new StringBuilder();
    for (String line : Files.readAllLines(dockerfile)) {
      if (line.isBlank() || line.stripLeading().startsWith("#")) {
        continue;
      }
      current.append(line.strip());
      if (line.endsWith("\\")) {
        current.setLength(current.length() - 1);
        current.append(' ');
        continue;
      }
      String text = current.toString();
      int space = text.indexOf(' ');
      out.add(new Instruction(text.substring(0, space).toUpperCase(), text.substring(space + 1).strip()));
      current.setLength(0);
    }
    return out;
  }

  static List<String> entrypoint(List<Instruction> file) throws IOException {
    String json = file.stream().filter(i -> i.keyword().equals("ENTRYPOINT")).reduce((a, b) -> b).orElseThrow().args();
    return List.of(new ObjectMapper().readValue(json, String[].class));
  }

  static int index(List<Instruction> file, String keyword, String contains) {
    for (int i = 0; i < file.size(); i++) {
      if (file.get(i).keyword().equals(keyword) && file.get(i).args().contains(contains)) {
        return i;
      }
    }
    return -1;
  }

  /** The image runs as a numeric non-root uid, set after everything that needs root. */
  static String nonRootUser(List<Instruction> file) {
    Instruction user = file.stream().filter(i -> i.keyword().equals("USER")).reduce((a, b) -> b).orElseThrow();
    assertThat(user.args()).matches("[1-9][0-9]*(:[1-9][0-9]*)?");
    int userIndex = file.indexOf(user);
    for (int i = userIndex + 1; i < file.size(); i++) {
      assertThat(file.get(i).keyword()).as("after USER").isIn("ENV", "EXPOSE", "ENTRYPOINT", "CMD", "LABEL", "WORKDIR");
    }
    return user.args().split(":")[0];
  }

  /** The jar the entry point runs is the one the module builds, copied from target/. */
  static void runsTheBuiltJar(List<Instruction> file, String module, String jarInImage) throws IOException {
    List<String> entry = entrypoint(file);
    assertThat(entry.get(0)).isEqualTo("java");
    assertThat(entry.subList(entry.indexOf("-jar") + 1, entry.indexOf("-jar") + 2)).containsExactly(jarInImage);
    String pom = Files.readString(Repo.root().resolve(module + "/pom.xml"));
    Matcher finalName = Pattern.compile("<finalName>([^<]+)</finalName>").matcher(pom);
    assertThat(finalName.find()).as(module + "/pom.xml names its jar").isTrue();
    assertThat(index(file, "COPY", module + "/target/" + finalName.group(1) + ".jar " + jarInImage)).isNotNegative();
    assertThat(index(file, "COPY", module + "/target/lib/ /app/lib/")).as("the jar's Class-Path libraries").isNotNegative();
  }

  @Test
  void operatorImage() throws IOException {
    List<Instruction> file = read(OPERATOR);
    nonRootUser(file);
    runsTheBuiltJar(file, "operator", "/app/finetune-operator.jar");
    assertThat(index(file, "EXPOSE", String.valueOf(OperatorConfig.defaults().metricsPort()))).isNotNegative();
    // The chart's podSecurityContext uses the image's user.
    String values = Files.readString(Chart.DIR.resolve("values.yaml"));
    assertThat(values).contains("runAsUser: " + nonRootUser(file));
  }

  @Test
  void trainerImages() throws IOException {
    for (Path dockerfile : List.of(TRAINER_CPU, TRAINER_CUDA)) {
      List<Instruction> file = read(dockerfile);
      String uid = nonRootUser(file);
      assertThat(Long.parseLong(uid)).as("the uid the operator runs trainer Pods as").isEqualTo(OperatorConfig.defaults().trainerUid());
      runsTheBuiltJar(file, "trainer-image", TrainerContract.TRAINER_JAR);
      assertThat(index(file, "EXPOSE", String.valueOf(TrainerContract.DEFAULT_PORT))).isNotNegative();
      // The DJL cache is filled at build time, as root, and readable by the trainer's user afterwards.
      int warm = index(file, "RUN", "--check-engine");
      assertThat(warm).isNotNegative().isLessThan(index(file, "USER", uid));
      assertThat(file.get(warm).args()).contains("chmod -R a+rX /opt/djl");
      assertThat(index(file, "ENV", "DJL_CACHE_DIR=/opt/djl")).isNotNegative().isLessThan(warm);
      assertThat(index(file, "ENV", "DJL_OFFLINE=true")).isNotNegative();
    }
    // The operator starts the trainer with the same jar.
    var job = FineTuneJobs.read(Repo.examples().resolve("small-cpu.yaml"));
    assertThat(new TrainerResources(OperatorConfig.defaults()).command(job)).contains(TrainerContract.TRAINER_JAR);
  }

  /** FROM's image, without a --platform flag. */
  static String baseImage(Instruction from) {
    return from.args().replaceFirst("^--platform=\\S+\\s+", "");
  }

  /**
   * The trainer runs on Linux x86-64 alone (its libtorch and native library are x86-64 builds, and the trainer refuses
   * other platforms), so every stage of the trainer images is pinned to linux/amd64: a build on an ARM machine (an
   * Apple silicon Mac) still makes images x86-64 nodes run, and the README's docker run on a Mac runs them emulated.
   */
  @Test
  void trainerImagesAreLinuxAmd64() throws IOException {
    for (Path dockerfile : List.of(TRAINER_CPU, TRAINER_CUDA)) {
      List<Instruction> froms = read(dockerfile).stream().filter(i -> i.keyword().equals("FROM")).toList();
      assertThat(froms).as(dockerfile.toString()).isNotEmpty()
          .allSatisfy(f -> assertThat(f.args()).startsWith("--platform=linux/amd64 "));
    }
  }

  /** One version: the pom's is the chart's version and appVersion, and so every default image tag. */
  @Test
  void theChartsVersionIsThePomsVersion() throws IOException {
    JsonNode chart = new ObjectMapper(new YAMLFactory()).readTree(Chart.DIR.resolve("Chart.yaml").toFile());
    String version = Chart.projectVersion();
    assertThat(chart.path("version").asText()).as("Chart.yaml version: the root pom.xml's version").isEqualTo(version);
    assertThat(chart.path("appVersion").asText()).as("Chart.yaml appVersion: the root pom.xml's version").isEqualTo(version);
    assertThat(OperatorConfig.VERSION).as("the operator's default image tag").isEqualTo(version);
  }

  @Test
  void theDefaultImagesCarryTheProjectVersion() {
    String version = Chart.projectVersion();
    List<HasMetadata> objects = Chart.render(Map.of());
    Deployment deployment = Chart.ofKind(objects, Deployment.class).get(0);
    assertThat(deployment.getSpec().getTemplate().getSpec().getContainers().get(0).getImage())
        .isEqualTo("ghcr.io/finetune-dev/finetune-operator:" + version);
    OperatorConfig config = ChartTest.configOf(objects);
    assertThat(config.trainerCpuImage()).isEqualTo("ghcr.io/finetune-dev/finetune-trainer:" + version);
    assertThat(config.trainerImage()).isEqualTo("ghcr.io/finetune-dev/finetune-trainer:" + version + "-cuda");
    // the operator's own defaults, without the chart, are the same images
    assertThat(config.trainerCpuImage()).isEqualTo(OperatorConfig.DEFAULT_CPU_IMAGE);
    assertThat(config.trainerImage()).isEqualTo(OperatorConfig.DEFAULT_IMAGE);
  }

  /**
   * The build commands tag what the chart pulls: every image reference in the READMEs and the Dockerfiles' comments
   * tags $VERSION (the CPU trainer, the operator) or $VERSION-cuda (the CUDA trainer), never a version by hand.
   */
  @Test
  void theBuildCommandsTagWhatTheChartPulls() throws IOException {
    Pattern reference = Pattern.compile("finetune-(operator|trainer):([\\w.$-]+)");
    Pattern build = Pattern.compile("docker build .*-f (\\S+) .*-t \\S+/finetune-(?:operator|trainer):([\\w.$-]+)");
    int builds = 0;
    for (Path file : List.of(Repo.root().resolve("README.md"), Chart.DIR.resolve("README.md"), OPERATOR, TRAINER_CPU,
        TRAINER_CUDA)) {
      for (String line : Files.readAllLines(file)) {
        Matcher m = reference.matcher(line);
        while (m.find()) {
          assertThat(m.group(2)).as(file + ": " + line).matches("\\$VERSION(-cuda)?");
        }
        Matcher b = build.matcher(line);
        if (b.find()) {
          builds++;
          assertThat(b.group(2)).as(file + ": " + line).isEqualTo(b.group(1).endsWith(".cuda") ? "$VERSION-cuda" : "$VERSION");
        }
      }
    }
    assertThat(builds).as("docker build commands").isGreaterThanOrEqualTo(6);
    assertThat(Files.readString(Repo.root().resolve("README.md")))
        .contains("VERSION=$(mvn -q -N help:evaluate -Dexpression=project.version -DforceStdout)");
  }

  @Test
  void cudaImageHasWhatDjlNeedsForCuda() throws IOException {
    List<Instruction> file = read(TRAINER_CUDA);
    assertThat(baseImage(file.get(0))).startsWith("nvidia/cuda:12.8");
    String parentPom = Files.readString(Repo.root().resolve("pom.xml"));
    Matcher libtorch = Pattern.compile("<libtorch.version>([^<]+)</libtorch.version>").matcher(parentPom);
    assertThat(libtorch.find()).isTrue();
    int env = index(file, "ENV", "PYTORCH_FLAVOR=cu128");
    assertThat(env).isNotNegative();
    assertThat(file.get(env).args()).contains("PYTORCH_VERSION=" + libtorch.group(1));
    // The CPU libtorch jar is gone before the engine starts, or DJL would pick it over the CUDA build.
    String warmUp = file.get(index(file, "RUN", "--check-engine")).args();
    assertThat(warmUp).contains("rm -f /app/lib/pytorch-native-cpu-*.jar");
    assertThat(warmUp.indexOf("rm -f")).isLessThan(warmUp.indexOf("--check-engine"));
    // Downloading is allowed only while the image is built: DJL_OFFLINE comes after the cache is filled.
    assertThat(index(file, "ENV", "DJL_OFFLINE=true")).isGreaterThan(index(file, "RUN", "--check-engine"));
  }
}
