package dev.finetune.trainer.hub;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.InputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.stream.IntStream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

class FakeHubTest {
  private static final HttpClient CLIENT = HttpClient.newBuilder().followRedirects(HttpClient.Redirect.NEVER)
      .version(HttpClient.Version.HTTP_1_1).connectTimeout(Duration.ofSeconds(5)).build();
  private static final byte[] CONFIG = "{\"n_layer\": 2}".getBytes(StandardCharsets.UTF_8);
  private static final byte[] WEIGHTS = new byte[300_000];

  static {
    new Random(7).nextBytes(WEIGHTS);
  }

  private FakeHub hub;

  @BeforeEach
  void start() {
    hub = new FakeHub();
    hub.model("org/tiny").file("config.json", CONFIG).file("model.safetensors", WEIGHTS);
  }

  @AfterEach
  void stop() {
    hub.close();
  }

  @Test
  void smallFileHeadAndGet() throws Exception {
    String url = hub.endpoint() + "/org/tiny/resolve/main/config.json";
    HttpResponse<byte[]> head = send(url, "HEAD", null, null);
    assertThat(head.statusCode()).isEqualTo(200);
    assertThat(head.headers().firstValue("X-Repo-Commit")).contains(hub.model("org/tiny").commit("main"));
    assertThat(head.headers().firstValue("ETag")).contains("\"" + gitBlobSha1(CONFIG) + "\"");
    assertThat(head.headers().firstValueAsLong("Content-Length")).hasValue(CONFIG.length);
    assertThat(head.body()).isEmpty();

    HttpResponse<byte[]> get = send(url, "GET", null, null);
    assertThat(get.statusCode()).isEqualTo(200);
    assertThat(get.body()).isEqualTo(CONFIG);
    HttpResponse<byte[]> tail = send(url, "GET", null, "bytes=3-");
    assertThat(tail.statusCode()).isEqualTo(206);
    assertThat(tail.body()).isEqualTo(Arrays.copyOfRange(CONFIG, 3, CONFIG.length));
    assertThat(hub.bytesSent("config.json")).isEqualTo(2L * CONFIG.length - 3);
  }

  @Test
  void lfsFileRedirectsToCdnWhichServesRanges() throws Exception {
    String sha = sha256(WEIGHTS);
    for (String method : new String[] {"HEAD", "GET"}) {
      HttpResponse<byte[]> r = send(hub.endpoint() + "/org/tiny/resolve/main/model.safetensors", method, null, null);
      assertThat(r.statusCode()).isEqualTo(302);
      assertThat(r.headers().firstValue("Location")).contains(hub.cdnEndpoint() + "/blobs/" + sha);
      assertThat(r.headers().firstValue("X-Linked-Etag")).contains("\"" + sha + "\"");
      assertThat(r.headers().firstValue("ETag")).contains("\"" + sha + "\"");
      assertThat(r.headers().firstValueAsLong("X-Linked-Size")).hasValue(WEIGHTS.length);
      assertThat(r.headers().firstValue("X-Repo-Commit")).contains(hub.model("org/tiny").commit("main"));
      assertThat(r.headers().firstValueAsLong("Content-Length")).hasValue(0);
    }
    assertThat(hub.cdnEndpoint()).isNotEqualTo(hub.endpoint());

    HttpResponse<byte[]> part = send(hub.cdnEndpoint() + "/blobs/" + sha, "GET", null, "bytes=1000-");
    assertThat(part.statusCode()).isEqualTo(206);
    assertThat(part.headers().firstValue("Content-Range")).contains("bytes 1000-299999/300000");
    assertThat(part.headers().firstValueAsLong("Content-Length")).hasValue(299_000);
    assertThat(part.body()).isEqualTo(Arrays.copyOfRange(WEIGHTS, 1000, WEIGHTS.length));
    HttpResponse<byte[]> whole = send(hub.cdnEndpoint() + "/blobs/" + sha, "GET", null, null);
    assertThat(whole.statusCode()).isEqualTo(200);
    assertThat(whole.body()).isEqualTo(WEIGHTS);
    assertThat(hub.bytesSent("model.safetensors")).isEqualTo(299_000L + WEIGHTS.length);
  }

  @Test
  void thresholdMakesLargePlainFilesLfs() throws Exception {
    hub.lfsThreshold(10).model("org/tiny").file("tokenizer.json", new byte[11]);
    assertThat(send(hub.endpoint() + "/org/tiny/resolve/main/tokenizer.json", "HEAD", null, null).statusCode())
        .isEqualTo(302);
  }

