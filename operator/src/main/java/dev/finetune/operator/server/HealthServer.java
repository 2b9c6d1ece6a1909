package dev.finetune.operator.server;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.Executors;
import java.util.function.BooleanSupplier;
import java.util.function.Supplier;

/**
 * {@code /metrics} (Prometheus text), {@code /healthz} (liveness) and {@code /readyz} (readiness) on one port.
 */
public class HealthServer implements AutoCloseable {
  private final HttpServer server;

  public HealthServer(int port, PrometheusMeterRegistry registry, BooleanSupplier live, BooleanSupplier ready,
      Supplier<String> detail) throws IOException {
    server = HttpServer.create(new InetSocketAddress(port), 0);
    server.setExecutor(Executors.newFixedThreadPool(2, r -> {
      Thread t = new Thread(r, "http-health");
      t.setDaemon(true);
      return t;
    }));
    server.createContext("/metrics", x -> respond(x, 200, "text/plain; version=0.0.4; charset=utf-8", registry.scrape()));
    server.createContext("/healthz", x -> probe(x, live.getAsBoolean(), detail));
    server.createContext("/readyz", x -> probe(x, ready.getAsBoolean(), detail));
  }

  public HealthServer start() {
    server.start();
    return this;
  }

  public int port() {
    return server.getAddress().getPort();
  }

  private static void probe(HttpExchange x, boolean ok, Supplier<String> detail) throws IOException {
    respond(x, ok ? 200 : 503, "text/plain; charset=utf-8", ok ? "ok\n" : "not ok: " + detail.get() + "\n");
  }

  private static void respond(HttpExchange x, int code, String type, String body) throws IOException {
    try (x) {
      if (!"GET".equals(x.getRequestMethod()) && !"HEAD".equals(x.getRequestMethod())) {
        x.sendResponseHeaders(405, -1);
        return;
      }
      byte[] bytes = body.getBytes(StandardCharsets.UTF_8);
      x.getResponseHeaders().set("Content-Type", type);
      x.sendResponseHeaders(code, "HEAD".equals(x.getRequestMethod()) ? -1 : bytes.length);
      if (!"HEAD".equals(x.getRequestMethod())) {
        try (OutputStream out = x.getResponseBody()) {
          out.write(bytes);
        }
      }
    }
  }

  @Override
  public void close() {
    server.stop(0);
  }
}
