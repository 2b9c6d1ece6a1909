package dev.finetune.trainer.observe;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import dev.finetune.api.trainer.TrainerContract;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Supplier;

/**
 * The trainer's one HTTP port: {@code GET /metrics} (Prometheus text), {@code GET /progress} (TrainerReport
 * JSON) and {@code GET /healthz} ({@code ok}). Two daemon threads serve it, never the training thread; other
 * paths answer 404, other methods 405.
 */
public final class ObservabilityServer implements AutoCloseable {
  static {
    // The JDK server writes headers and body as separate segments: with Nagle's algorithm and the client's
    // delayed ACK, every response on a kept-alive connection (Prometheus, the operator's poller) waits ~40 ms.
    // TCP_NODELAY on accepted sockets removes that (measured: 48 ms -> 3 ms median). Read when the JDK's server
    // configuration first loads, so it must be set before any HttpServer of this JVM starts.
    if (System.getProperty("sun.net.httpserver.nodelay") == null) {
      System.setProperty("sun.net.httpserver.nodelay", "true");
    }
  }

  private final HttpServer server;
  private final ExecutorService executor;

  /**
   * Binds {@code address} (port 0: any free port) and starts serving. {@code metrics} and {@code progress}
   * produce the bodies on each request.
   */
  public ObservabilityServer(InetSocketAddress address, Supplier<String> metrics, Supplier<String> progress)
      throws IOException {
    server = HttpServer.create(address, 32);
    AtomicInteger n = new AtomicInteger();
    executor = Executors.newFixedThreadPool(2, r -> {
      Thread t = new Thread(r, "finetune-http-" + n.incrementAndGet());
      t.setDaemon(true);
      return t;
    });
    server.setExecutor(executor);
    server.createContext("/", exchange -> {
      try (exchange) {
        handle(exchange, metrics, progress);
      } catch (RuntimeException | IOException e) {
        System.err.println("observability: " + exchange.getRequestURI() + " failed: " + e);
      }
    });
    server.start();
  }

  private static void handle(HttpExchange ex, Supplier<String> metrics, Supplier<String> progress) throws IOException {
    String path = ex.getRequestURI().getPath();
    String method = ex.getRequestMethod();
    boolean known = path.equals(TrainerContract.METRICS_PATH) || path.equals(TrainerContract.PROGRESS_PATH)
        || path.equals(TrainerContract.HEALTH_PATH);
    if (!known) {
      send(ex, 404, "text/plain; charset=utf-8", "not found; try " + TrainerContract.METRICS_PATH + ", "
          + TrainerContract.PROGRESS_PATH + " or " + TrainerContract.HEALTH_PATH + "\n");
      return;
    }
    if (!method.equals("GET") && !method.equals("HEAD")) {
      ex.getResponseHeaders().set("Allow", "GET, HEAD");
      send(ex, 405, "text/plain; charset=utf-8", "method not allowed\n");
      return;
    }
    switch (path) {
      case TrainerContract.METRICS_PATH -> send(ex, 200, TrainerMetrics.contentType(), metrics.get());
      case TrainerContract.PROGRESS_PATH -> send(ex, 200, "application/json", progress.get());
      default -> send(ex, 200, "text/plain; charset=utf-8", "ok\n");
    }
  }

  private static void send(HttpExchange ex, int status, String contentType, String body) throws IOException {
    byte[] bytes = body.getBytes(StandardCharsets.UTF_8);
    ex.getResponseHeaders().set("Content-Type", contentType);
    ex.getResponseHeaders().set("Cache-Control", "no-store");
    boolean head = ex.getRequestMethod().equals("HEAD");
    ex.sendResponseHeaders(status, head ? -1 : bytes.length == 0 ? -1 : bytes.length);
    if (!head && bytes.length > 0) {
      try (OutputStream os = ex.getResponseBody()) {
        os.write(bytes);
      }
    }
  }

  /** The bound port (the chosen one when asked for port 0). */
  public int port() {
    return server.getAddress().getPort();
  }

  @Override
  public void close() {
    server.stop(0);
    executor.shutdownNow();
  }
}
