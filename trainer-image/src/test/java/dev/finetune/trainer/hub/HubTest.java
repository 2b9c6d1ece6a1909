package dev.finetune.trainer.hub;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.finetune.trainer.BadJobException;
import dev.finetune.trainer.TransientException;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.net.Proxy;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Downloads from a fake hub on loopback: the cache layout, resumes, checksums, tokens, progress. */
class HubTest {
  private static final String TOKEN = "hf_secretTokenValue123";
  private static final byte[] CONFIG = "{\"model_type\": \"gpt2\"}".getBytes(StandardCharsets.UTF_8);
  private static final byte[] WEIGHTS = random(400_000, 1);

  private FakeHub fake;
  private FakeHub.Repo repo;
  @TempDir
  Path cache;

  @BeforeEach
  void start() {
    fake = new FakeHub();
    repo = fake.model("org/tiny").file("config.json", CONFIG).file("model.safetensors", WEIGHTS);
  }

  @AfterEach
  void stop() {
    fake.close();
  }

  private HubSettings settings(String token) {
    return HubSettings.from(Map.of("HF_ENDPOINT", fake.endpoint())).withToken(token);
  }

  private Hub hub(String repoId, String token, DownloadListener listener) {
    Hub h = new Hub(settings(token), cache, RepoKind.MODEL, repoId, "main", listener);
    h.backoffMillis = 10;
    return h;
  }

  @Test
  void filesLandInTheHfCacheLayoutAndACachedSnapshotNeedsNoNetwork() throws Exception {
    Hub hub = hub("org/tiny", null, null);
    Path config = hub.file("config.json");
    Path weights = hub.file("model.safetensors");
    assertThat(hub.optionalFile("generation_config.json")).isEmpty();

    String commit = repo.commit();
    Path dir = cache.resolve("models--org--tiny");
    assertThat(Files.readString(dir.resolve("refs/main"))).isEqualTo(commit);
    assertThat(config).isEqualTo(dir.resolve("snapshots/" + commit + "/config.json"));
    assertThat(Files.isSymbolicLink(weights)).isTrue();
    assertThat(weights.toRealPath()).isEqualTo(dir.resolve("blobs/" + Hub.sha256(weights)).toRealPath());
    assertThat(Files.readAllBytes(weights)).isEqualTo(WEIGHTS);
    assertThat(dir.resolve(".no_exist/" + commit + "/generation_config.json")).exists();

    int before = fake.requests().size();
    Hub again = hub("org/tiny", null, null);
    assertThat(again.file("config.json")).isEqualTo(config);
    assertThat(again.file("model.safetensors")).isEqualTo(weights);
    assertThat(again.optionalFile("generation_config.json")).isEmpty();
    assertThat(fake.requests()).hasSize(before);
  }

  @Test
  void aDroppedTransferResumesWithARangeRequest() throws Exception {
    fake.dropAfter("model.safetensors", WEIGHTS.length / 2, 1);
    Path weights = hub("org/tiny", null, null).file("model.safetensors");
    assertThat(Files.readAllBytes(weights)).isEqualTo(WEIGHTS);
    // the second try asked for the rest only: less than a second whole copy crossed the wire (the bytes in flight
    // when the connection dropped may be sent twice)
    assertThat(fake.requests()).anyMatch(r -> r.host().equals("cdn") && r.range() != null && r.range().startsWith("bytes="));
    assertThat(fake.bytesSent("model.safetensors")).isLessThan(WEIGHTS.length + WEIGHTS.length / 2);
  }

