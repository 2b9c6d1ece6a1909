package dev.finetune.trainer.hub;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.finetune.trainer.BadJobException;
import dev.finetune.trainer.TransientException;
import java.io.IOException;
import java.io.InputStream;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Optional;
import java.util.regex.Pattern;

/**
 * One repository of a Hugging Face hub (or a mirror), at one revision, as files in the HF cache: the one place that
 * resolves, downloads and caches, for models and datasets alike.
 *
 * <p>The revision is resolved once to a commit (the hub's {@code X-Repo-Commit}), which the cache's
 * {@code refs/REVISION} keeps: every later file, and every later run on the same cache, reads that commit, so a
 * restart needs no network and trains on the same weights. A file is fetched by a {@code HEAD} for its checksum
 * and size, then a {@code GET} that resumes a partial file; large (LFS) files are checked against their sha256.
 */
public final class Hub {
  private static final Pattern COMMIT = Pattern.compile("[0-9a-f]{40}");
  private static final Pattern SHA256 = Pattern.compile("[0-9a-f]{64}");
  /** Files at least this large show progress. */
  static final long PROGRESS_BYTES = 10L << 20;
  /** Tries of one transfer within a run; each resumes where the last stopped. */
  static final int TRIES = 5;
  private static final ObjectMapper JSON = new ObjectMapper();

  private final HubSettings settings;
  private final HubClient client;
  private final HubCache cache;
  private final RepoKind kind;
  private final String repo;
  private final String revision;
  private final DownloadListener listener;
  /** Filled on first need: from the revision when it is a commit, the cache's ref, or the hub's answer. */
  private String commit;
  /** Milliseconds slept between tries: 1 s, 2 s, 4 s, ... (tests shorten it). */
  long backoffMillis = 1000;

  public Hub(HubSettings settings, Path cacheRoot, RepoKind kind, String repo, String revision, DownloadListener listener) {
    this.settings = settings;
    this.client = new HubClient(settings);
    this.cache = new HubCache(cacheRoot, kind, repo);
    this.kind = kind;
    this.repo = repo;
    this.revision = revision == null || revision.isBlank() ? "main" : revision;
    this.listener = listener == null ? DownloadListener.NONE : listener;
  }

  public String repo() {
    return repo;
  }

  public String revision() {
    return revision;
  }

  /** The commit this revision is, known without the network when the cache has resolved it before. */
  public Optional<String> cachedCommit() throws IOException {
    if (commit == null) {
      Optional<String> known = COMMIT.matcher(revision).matches() ? Optional.of(revision) : cache.ref(revision);
      if (known.isPresent()) {
        pin(known.get());
      }
    }
    return Optional.ofNullable(commit);
  }

  /** The snapshot folder of the resolved commit, where {@link #file} puts files; resolves the commit if need be. */
  public Path snapshot() throws IOException {
    return cache.snapshot(commit());
  }

  /** A file of the snapshot, downloaded unless it is cached; a file the hub does not have is a bad job. */
  public Path file(String path) throws IOException {
    return fetch(path, true).orElseThrow();
  }

  /** As {@link #file}, empty when the hub does not have it (remembered in the cache, so it is not asked again). */
  public Optional<Path> optionalFile(String path) throws IOException {
    return fetch(path, false);
  }

  /** The resolved commit: the cache's, else the hub's answer for the repository's file list. */
  public String commit() throws IOException {
    if (cachedCommit().isEmpty()) {
      list(); // resolves it
    }
    return commit;
  }