  @Test
  void gatedRepoNeedsTheRightToken() throws Exception {
    hub.model("org/gated").gated("hf_secret").file("config.json", CONFIG);
    String url = hub.endpoint() + "/org/gated/resolve/main/config.json";
    HttpResponse<byte[]> none = send(url, "GET", null, null);
    assertThat(none.statusCode()).isEqualTo(401);
    assertThat(none.headers().firstValue("X-Error-Code")).contains("GatedRepo");
    assertThat(json(none).get("error").asText()).isNotEmpty();
    HttpResponse<byte[]> wrong = send(url, "GET", "Bearer hf_wrong", null);
    assertThat(wrong.statusCode()).isEqualTo(403);
    assertThat(wrong.headers().firstValue("X-Error-Code")).contains("GatedRepo");
    HttpResponse<byte[]> right = send(url, "GET", "Bearer hf_secret", null);
    assertThat(right.statusCode()).isEqualTo(200);
    assertThat(right.body()).isEqualTo(CONFIG);
    assertThat(send(hub.endpoint() + "/api/models/org/gated/revision/main", "GET", null, null).statusCode())
        .isEqualTo(401);
  }

  @Test
  void unknownRepoRevisionAndFile() throws Exception {
    HttpResponse<byte[]> repo = send(hub.endpoint() + "/org/nope/resolve/main/config.json", "HEAD", null, null);
    assertThat(repo.statusCode()).isEqualTo(401);
    assertThat(repo.headers().firstValue("X-Error-Code")).contains("RepoNotFound");
    HttpResponse<byte[]> rev = send(hub.endpoint() + "/org/tiny/resolve/v9/config.json", "GET", null, null);
    assertThat(rev.statusCode()).isEqualTo(404);
    assertThat(rev.headers().firstValue("X-Error-Code")).contains("RevisionNotFound");
    HttpResponse<byte[]> file = send(hub.endpoint() + "/org/tiny/resolve/main/missing.txt", "GET", null, null);
    assertThat(file.statusCode()).isEqualTo(404);
    assertThat(file.headers().firstValue("X-Error-Code")).contains("EntryNotFound");
    assertThat(file.headers().firstValue("X-Repo-Commit")).contains(hub.model("org/tiny").commit("main"));
  }

  @Test
  void apiRevisionListsFilesAndBranchesResolveByNameOrSha() throws Exception {
    FakeHub.Repo data = hub.dataset("org/chat").file("data.jsonl", CONFIG);
    FakeHub.Repo parquet = data.branch("refs/convert/parquet").file("default/train/0000.parquet", WEIGHTS);
    String commit = data.commit("refs/convert/parquet");
    assertThat(commit).matches("[0-9a-f]{40}").isNotEqualTo(data.commit("main")).isEqualTo(parquet.commit());

    JsonNode info = json(send(hub.endpoint() + "/api/datasets/org/chat/revision/refs%2Fconvert%2Fparquet", "GET",
        null, null));
    assertThat(info.get("id").asText()).isEqualTo("org/chat");
    assertThat(info.get("sha").asText()).isEqualTo(commit);
    assertThat(info.get("siblings")).hasSize(1);
    assertThat(info.get("siblings").get(0).get("rfilename").asText()).isEqualTo("default/train/0000.parquet");
    JsonNode model = json(send(hub.endpoint() + "/api/models/org/tiny/revision/main", "GET", null, null));
    assertThat(model.get("siblings").findValuesAsText("rfilename")).containsExactly("config.json",
        "model.safetensors");

    HttpResponse<byte[]> byName = send(hub.endpoint()
        + "/datasets/org/chat/resolve/refs%2Fconvert%2Fparquet/default/train/0000.parquet", "HEAD", null, null);
    assertThat(byName.statusCode()).isEqualTo(302);
    assertThat(byName.headers().firstValue("X-Repo-Commit")).contains(commit);
    HttpResponse<byte[]> bySha = send(hub.endpoint() + "/datasets/org/chat/resolve/" + commit
        + "/default/train/0000.parquet", "HEAD", null, null);
    assertThat(bySha.statusCode()).isEqualTo(302);
    assertThat(send(hub.endpoint() + "/datasets/org/chat/resolve/main/data.jsonl", "GET", null, null).body())
        .isEqualTo(CONFIG);
  }

  @Test
  void dropAfterReallyTruncatesTheBody() throws Exception {
    hub.dropAfter("model.safetensors", 50_000, 1);
    URI blob = URI.create(hub.cdnEndpoint() + "/blobs/" + sha256(WEIGHTS));
    // Read as a stream so the bytes that did arrive can be counted before the failure.
    HttpResponse<InputStream> r = CLIENT.send(HttpRequest.newBuilder(blob).GET().build(),
        HttpResponse.BodyHandlers.ofInputStream());
    assertThat(r.headers().firstValueAsLong("Content-Length")).hasValue(WEIGHTS.length);
    long got = 0;
    IOException failure = null;
    try (InputStream in = r.body()) {
      byte[] buf = new byte[8192];
      for (int n; (n = in.read(buf)) >= 0; ) {
        got += n;
      }
    } catch (IOException e) {
      failure = e;
    }
    assertThat(failure != null || got < WEIGHTS.length).as("truncated: got %d, failure %s", got, failure).isTrue();
    assertThat(got).isLessThanOrEqualTo(50_000);
    assertThat(hub.bytesSent("model.safetensors")).isEqualTo(50_000);

    // The fault is spent: a resumed range request now completes.
    HttpResponse<byte[]> rest = send(blob.toString(), "GET", null, "bytes=" + got + "-");
    assertThat(rest.statusCode()).isEqualTo(206);
    assertThat(rest.body()).isEqualTo(Arrays.copyOfRange(WEIGHTS, (int) got, WEIGHTS.length));
  }

