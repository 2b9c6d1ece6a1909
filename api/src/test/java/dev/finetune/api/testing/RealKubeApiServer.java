package dev.finetune.api.testing;

import io.fabric8.kubernetes.client.Config;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientBuilder;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.io.UncheckedIOException;
import java.net.ServerSocket;
import java.nio.channels.FileLock;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/**
 * A real Kubernetes control plane for tests: etcd and kube-apiserver {@value #VERSION} (and kube-controller-manager
 * on request) on loopback, started with the scripts in {@code ../shared/k8s}, on free ports and in a private run
 * directory, so several test JVMs can run one each. There is no scheduler and no kubelet.
 *
 * <p>The scripts are found through the environment variable {@code FINETUNE_K8S_DIR}, else the system property
 * {@code finetune.shared} + {@code /k8s}, else {@code ../shared/k8s}. When they or etcd are missing, tests are
 * skipped with a message that says how to get them.
 */
public final class RealKubeApiServer implements AutoCloseable {
  /** The Kubernetes version every real-cluster test runs on (the project supports 1.29 and newer). */
  public static final String VERSION = "1.34.9";
  private static final String ARCHIVE = "kube-v" + VERSION + "-linux-amd64.tar.xz";
  private static final Duration COMMAND_TIMEOUT = Duration.ofMinutes(3);

  private final Path k8sDir;
  private final Path run;
  private final Map<String, String> env;
  private final KubernetesClient client;

  private RealKubeApiServer(Path k8sDir, Path run, Map<String, String> env) throws IOException {
    this.k8sDir = k8sDir;
    this.run = run;
    this.env = env;
    Path kubeconfig = run.resolve("kubeconfig");
    this.client = new KubernetesClientBuilder()
        .withConfig(Config.fromKubeconfig(null, Files.readString(kubeconfig), kubeconfig.toString()))
        .build();
  }

