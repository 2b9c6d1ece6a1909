package dev.finetune.trainer.hub;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.net.InetSocketAddress;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * An in-process stand-in for huggingface.co: a hub (resolve + api/revision) and a CDN on a second port,
 * so tests can check that the token never leaves the hub's origin. Faults are keyed by the file's path in
 * its repository and fire only on GETs that carry the file's bytes: the hub for small files, the CDN for LFS.
 */
public final class FakeHub implements AutoCloseable {
  /** One answered request; {@code path} is the raw path plus query as sent on the wire. */
  public record Request(String host, String method, String path, String authorization, String range, int status) {}

  private record FileEntry(String path, byte[] content, String sha256, String gitSha1) {}

  /** A pending fault: {@code arg} is the status or byte count, {@code left} counts down to 0. */
  private record Fault(long arg, AtomicInteger left) {}

  private static final Pattern LFS_EXT = Pattern.compile(".*\\.(safetensors|parquet|bin)$");
  private static final Pattern RANGE = Pattern.compile("bytes=(\\d+)-(\\d*)");
  private static final ObjectMapper JSON = new ObjectMapper();

  private final HttpServer hub;
  private final HttpServer cdn;
  private final ExecutorService executor = Executors.newFixedThreadPool(16, r -> {
    Thread t = new Thread(r, "fake-hub");
    t.setDaemon(true);
    return t;
  });
  private final Map<String, RepoData> repos = new ConcurrentHashMap<>();
  private final Map<String, FileEntry> blobs = new ConcurrentHashMap<>();
  private final Map<String, Fault> failures = new ConcurrentHashMap<>();
  private final Map<String, Fault> drops = new ConcurrentHashMap<>();
  private final Map<String, Fault> corruptions = new ConcurrentHashMap<>();
  private final Map<String, AtomicLong> sent = new ConcurrentHashMap<>();
  private final List<Request> requests = new CopyOnWriteArrayList<>();
  private volatile int lfsThreshold = 1 << 20;