  @Test
  void smallFileDropOnHubFailsTheGet() throws Exception {
    hub.dropAfter("config.json", 4, 1);
    String url = hub.endpoint() + "/org/tiny/resolve/main/config.json";
    IOException failure = null;
    try {
      HttpResponse<byte[]> r = send(url, "GET", null, null);
      assertThat(r.body().length).isLessThan(CONFIG.length);
    } catch (IOException e) {
      failure = e;
    }
    assertThat(failure).isNotNull();
    assertThat(send(url, "GET", null, null).body()).isEqualTo(CONFIG);
  }

  @Test
  void corruptFlipsOneByteAndFailWithAnswersTheStatus() throws Exception {
    hub.corrupt("model.safetensors", 1).failWith("config.json", 503, 2);
    String blob = hub.cdnEndpoint() + "/blobs/" + sha256(WEIGHTS);
    HttpResponse<byte[]> bad = send(blob, "GET", null, null);
    assertThat(bad.statusCode()).isEqualTo(200);
    assertThat(bad.headers().firstValue("ETag")).contains("\"" + sha256(WEIGHTS) + "\"");
    int diffs = 0;
    for (int i = 0; i < WEIGHTS.length; i++) {
      diffs += bad.body()[i] != WEIGHTS[i] ? 1 : 0;
    }
    assertThat(diffs).isEqualTo(1);
    assertThat(send(blob, "GET", null, null).body()).isEqualTo(WEIGHTS);

    String url = hub.endpoint() + "/org/tiny/resolve/main/config.json";
    assertThat(send(url, "GET", null, null).statusCode()).isEqualTo(503);
    assertThat(send(url, "GET", null, null).statusCode()).isEqualTo(503);
    assertThat(send(url, "GET", null, null).statusCode()).isEqualTo(200);
  }

  @Test
  void servesConcurrentDownloads() throws Exception {
    String blob = hub.cdnEndpoint() + "/blobs/" + sha256(WEIGHTS);
    List<CompletableFuture<HttpResponse<byte[]>>> all = IntStream.range(0, 8)
        .mapToObj(i -> CLIENT.sendAsync(HttpRequest.newBuilder(URI.create(blob)).build(),
            HttpResponse.BodyHandlers.ofByteArray()))
        .toList();
    for (CompletableFuture<HttpResponse<byte[]>> f : all) {
      assertThat(f.get(10, TimeUnit.SECONDS).body()).isEqualTo(WEIGHTS);
    }
    assertThat(hub.bytesSent("model.safetensors")).isEqualTo(8L * WEIGHTS.length);
  }

  @Test
  void recordsAuthorizationPerHost() throws Exception {
    HttpResponse<byte[]> redirect = send(hub.endpoint() + "/org/tiny/resolve/main/model.safetensors", "GET",
        "Bearer hf_tok", null);
    send(redirect.headers().firstValue("Location").orElseThrow(), "GET", null, "bytes=10-");
    assertThat(hub.requests()).containsExactly(
        new FakeHub.Request("hub", "GET", "/org/tiny/resolve/main/model.safetensors", "Bearer hf_tok", null, 302),
        new FakeHub.Request("cdn", "GET", "/blobs/" + sha256(WEIGHTS), null, "bytes=10-", 206));
    assertThat(hub.totalBytesSent()).isEqualTo(WEIGHTS.length - 10);
    hub.resetCounters();
    assertThat(hub.requests()).isEmpty();
    assertThat(hub.totalBytesSent()).isZero();
  }

  private static HttpResponse<byte[]> send(String url, String method, String auth, String range)
      throws IOException, InterruptedException {
    HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(10))
        .method(method, HttpRequest.BodyPublishers.noBody());
    if (auth != null) {
      b.header("Authorization", auth);
    }
    if (range != null) {
      b.header("Range", range);
    }
    return CLIENT.send(b.build(), HttpResponse.BodyHandlers.ofByteArray());
  }

  private static JsonNode json(HttpResponse<byte[]> r) throws IOException {
    return new ObjectMapper().readTree(r.body());
  }

  private static String sha256(byte[] data) throws Exception {
    return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(data));
  }

  private static String gitBlobSha1(byte[] data) throws Exception {
    MessageDigest md = MessageDigest.getInstance("SHA-1");
    md.update(("blob " + data.length + "\0").getBytes(StandardCharsets.UTF_8));
    return HexFormat.of().formatHex(md.digest(data));
  }
}
