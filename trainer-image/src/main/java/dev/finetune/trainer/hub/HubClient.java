package dev.finetune.trainer.hub;

import java.io.IOException;
import java.io.InputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpHeaders;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.Objects;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.LongConsumer;

/**
 * HTTP as the hub needs it: the token goes to the hub's own address only (redirects are followed here, not by the
 * JDK, so that a redirect to a CDN or any other host never carries it), the environment's proxies, and transfers that
 * append to a partial file with a {@code Range} request.
 */
final class HubClient {
  private static final int MAX_REDIRECTS = 10;
  /** A transfer that sends nothing for this long is dropped (Java's client has no read timeout for a body). */
  private static final Duration STALL = Duration.ofSeconds(60);
  private static final ScheduledExecutorService WATCHDOG = Executors.newSingleThreadScheduledExecutor(r -> {
    Thread t = new Thread(r, "hub-download-watchdog");
    t.setDaemon(true);
    return t;
  });

  private final HubSettings settings;
  private final HttpClient http;

  HubClient(HubSettings settings) {
    this.settings = settings;
    this.http = HttpClient.newBuilder().followRedirects(HttpClient.Redirect.NEVER).proxy(settings.proxies)
        .connectTimeout(Duration.ofSeconds(20)).build();
  }

  /** An answer that is not what the caller can use: the status, the hub's X-Error-Code, the address asked. */
  static final class HttpStatusException extends IOException {
    final int status;
    final String errorCode;
    final URI uri;

    HttpStatusException(URI uri, int status, HttpHeaders headers) {
      super("HTTP " + status + " for " + uri);
      this.uri = uri;
      this.status = status;
      this.errorCode = headers.firstValue("X-Error-Code").orElse(null);
    }
  }

  /**
   * HEAD, following redirects within the same host (a renamed repository) but not to another one: a large file's
   * answer is the hub's redirect itself, whose headers carry the checksum and size.
   */
  HttpResponse<Void> head(URI uri) throws IOException {
    URI at = uri;
    for (int hop = 0; hop <= MAX_REDIRECTS; hop++) {
      HttpResponse<Void> r = send(request(at).method("HEAD", HttpRequest.BodyPublishers.noBody()), at,
          HttpResponse.BodyHandlers.discarding());
      URI next = redirect(at, r);
      if (next == null || !sameOrigin(next, at)) {
        return r;
      }
      at = next;
    }
    throw new IOException("more than " + MAX_REDIRECTS + " redirects for " + uri);
  }

  /** A GET's body as text (the hub's JSON API). */
  String getText(URI uri) throws IOException {
    URI at = uri;
    for (int hop = 0; hop <= MAX_REDIRECTS; hop++) {
      HttpResponse<String> r = send(request(at).GET(), at, HttpResponse.BodyHandlers.ofString());
      URI next = redirect(at, r);
      if (next == null) {
        if (r.statusCode() != 200) {
          throw new HttpStatusException(at, r.statusCode(), r.headers());
        }
        return r.body();
      }
      at = next;
    }
    throw new IOException("more than " + MAX_REDIRECTS + " redirects for " + uri);
  }

  /**
   * Appends {@code uri}'s bytes to {@code part} from its current length on (a {@code Range} request; a server that
   * ignores it sends everything, and the file starts over). {@code progress} hears the file's length as it grows.
   */
  void appendTo(URI uri, Path part, LongConsumer progress) throws IOException {
    try (FileChannel out = FileChannel.open(part, StandardOpenOption.CREATE, StandardOpenOption.WRITE)) {
      long have = out.size();
      URI at = uri;
      HttpResponse<InputStream> r = null;
      for (int hop = 0; hop <= MAX_REDIRECTS; hop++) {
        HttpRequest.Builder req = request(at).GET();
        if (have > 0) {
          req.header("Range", "bytes=" + have + "-");
        }
        r = send(req, at, HttpResponse.BodyHandlers.ofInputStream());
        URI next = redirect(at, r);
        if (next == null) {
          break;
        }
        r.body().close();
        at = next;
        r = null;
      }
      if (r == null) {
        throw new IOException("more than " + MAX_REDIRECTS + " redirects for " + uri);
      }
      try (InputStream in = r.body()) {
        if (r.statusCode() == 416 && have > 0) {
          return; // nothing past what we have: the caller checks size and checksum
        }
        if (r.statusCode() == 200) {
          have = 0;
          out.truncate(0);
        } else if (r.statusCode() != 206 || !r.headers().firstValue("Content-Range").orElse("").startsWith("bytes " + have + "-")) {
          throw new HttpStatusException(at, r.statusCode(), r.headers());
        }
        out.position(have);
        copy(in, out, have, progress);
      }
    }
  }

  private static void copy(InputStream in, FileChannel out, long start, LongConsumer progress) throws IOException {
    AtomicLong lastRead = new AtomicLong(System.nanoTime());
    ScheduledFuture<?> watch = WATCHDOG.scheduleAtFixedRate(() -> {
      if (System.nanoTime() - lastRead.get() > STALL.toNanos()) {
        try {
          in.close(); // the blocked read below ends with an IOException
        } catch (IOException ignored) {
          // closing is all we can do
        }
      }
    }, 5, 5, TimeUnit.SECONDS);
    try {
      byte[] buf = new byte[1 << 20];
      long written = start;
      for (int n; (n = in.read(buf)) >= 0; ) {
        lastRead.set(System.nanoTime());
        ByteBuffer b = ByteBuffer.wrap(buf, 0, n);
        while (b.hasRemaining()) {
          out.write(b);
        }
        written += n;
        progress.accept(written);
      }
    } finally {
      watch.cancel(false);
    }
  }

  private HttpRequest.Builder request(URI uri) {
    HttpRequest.Builder b = HttpRequest.newBuilder(uri).timeout(Duration.ofMinutes(2))
        .header("User-Agent", "finetune-trainer");
    if (settings.token != null && sameOrigin(uri, settings.endpoint)) {
      b.header("Authorization", "Bearer " + settings.token);
    }
    return b;
  }

  private <T> HttpResponse<T> send(HttpRequest.Builder req, URI uri, HttpResponse.BodyHandler<T> body) throws IOException {
    try {
      return http.send(req.build(), body);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IOException("request for " + uri + " interrupted", e);
    }
  }

  /** Where a 3xx answer points, resolved against the address asked; null for any other answer. */
  private static URI redirect(URI from, HttpResponse<?> r) {
    int s = r.statusCode();
    if (s != 301 && s != 302 && s != 303 && s != 307 && s != 308) {
      return null;
    }
    return r.headers().firstValue("Location").map(from::resolve).orElse(null);
  }

  static boolean sameOrigin(URI a, URI b) {
    return a.getScheme().equalsIgnoreCase(b.getScheme()) && a.getHost().equalsIgnoreCase(b.getHost())
        && port(a) == port(b);
  }

  private static int port(URI u) {
    return u.getPort() != -1 ? u.getPort() : "https".equalsIgnoreCase(u.getScheme()) ? 443 : 80;
  }

  @Override
  public String toString() {
    return Objects.toString(settings);
  }
}