  public FakeHub() {
    try {
      hub = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
      cdn = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    hub.createContext("/", ex -> handle(ex, "hub"));
    cdn.createContext("/", ex -> handle(ex, "cdn"));
    hub.setExecutor(executor);
    cdn.setExecutor(executor);
    hub.start();
    cdn.start();
  }

  public String endpoint() {
    return "http://127.0.0.1:" + hub.getAddress().getPort();
  }

  public String cdnEndpoint() {
    return "http://127.0.0.1:" + cdn.getAddress().getPort();
  }

  /** A model repository ("org/name"), created on first use; its default revision is "main". */
  public Repo model(String repo) {
    return new Repo(repos.computeIfAbsent("models/" + repo, k -> new RepoData(k, repo)), "main");
  }

  public Repo dataset(String repo) {
    return new Repo(repos.computeIfAbsent("datasets/" + repo, k -> new RepoData(k, repo)), "main");
  }

  /** Files larger than this (or with an LFS extension) are served through the CDN. */
  public FakeHub lfsThreshold(int bytes) {
    lfsThreshold = bytes;
    return this;
  }

  /** The next {@code times} GETs of {@code path} send full headers, then {@code bytes} of body, then hang up. */
  public FakeHub dropAfter(String path, long bytes, int times) {
    drops.put(path, new Fault(bytes, new AtomicInteger(times)));
    return this;
  }

  /** The next {@code times} GETs of {@code path} have one byte flipped; headers still carry the true hashes. */
  public FakeHub corrupt(String path, int times) {
    corruptions.put(path, new Fault(0, new AtomicInteger(times)));
    return this;
  }

  /** The next {@code times} GETs of {@code path} answer {@code status} instead of the content. */
  public FakeHub failWith(String path, int status, int times) {
    failures.put(path, new Fault(status, new AtomicInteger(times)));
    return this;
  }

  /** File body bytes actually written for {@code path}, hub and CDN together. */
  public long bytesSent(String path) {
    AtomicLong n = sent.get(path);
    return n == null ? 0 : n.get();
  }

  /** File body bytes written for all files (JSON and error bodies are not counted). */
  public long totalBytesSent() {
    return sent.values().stream().mapToLong(AtomicLong::get).sum();
  }

  /** A snapshot of the requests answered so far, in order. */
  public List<Request> requests() {
    return List.copyOf(requests);
  }

  public void resetCounters() {
    requests.clear();
    sent.clear();
  }

  @Override
  public void close() {
    hub.stop(0);
    cdn.stop(0);
    executor.shutdownNow();
  }

  /** A view of one revision of a repository; all views of a repository share its files and gate. */
  public final class Repo {
    private final RepoData data;
    private final String revision;

    private Repo(RepoData data, String revision) {
      this.data = data;
      this.revision = revision;
      data.revisions.computeIfAbsent(revision, r -> new ConcurrentHashMap<>());
    }

    public Repo file(String path, byte[] content) {
      FileEntry entry = new FileEntry(path, content.clone(), hex("SHA-256", content),
          hex("SHA-1", concat(("blob " + content.length + "\0").getBytes(StandardCharsets.UTF_8), content)));
      data.revisions.get(revision).put(path, entry);
      blobs.put(entry.sha256(), entry);
      return this;
    }

    public Repo gated(String token) {
      data.token = token;
      return this;
    }

    /** The same repository at another revision (e.g. "refs/convert/parquet"), created if new. */
    public Repo branch(String name) {
      return new Repo(data, name);
    }

    public String commit(String revision) {
      return data.commit(revision);
    }

    public String commit() {
      return data.commit(revision);
    }
  }

  private static final class RepoData {
    final String key;
    final String id;
    final Map<String, Map<String, FileEntry>> revisions = new ConcurrentHashMap<>();
    volatile String token;

    RepoData(String key, String id) {
      this.key = key;
      this.id = id;
    }

    String commit(String revision) {
      return hex("SHA-1", (key + "@" + revision).getBytes(StandardCharsets.UTF_8));
    }

    /** The revision named by branch name or by commit sha, if any. */
    Optional<Map.Entry<String, Map<String, FileEntry>>> find(String revision) {
      return revisions.entrySet().stream()
          .filter(e -> e.getKey().equals(revision) || commit(e.getKey()).equals(revision)).findFirst();
    }
  }

  private void handle(HttpExchange ex, String host) throws IOException {
    try (ex) {
      String method = ex.getRequestMethod();
      if (!method.equals("GET") && !method.equals("HEAD")) {
        error(ex, host, 405, null, "method not allowed");
      } else if (host.equals("cdn")) {
        serveBlob(ex);
      } else {
        serveHub(ex);
      }
    }
  }

  private void serveBlob(HttpExchange ex) throws IOException {
    String path = ex.getRequestURI().getRawPath();
    FileEntry file = path.startsWith("/blobs/") ? blobs.get(path.substring("/blobs/".length())) : null;
    if (file == null) {
      error(ex, "cdn", 404, null, "no such blob");
      return;
    }
    ex.getResponseHeaders().set("ETag", quote(file.sha256()));
    serveContent(ex, "cdn", file);
  }

  private void serveHub(HttpExchange ex) throws IOException {
    // Raw segments, decoded one by one, so that refs%2Fconvert%2Fparquet stays one segment.
    List<String> seg = new ArrayList<>(Arrays.asList(ex.getRequestURI().getRawPath().substring(1).split("/")));
    seg.replaceAll(s -> URLDecoder.decode(s.replace("+", "%2B"), StandardCharsets.UTF_8)); // a path's "+" is literal
    boolean api = seg.size() > 2 && seg.get(0).equals("api") && (seg.get(1).equals("models")
        || seg.get(1).equals("datasets"));
    String kind = api ? seg.get(1) : (!seg.isEmpty() && seg.get(0).equals("datasets") ? "datasets" : "models");
    int from = api ? 2 : kind.equals("datasets") ? 1 : 0;
    int marker = seg.indexOf(api ? "revision" : "resolve");
    if (marker < from + 1 || marker > from + 2 || marker + 1 >= seg.size() || (!api && marker + 2 >= seg.size())) {
      error(ex, "hub", 404, null, "no such endpoint");
      return;
    }
    RepoData repo = repos.get(kind + "/" + String.join("/", seg.subList(from, marker)));
    if (repo == null) {
      error(ex, "hub", 401, "RepoNotFound", "Repository not found");
      return;
    }
    String auth = ex.getRequestHeaders().getFirst("Authorization");
    if (repo.token != null && auth == null) {
      error(ex, "hub", 401, "GatedRepo", "Access to this gated repository requires a token");
      return;
    }
    if (repo.token != null && !auth.equals("Bearer " + repo.token)) {
      error(ex, "hub", 403, "GatedRepo", "This token has no access to this gated repository");
      return;
    }
    String wanted = api ? String.join("/", seg.subList(marker + 1, seg.size())) : seg.get(marker + 1);
    var revision = repo.find(wanted);
    if (revision.isEmpty()) {
      error(ex, "hub", 404, "RevisionNotFound", "Invalid rev id: " + wanted);
      return;
    }
    String commit = repo.commit(revision.get().getKey());
    Map<String, FileEntry> files = revision.get().getValue();
    ex.getResponseHeaders().set("X-Repo-Commit", commit);
    if (api) {
      List<Map<String, String>> siblings = files.keySet().stream().sorted().map(p -> Map.of("rfilename", p)).toList();
      Map<String, Object> info = new LinkedHashMap<>();
      info.put("id", repo.id);
      info.put("sha", commit);
      info.put("siblings", siblings);
      send(ex, "hub", 200, JSON.writeValueAsBytes(info));
      return;
    }
    FileEntry file = files.get(String.join("/", seg.subList(marker + 2, seg.size())));
    if (file == null) {
      error(ex, "hub", 404, "EntryNotFound", "Entry not found");
    } else if (LFS_EXT.matcher(file.path()).matches() || file.content().length > lfsThreshold) {
      ex.getResponseHeaders().set("Location", cdnEndpoint() + "/blobs/" + file.sha256());
      ex.getResponseHeaders().set("X-Linked-Etag", quote(file.sha256()));
      ex.getResponseHeaders().set("X-Linked-Size", Integer.toString(file.content().length));
      ex.getResponseHeaders().set("ETag", quote(file.sha256()));
      send(ex, "hub", 302, new byte[0]);
    } else {
      ex.getResponseHeaders().set("ETag", quote(file.gitSha1()));
      serveContent(ex, "hub", file);
    }
  }

  /** Sends a file (or the asked-for tail of it), applying at most one pending fault on GETs. */
  private void serveContent(HttpExchange ex, String host, FileEntry file) throws IOException {
    byte[] content = file.content();
    int start = 0;
    int end = content.length; // exclusive
    int status = 200;
    ex.getResponseHeaders().set("Accept-Ranges", "bytes");
    String range = ex.getRequestHeaders().getFirst("Range");
    if (range != null) {
      Matcher m = RANGE.matcher(range.trim());
      long first = m.matches() ? Long.parseLong(m.group(1)) : -1;
      if (first < 0 || first >= content.length) {
        ex.getResponseHeaders().set("Content-Range", "bytes */" + content.length);
        error(ex, host, 416, null, "range not satisfiable");
        return;
      }
      start = (int) first;
      end = m.group(2).isEmpty() ? content.length : (int) Math.min(content.length, Long.parseLong(m.group(2)) + 1);
      status = 206;
      ex.getResponseHeaders().set("Content-Range", "bytes " + start + "-" + (end - 1) + "/" + content.length);
    }
    boolean get = ex.getRequestMethod().equals("GET");
    Fault fail = get ? take(failures, file.path()) : null;
    if (fail != null) {
      error(ex, host, (int) fail.arg(), null, "injected failure");
      return;
    }
    byte[] body = Arrays.copyOfRange(content, start, end);
    long limit = body.length;
    Fault drop = get ? take(drops, file.path()) : null;
    if (drop != null) {
      limit = Math.min(limit, drop.arg());
    } else if (get && take(corruptions, file.path()) != null && body.length > 0) {
      body[body.length / 2] ^= (byte) 0xFF;
    }
    record(ex, host, status);
    if (!get) {
      // HEAD: the JDK server sends no body with length -1, so Content-Length is set by hand.
      ex.getResponseHeaders().set("Content-Length", Integer.toString(body.length));
      ex.sendResponseHeaders(status, -1);
      return;
    }
    ex.sendResponseHeaders(status, body.length);
    OutputStream out = ex.getResponseBody();
    AtomicLong counter = sent.computeIfAbsent(file.path(), p -> new AtomicLong());
    for (int off = 0; off < limit; off += 1 << 16) {
      int n = (int) Math.min(1 << 16, limit - off);
      counter.addAndGet(n); // before the write: a client that has the bytes finds them counted
      out.write(body, off, n);
    }
    if (limit < body.length) {
      // Short of the promised Content-Length: throwing out of the handler makes the JDK server
      // close the socket, so the client sees a truncated body rather than a hang.
      out.flush();
      throw new IOException("FakeHub: dropped " + file.path() + " after " + limit + " bytes");
    }
  }

  /** Uses up one firing of the fault for {@code path}; null when none is left. */
  private static Fault take(Map<String, Fault> faults, String path) {
    Fault f = faults.get(path);
    return f != null && f.left().getAndUpdate(i -> Math.max(0, i - 1)) > 0 ? f : null;
  }

  private void error(HttpExchange ex, String host, int status, String code, String message) throws IOException {
    if (code != null) {
      ex.getResponseHeaders().set("X-Error-Code", code);
    }
    ex.getResponseHeaders().set("Content-Type", "application/json");
    send(ex, host, status, JSON.writeValueAsBytes(Map.of("error", message)));
  }

  private void send(HttpExchange ex, String host, int status, byte[] body) throws IOException {
    record(ex, host, status);
    if (ex.getRequestMethod().equals("HEAD")) {
      ex.getResponseHeaders().set("Content-Length", Integer.toString(body.length));
      ex.sendResponseHeaders(status, -1);
    } else {
      ex.sendResponseHeaders(status, body.length == 0 ? -1 : body.length);
      ex.getResponseBody().write(body);
    }
  }

  private void record(HttpExchange ex, String host, int status) {
    String query = ex.getRequestURI().getRawQuery();
    requests.add(new Request(host, ex.getRequestMethod(),
        ex.getRequestURI().getRawPath() + (query == null ? "" : "?" + query),
        ex.getRequestHeaders().getFirst("Authorization"), ex.getRequestHeaders().getFirst("Range"), status));
  }

  private static String quote(String s) {
    return "\"" + s + "\"";
  }

  private static byte[] concat(byte[] a, byte[] b) {
    byte[] out = Arrays.copyOf(a, a.length + b.length);
    System.arraycopy(b, 0, out, a.length, b.length);
    return out;
  }

  private static String hex(String algorithm, byte[] data) {
    try {
      return HexFormat.of().formatHex(MessageDigest.getInstance(algorithm).digest(data));
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }
}