  /** Every file of the repository at the resolved commit (the hub's API; the answer is kept beside the cache). */
  public List<String> list() throws IOException {
    Path kept = cache.repoDir().resolve("files").resolve(cachedCommit().orElse("none") + ".json");
    JsonNode info;
    if (Files.isRegularFile(kept)) {
      info = JSON.readTree(kept.toFile());
    } else {
      String at = cachedCommit().orElse(revision);
      URI uri = URI.create(settings.endpoint + "/api/" + kind.folderPrefix() + "/" + repo + "/revision/" + encode(at));
      try {
        info = JSON.readTree(client.getText(uri));
      } catch (HubClient.HttpStatusException e) {
        throw refused(e, null);
      } catch (IOException e) {
        throw unreachable(uri, e);
      }
      String sha = info.path("sha").asText("");
      if (!COMMIT.matcher(sha).matches()) {
        throw new TransientException("the hub's answer for " + describe() + " names no commit (" + uri + "); is "
            + "HF_ENDPOINT a Hugging Face hub or a mirror of one?", null);
      }
      resolved(sha);
      kept = cache.repoDir().resolve("files").resolve(sha + ".json");
      Files.createDirectories(kept.getParent());
      Path tmp = HubCache.beside(kept);
      JSON.writeValue(tmp.toFile(), info);
      Files.move(tmp, kept, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }
    List<String> files = new ArrayList<>();
    info.path("siblings").forEach(s -> files.add(s.path("rfilename").asText()));
    return files;
  }

  private Optional<Path> fetch(String path, boolean required) throws IOException {
    if (cachedCommit().isPresent()) {
      Path entry = cache.snapshot(commit).resolve(path);
      if (Files.isRegularFile(entry)) {
        return Optional.of(entry);
      }
      if (!required && cache.knownMissing(commit, path)) {
        return Optional.empty();
      }
    }
    URI uri = resolveUri(path);
    HttpResponse<Void> head;
    try {
      head = client.head(uri);
    } catch (IOException e) {
      throw unreachable(uri, e);
    }
    int status = head.statusCode();
    String repoCommit = head.headers().firstValue("X-Repo-Commit").orElse(null);
    if (status == 404 && "EntryNotFound".equals(head.headers().firstValue("X-Error-Code").orElse(null))) {
      if (repoCommit != null) {
        resolved(repoCommit);
        cache.rememberMissing(commit, path);
      }
      if (!required) {
        return Optional.empty();
      }
    }
    if (status != 200 && status / 100 != 3) {
      throw refused(new HubClient.HttpStatusException(uri, status, head.headers()), path);
    }
    if (repoCommit == null && commit == null) {
      throw new TransientException("the hub's answer for " + uri + " has no X-Repo-Commit, so the revision cannot"
          + " be pinned; is HF_ENDPOINT a Hugging Face hub or a mirror of one?", null);
    }
    if (repoCommit != null) {
      resolved(repoCommit);
    }
    String etag = etag(head).orElseThrow(() -> new TransientException("the hub's answer for " + uri + " has no ETag;"
        + " is HF_ENDPOINT a Hugging Face hub or a mirror of one?", null));
    long size = head.headers().firstValueAsLong("X-Linked-Size")
        .orElse(status == 200 ? head.headers().firstValueAsLong("Content-Length").orElse(-1) : -1);
    URI at = resolveUri(path); // by commit now: every file from the same one, whatever the branch does meanwhile
    cache.locked(etag, () -> {
      if (!Files.isRegularFile(cache.blob(etag))) {
        download(at, path, etag, size);
      }
      return null;
    });
    return Optional.of(cache.link(commit, path, etag));
  }

  /** Fills {@code blobs/ETAG} from {@code uri}, resuming a partial file, within {@link #TRIES} tries. */
  private void download(URI uri, String path, String etag, long size) throws IOException {
    Path part = cache.incomplete(etag);
    Files.createDirectories(part.getParent());
    long resumedAt = Files.isRegularFile(part) ? Files.size(part) : 0;
    System.out.println("downloading " + path + " of " + describe() + " from " + settings.endpoint + " into "
        + cache.snapshot(commit) + (size >= 0 ? " (" + DownloadProgress.bytes(size) + ")" : "")
        + (resumedAt > 0 ? ", resuming at " + DownloadProgress.bytes(resumedAt) : ""));
    DownloadProgress progress = size >= PROGRESS_BYTES
        ? new DownloadProgress(path + " of " + repo, size, resumedAt, listener) : null;
    for (int attempt = 1; ; attempt++) {
      try {
        client.appendTo(uri, part, progress == null ? n -> {} : progress::update);
        long got = Files.size(part);
        if (size < 0 || got == size) {
          break;
        }
        if (got > size) {
          Files.deleteIfExists(part);
          throw new TransientException("downloading " + path + " of " + describe() + " gave " + got + " bytes where"
              + " the hub said " + size + "; the partial file is removed. This may pass: "
              + TransientException.retry("and downloads it again"), null);
        }
        throw new IOException("the transfer ended at " + got + " of " + size + " bytes");
      } catch (HubClient.HttpStatusException e) {
        if (e.status < 500 && e.status != 408 && e.status != 429) {
          throw refused(e, path);
        }
        retryOrGiveUp(uri, path, attempt, e);
      } catch (TransientException e) {
        throw e;
      } catch (IOException e) {
        retryOrGiveUp(uri, path, attempt, e);
      }
    }
    if (SHA256.matcher(etag).matches()) {
      String actual = sha256(part);
      if (!actual.equals(etag)) {
        Files.deleteIfExists(part);
        throw new TransientException("downloading " + path + " of " + describe() + ": its sha256 is " + actual
            + " where the hub states " + etag + " (X-Linked-Etag); the corrupt file is removed. This may pass: "
            + TransientException.retry("and downloads it again"), null);
      }
    }
    Files.move(part, cache.blob(etag), StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    if (progress != null) {
      progress.finish();
    }
  }

  private void retryOrGiveUp(URI uri, String path, int attempt, IOException e) throws IOException {
    if (attempt >= TRIES) {
      throw new TransientException("cannot download " + path + " of " + describe() + " (" + uri + ") after "
          + TRIES + " tries: " + networkProblem(e) + ". The partial file is kept, so this may pass: "
          + TransientException.retry("and the download where it stopped") + ". " + offline(), e);
    }
    long wait = backoffMillis << (attempt - 1);
    System.out.println("download of " + path + " stopped (" + networkProblem(e) + "); try " + (attempt + 1) + " of "
        + TRIES + " in " + wait / 1000.0 + " s resumes it");
    try {
      Thread.sleep(wait);
    } catch (InterruptedException ie) {
      Thread.currentThread().interrupt();
      throw new IOException("download of " + uri + " interrupted", ie);
    }
  }

  /** The hub named the commit: kept in the cache's refs, so that it is resolved once. */
  private void resolved(String sha) throws IOException {
    if (commit == null) {
      pin(sha);
      if (!revision.equals(sha)) {
        cache.writeRef(revision, sha);
      }
    }
  }

  private void pin(String sha) {
    commit = sha;
    listener.onResolved(kind, repo, revision, sha);
  }

  private URI resolveUri(String path) {
    String at = commit != null ? commit : revision;
    return URI.create(settings.endpoint + "/" + kind.urlPrefix() + repo + "/resolve/" + encode(at) + "/" + path);
  }

  private static String encode(String revision) {
    return URLEncoder.encode(revision, StandardCharsets.UTF_8);
  }

  private String describe() {
    return (kind == RepoKind.DATASET ? "dataset " : "") + repo + "@" + revision;
  }

  /**
   * The hub said no: a bad job (exit 3, no retry), thrown, for what will not change by itself; the transient rest is
   * returned for the caller to throw.
   */
  private IOException refused(HubClient.HttpStatusException e, String path) {
    String what = path == null ? describe() : path + " of " + describe();
    String code = e.errorCode == null ? "" : " (" + e.errorCode + ")";
    String page = settings.endpoint + "/" + kind.urlPrefix() + repo;
    switch (e.status) {
      case 401 -> throw new BadJobException("the hub answered 401" + code + " for " + what + ": "
          + (settings.hasToken()
              ? "the token was not accepted; check that it is valid (" + settings.endpoint + "/settings/tokens)"
              : "the repository is gated or private, or does not exist, and the trainer has no token") + ". "
          + HOW_TO_GIVE_TOKEN + " For a gated model, also accept its terms on " + page + " with the token's account.");
      case 403 -> throw new BadJobException("the hub answered 403" + code + " for " + what + ": the token has no access to it."
          + " For a gated repository, accept its terms on " + page + " with the token's account and wait for the"
          + " approval; a fine-grained token must also be allowed to read it. " + HOW_TO_GIVE_TOKEN);
      case 407 -> throw new BadJobException("the proxy (HTTPS_PROXY or HTTP_PROXY) answered 407 for " + what + ": it"
          + " wants credentials, which the trainer does not send; use a proxy that admits the trainer's address, or"
          + " NO_PROXY for a hub or mirror reachable without it");
      case 404 -> throw new BadJobException("the hub has no " + ("RevisionNotFound".equals(e.errorCode)
          ? "revision '" + revision + "' of " + repo + "; check " + (kind == RepoKind.DATASET ? "spec.dataset.hub.revision" : "spec.model.revision")
              + " (a branch, tag or commit)"
          : "EntryNotFound".equals(e.errorCode) ? "file " + what + "; the revision may be too old or not this kind of repository"
          : what + " (HTTP 404" + code + "); check the repository name and revision"));
      default -> {
        return new TransientException("the hub answered HTTP " + e.status + code + " for " + what + " (" + e.uri
          + "), the server's problem, which may pass: " + TransientException.retry("and the download where it stopped"),
          e);
      }
    }
  }

  static final String HOW_TO_GIVE_TOKEN = "Give a token with read access: on Kubernetes, kubectl create secret generic"
      + " hf-token --from-literal=token=hf_... and set spec.model.hubTokenSecret: {name: hf-token, key: token}; in a"
      + " local run, set HF_TOKEN (or log in with huggingface-cli login).";

  private TransientException unreachable(URI uri, IOException e) {
    return new TransientException("cannot reach the hub for " + describe() + " (" + uri + "): " + networkProblem(e)
        + ". This may pass: " + TransientException.retry("where it stopped") + ". " + offline(), e);
  }

  private String offline() {
    return "Where the trainer cannot reach " + settings.endpoint.getHost() + " at all, set HF_ENDPOINT to a mirror"
        + " (HTTPS_PROXY for a proxy), or fetch the files where you can, with huggingface-cli download " + repo
        + (kind == RepoKind.DATASET ? " --repo-type dataset" : "") + " --revision " + revision + ", and give the"
        + " trainer that cache as HF_HUB_CACHE (spec.model.cacheClaim on Kubernetes)" + (kind == RepoKind.MODEL
            ? " or the model's folder (--local-dir DIR: config.json, tokenizer.json, model.safetensors or its index"
                + " and shards) as spec.model.path"
            : " or the data files as spec.dataset.path");
  }

  /** The hub's checksum for a file: X-Linked-Etag for large files, else the ETag, without quotes or W/. */
  private static Optional<String> etag(HttpResponse<?> r) {
    return r.headers().firstValue("X-Linked-Etag").or(() -> r.headers().firstValue("ETag"))
        .map(e -> e.replaceFirst("^W/", "").replace("\"", "").strip()).filter(e -> !e.isEmpty());
  }

  /** What went wrong on the network, in words. */
  public static String networkProblem(IOException e) {
    for (Throwable t = e; t != null; t = t.getCause()) {
      if (t instanceof java.net.UnknownHostException) {
        return "the host name does not resolve (no network or no DNS)";
      }
    }
    if (e instanceof java.net.ConnectException) {
      return "the connection was refused or the network is unreachable";
    }
    if (e instanceof java.net.http.HttpTimeoutException || e instanceof java.net.SocketTimeoutException) {
      return "the server did not answer in time";
    }
    return e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage();
  }

  static String sha256(Path file) throws IOException {
    try (InputStream in = Files.newInputStream(file)) {
      MessageDigest d = MessageDigest.getInstance("SHA-256");
      byte[] buf = new byte[1 << 20];
      for (int n; (n = in.read(buf)) > 0; ) {
        d.update(buf, 0, n);
      }
      return HexFormat.of().formatHex(d.digest());
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }
}