  /** Starts the control plane, or skips the calling test with a message when it cannot be had here. */
  public static RealKubeApiServer start(boolean withControllerManager) {
    Path k8sDir = k8sDir().orElse(null);
    Skips.unless(k8sDir != null,
        "no real kube-apiserver: set FINETUNE_K8S_DIR to a folder with start.sh and " + ARCHIVE + " "
            + "(../shared/k8s in this project's workspace)");
    Skips.unless(onPath("etcd"), "no etcd on PATH: apt-get install -y etcd-server");
    try {
      Path bin = unpackBinaries(k8sDir);
      Path run = Files.createTempDirectory("kube-run");
      Map<String, String> env = Map.of(
          "RUN", run.toString(),
          "BIN", bin.toString(),
          "API_PORT", String.valueOf(freePort()),
          "ETCD_PORT", String.valueOf(freePort()),
          "ETCD_PEER_PORT", String.valueOf(freePort()),
          "WITH_KCM", withControllerManager ? "1" : "0");
      Result started = exec(env, run, List.of("bash", k8sDir.resolve("start.sh").toString()));
      if (started.exitCode() != 0) {
        exec(env, run, List.of("bash", k8sDir.resolve("stop.sh").toString(), "--wipe"));
        throw new IllegalStateException("start.sh failed (" + started.exitCode() + "):\n" + started.output()
            + "\napiserver log:\n" + tail(run.resolve("kube-apiserver.log")));
      }
      return new RealKubeApiServer(k8sDir, run, env);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  public static Optional<Path> k8sDir() {
    List<Path> candidates = new ArrayList<>();
    Optional.ofNullable(System.getenv("FINETUNE_K8S_DIR")).ifPresent(d -> candidates.add(Path.of(d)));
    String shared = System.getProperty("finetune.shared");
    if (shared != null) {
      candidates.add(Path.of(shared, "k8s"));
    } else {
      candidates.add(Path.of("..", "shared", "k8s"));
      candidates.add(Path.of("..", "..", "shared", "k8s"));
    }
    return candidates.stream().filter(d -> Files.isRegularFile(d.resolve("start.sh"))).findFirst()
        .map(d -> d.toAbsolutePath().normalize());
  }

  public KubernetesClient client() {
    return client;
  }

  /** The admin kubeconfig (user in system:masters). */
  public Path kubeconfig() {
    return run.resolve("kubeconfig");
  }

  public String url() {
    return "https://127.0.0.1:" + env.get("API_PORT");
  }

  public Path caCertificate() {
    return run.resolve("pki/ca.crt");
  }

  /** Runs kubectl against this server; never throws on a non-zero exit code. */
  public Result kubectl(String... args) {
    List<String> command = new ArrayList<>(List.of("kubectl", "--kubeconfig", kubeconfig().toString()));
    command.addAll(List.of(args));
    try {
      return exec(Map.of(), run, command);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** Applies the FineTuneJob CRD (crds/) and waits until the server serves it. */
  public void installCrd() {
    Result applied = kubectl("apply", "-f", Repo.crd().toString());
    if (applied.exitCode() != 0) {
      throw new IllegalStateException("kubectl apply -f " + Repo.crd() + " failed:\n" + applied.output());
    }
    awaitEstablished("finetunejobs.finetune.dev");
  }

  /**
   * Waits (up to a minute) until the server serves the API of the CRD of this name: its condition Established. Read
   * with a watch, not kubectl wait, which fails at once on a CRD just created whose status has no conditions yet.
   */
  public void awaitEstablished(String crd) {
    client.apiextensions().v1().customResourceDefinitions().withName(crd).waitUntilCondition(
        c -> c != null && c.getStatus() != null && c.getStatus().getConditions() != null && c.getStatus().getConditions()
            .stream().anyMatch(x -> "Established".equals(x.getType()) && "True".equals(x.getStatus())),
        60, java.util.concurrent.TimeUnit.SECONDS);
  }

  @Override
  public void close() {
    client.close();
    try {
      exec(env, run, List.of("bash", k8sDir.resolve("stop.sh").toString(), "--wipe"));
      try (Stream<Path> files = Files.walk(run)) {
        files.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
      }
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** Output and exit code of a command (stdout and stderr together). */
  public record Result(int exitCode, String output) {}

  /** Unpacks the binaries once per machine, under a lock so two test JVMs do not race. */
  private static Path unpackBinaries(Path k8sDir) throws IOException {
    if (System.getenv("BIN") != null) {
      return Path.of(System.getenv("BIN"));
    }
    Path bin = Path.of(System.getProperty("user.home"), ".cache", "kube-v" + VERSION);
    Files.createDirectories(bin.getParent());
    try (RandomAccessFile lockFile = new RandomAccessFile(bin.getParent().resolve("kube-v" + VERSION + ".lock").toFile(), "rw");
        FileLock lock = lockFile.getChannel().lock()) {
      if (!Files.isExecutable(bin.resolve("kube-apiserver")) || !Files.isExecutable(bin.resolve("kube-controller-manager"))) {
        Path tmp = Files.createTempDirectory(bin.getParent(), "kube-unpack");
        Result r = exec(Map.of(), tmp, List.of("tar", "-xJf", k8sDir.resolve(ARCHIVE).toString(), "-C", tmp.toString()));
        if (r.exitCode() != 0) {
          throw new IllegalStateException("cannot unpack kube binaries: " + r.output());
        }
        if (Files.exists(bin)) {
          try (Stream<Path> files = Files.walk(bin)) {
            files.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
          }
        }
        Files.move(tmp, bin);
      }
    }
    return bin;
  }

  private static Result exec(Map<String, String> env, Path dir, List<String> command) throws IOException {
    ProcessBuilder pb = new ProcessBuilder(command).directory(dir.toFile()).redirectErrorStream(true);
    pb.environment().putAll(env);
    Process p = pb.start();
    p.getOutputStream().close();
    byte[] out = p.getInputStream().readAllBytes();
    try {
      if (!p.waitFor(COMMAND_TIMEOUT.toSeconds(), TimeUnit.SECONDS)) {
        p.destroyForcibly();
        throw new IllegalStateException("timed out: " + command);
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException("interrupted: " + command, e);
    }
    return new Result(p.exitValue(), new String(out, StandardCharsets.UTF_8));
  }

  private static boolean onPath(String program) {
    return Stream.of(System.getenv().getOrDefault("PATH", "").split(":"))
        .anyMatch(d -> Files.isExecutable(Path.of(d, program)));
  }

  private static int freePort() throws IOException {
    try (ServerSocket s = new ServerSocket(0)) {
      return s.getLocalPort();
    }
  }

  private static String tail(Path log) {
    try {
      List<String> lines = Files.readAllLines(log);
      return String.join("\n", lines.subList(Math.max(0, lines.size() - 30), lines.size()));
    } catch (IOException e) {
      return "(no log: " + e.getMessage() + ")";
    }
  }
}