  @Test
  void aPartialFileIsKeptAndTheNextRunResumesIt() throws Exception {
    fake.dropAfter("model.safetensors", 50_000, Hub.TRIES);
    assertThatThrownBy(() -> hub("org/tiny", null, null).file("model.safetensors"))
        .isInstanceOf(TransientException.class)
        .hasMessageContaining("cannot download model.safetensors of org/tiny@main")
        .hasMessageContaining("after " + Hub.TRIES + " tries")
        .hasMessageContaining("The partial file is kept");
    // each try got up to 50 kB further
    Path part = cache.resolve("models--org--tiny/blobs/" + sha256Hex(WEIGHTS) + ".incomplete");
    assertThat(Files.size(part)).isPositive().isLessThanOrEqualTo(50_000L * Hub.TRIES);

    Path weights = hub("org/tiny", null, null).file("model.safetensors");
    assertThat(Files.readAllBytes(weights)).isEqualTo(WEIGHTS);
    assertThat(part).doesNotExist();
    assertThat(fake.bytesSent("model.safetensors")).as("the second run sent the rest only")
        .isLessThan(WEIGHTS.length + 50_000L * Hub.TRIES);
  }

  @Test
  void aCorruptDownloadIsRemovedAndFailsAsTransientNamingTheChecksum() throws Exception {
    fake.corrupt("model.safetensors", 1);
    String sha = sha256Hex(WEIGHTS);
    assertThatThrownBy(() -> hub("org/tiny", null, null).file("model.safetensors"))
        .isInstanceOf(TransientException.class)
        .hasMessageContaining("model.safetensors of org/tiny@main")
        .hasMessageContaining("where the hub states " + sha);
    assertThat(cache.resolve("models--org--tiny/blobs/" + sha + ".incomplete")).doesNotExist();
    assertThat(cache.resolve("models--org--tiny/blobs/" + sha)).doesNotExist();
    // the retry (the Job's) gets it right
    assertThat(Files.readAllBytes(hub("org/tiny", null, null).file("model.safetensors"))).isEqualTo(WEIGHTS);
  }

  @Test
  void aGatedRepositoryNeedsTheTokenWhichNeverLeavesTheHub() throws Exception {
    fake.model("meta/gated").file("config.json", CONFIG).file("model.safetensors", WEIGHTS).gated(TOKEN);
    PrintStream out = System.out;
    ByteArrayOutputStream console = new ByteArrayOutputStream();
    System.setOut(new PrintStream(console, true, StandardCharsets.UTF_8));
    try {
      assertThatThrownBy(() -> hub("meta/gated", null, null).file("config.json"))
          .isInstanceOf(BadJobException.class)
          .hasMessageContaining("the hub answered 401 (GatedRepo) for config.json of meta/gated@main")
          .hasMessageContaining("the trainer has no token")
          .hasMessageContaining("spec.model.hubTokenSecret")
          .hasMessageContaining("HF_TOKEN")
          .hasMessageContaining(fake.endpoint() + "/meta/gated");
      assertThatThrownBy(() -> hub("meta/gated", "hf_wrong", null).file("config.json"))
          .isInstanceOf(BadJobException.class)
          .hasMessageContaining("the hub answered 403 (GatedRepo) for config.json of meta/gated@main")
          .hasMessageContaining("has no access")
          .satisfies(e -> assertThat(e.getMessage()).doesNotContain("hf_wrong"));

      Hub hub = hub("meta/gated", TOKEN, null);
      assertThat(Files.readAllBytes(hub.file("model.safetensors"))).isEqualTo(WEIGHTS);
      assertThat(hub.toString()).doesNotContain(TOKEN);
      assertThat(settings(TOKEN).toString()).doesNotContain(TOKEN).contains("with a token");
    } finally {
      System.setOut(out);
    }
    assertThat(console.toString(StandardCharsets.UTF_8)).doesNotContain(TOKEN).contains("downloading model.safetensors");
    List<FakeHub.Request> requests = fake.requests();
    assertThat(requests).anyMatch(r -> r.host().equals("hub") && ("Bearer " + TOKEN).equals(r.authorization()));
    assertThat(requests).filteredOn(r -> r.host().equals("cdn")).isNotEmpty().allMatch(r -> r.authorization() == null);
  }

  @Test
  void anUnknownRepositoryOrRevisionIsABadJob() {
    assertThatThrownBy(() -> hub("org/nope", null, null).file("config.json"))
        .isInstanceOf(BadJobException.class).hasMessageContaining("401 (RepoNotFound)").hasMessageContaining("does not exist");
    Hub hub = new Hub(settings(null), cache, RepoKind.MODEL, "org/tiny", "v9", null);
    assertThatThrownBy(() -> hub.file("config.json"))
        .isInstanceOf(BadJobException.class).hasMessageContaining("the hub has no revision 'v9' of org/tiny")
        .hasMessageContaining("spec.model.revision");
    assertThatThrownBy(() -> hub("org/tiny", null, null).file("tokenizer.json"))
        .isInstanceOf(BadJobException.class).hasMessageContaining("the hub has no file tokenizer.json of org/tiny@main");
  }

  @Test
  void serverErrorsAreRetriedThenTransient() throws Exception {
    fake.failWith("model.safetensors", 503, 1);
    assertThat(Files.readAllBytes(hub("org/tiny", null, null).file("model.safetensors"))).isEqualTo(WEIGHTS);
  }

  @Test
  void largeFilesReportProgressAndTheirEnd() throws Exception {
    byte[] big = random((int) Hub.PROGRESS_BYTES + 1_000_000, 2);
    repo.file("model-00001-of-00001.safetensors", big);
    List<String> messages = new CopyOnWriteArrayList<>();
    List<Boolean> finished = new CopyOnWriteArrayList<>();
    List<String> resolved = new CopyOnWriteArrayList<>();
    DownloadListener listener = new DownloadListener() {
      @Override
      public void onDownload(String message, boolean done) {
        messages.add(message);
        finished.add(done);
      }

      @Override
      public void onResolved(RepoKind kind, String repoId, String revision, String commit) {
        resolved.add(kind + " " + repoId + "@" + revision + "=" + commit);
      }
    };
    hub("org/tiny", null, listener).file("model-00001-of-00001.safetensors");
    assertThat(messages.get(0)).startsWith("downloading model-00001-of-00001.safetensors of org/tiny: 0 B of 11.5 MB (0%)");
    assertThat(messages.get(messages.size() - 1)).startsWith("downloaded model-00001-of-00001.safetensors of org/tiny: 11.5 MB in ");
    assertThat(finished.get(finished.size() - 1)).isTrue();
    assertThat(finished.subList(0, finished.size() - 1)).containsOnly(false);
    assertThat(resolved).containsExactly("MODEL org/tiny@main=" + repo.commit());
    // small files say nothing
    messages.clear();
    hub("org/tiny", null, listener).file("config.json");
    assertThat(messages).isEmpty();
  }

  @Test
  void twoJobsFillingOneCacheAtOnceWriteEachBlobOnce() throws Exception {
    List<CompletableFuture<Path>> jobs = new ArrayList<>();
    for (int i = 0; i < 4; i++) {
      jobs.add(CompletableFuture.supplyAsync(() -> {
        try {
          return hub("org/tiny", null, null).file("model.safetensors");
        } catch (Exception e) {
          throw new RuntimeException(e);
        }
      }));
    }
    for (CompletableFuture<Path> j : jobs) {
      assertThat(Files.readAllBytes(j.get())).isEqualTo(WEIGHTS);
    }
    assertThat(fake.bytesSent("model.safetensors")).isEqualTo(WEIGHTS.length);
  }

  /** What a second trainer (another process) does: downloads one file of a repository into a cache, prints its path. */
  public static void main(String[] args) throws Exception {
    HubSettings settings = HubSettings.from(Map.of("HF_ENDPOINT", args[0]));
    System.out.println(new Hub(settings, Path.of(args[1]), RepoKind.MODEL, args[2], "main", null).file(args[3]));
  }

  @Test
  void jobsInOtherProcessesShareOneCacheAndDownloadEachBlobOnce() throws Exception {
    byte[] big = random(8_000_000, 3);
    repo.file("big.safetensors", big);
    List<Process> others = new ArrayList<>();
    for (int i = 0; i < 2; i++) {
      others.add(new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-cp",
          System.getProperty("java.class.path"), HubTest.class.getName(), fake.endpoint(), cache.toString(), "org/tiny",
          "big.safetensors").redirectErrorStream(true).start());
    }
    Path mine = hub("org/tiny", null, null).file("big.safetensors");
    for (Process p : others) {
      String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
      assertThat(p.waitFor()).as(out).isZero();
      assertThat(out.lines().reduce((a, b) -> b).orElse("")).isEqualTo(mine.toString());
    }
    assertThat(Files.readAllBytes(mine)).isEqualTo(big);
    // one process downloaded it; the others found the blob whole (after waiting on its lock, when they overlapped)
    assertThat(fake.bytesSent("big.safetensors")).isEqualTo(big.length);
    try (var blobs = Files.list(cache.resolve("models--org--tiny/blobs"))) {
      assertThat(blobs.map(b -> b.getFileName().toString())).noneMatch(n -> n.endsWith(".incomplete"));
    }
  }

  @Test
  void theEnvironmentNamesEndpointTokenCacheAndProxies(@TempDir Path home) throws Exception {
    HubSettings none = HubSettings.from(Map.of());
    assertThat(none.endpoint()).isEqualTo(URI.create("https://huggingface.co"));
    assertThat(none.hasToken()).isFalse();
    assertThat(none.cacheOr(Path.of("run"))).isEqualTo(Path.of("run"));

    Files.writeString(home.resolve("token"), TOKEN + "\n");
    HubSettings fromHome = HubSettings.from(Map.of("HF_HOME", home.toString(), "HF_ENDPOINT", "https://mirror.example/"));
    assertThat(fromHome.token).isEqualTo(TOKEN);
    assertThat(fromHome.endpoint()).isEqualTo(URI.create("https://mirror.example"));
    assertThat(fromHome.cacheOr(Path.of("run"))).isEqualTo(home.resolve("hub"));
    assertThat(HubSettings.from(Map.of("HF_HOME", home.toString(), "HF_HUB_CACHE", "/c", "HF_TOKEN", "hf_x"))
        .cacheOr(null)).isEqualTo(Path.of("/c"));
    assertThatThrownBy(() -> HubSettings.from(Map.of("HF_ENDPOINT", "mirror.example")))
        .hasMessageContaining("HF_ENDPOINT is 'mirror.example'");

    HubSettings proxied = HubSettings.from(Map.of("HTTPS_PROXY", "http://proxy.corp:3128", "http_proxy", "proxy.corp:8080",
        "NO_PROXY", "localhost,.internal.corp,10.0.0.1"));
    assertThat(proxy(proxied, "https://huggingface.co/x")).isEqualTo("proxy.corp:3128");
    assertThat(proxy(proxied, "http://mirror.example/x")).isEqualTo("proxy.corp:8080");
    assertThat(proxy(proxied, "https://hub.internal.corp/x")).isNull();
    assertThat(proxy(proxied, "http://localhost:8080/x")).isNull();
    assertThat(proxy(proxied, "http://10.0.0.1/x")).isNull();
    assertThat(proxy(HubSettings.from(Map.of()), "https://huggingface.co/x")).isNull();
    // this machine's own addresses never go through the proxy
    HubSettings all = HubSettings.from(Map.of("HTTPS_PROXY", "http://proxy.corp:3128", "HTTP_PROXY", "http://proxy.corp:3128"));
    assertThat(proxy(all, "http://127.0.0.1:8080/v1")).isNull();
    assertThat(proxy(all, "http://localhost/v1")).isNull();
    assertThat(proxy(all, "https://judge.example/v1")).isEqualTo("proxy.corp:3128");
  }

  private static String proxy(HubSettings s, String uri) {
    Proxy p = s.proxies.select(URI.create(uri)).get(0);
    if (p.type() == Proxy.Type.DIRECT) {
      return null;
    }
    java.net.InetSocketAddress a = (java.net.InetSocketAddress) p.address();
    return a.getHostString() + ":" + a.getPort();
  }

  private static byte[] random(int n, long seed) {
    byte[] b = new byte[n];
    new Random(seed).nextBytes(b);
    return b;
  }

  private static String sha256Hex(byte[] b) throws Exception {
    return java.util.HexFormat.of().formatHex(java.security.MessageDigest.getInstance("SHA-256").digest(b));
  }
}
