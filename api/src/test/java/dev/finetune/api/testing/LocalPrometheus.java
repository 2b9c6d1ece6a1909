package dev.finetune.api.testing;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.ServerSocket;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.TimeUnit;

/**
 * A real Prometheus server (Debian's {@code prometheus}, or {@code PROMETHEUS_BIN}) on loopback that scrapes
 * one target every second; skips the calling test when there is no binary.
 */
public final class LocalPrometheus implements AutoCloseable {
  private final Process process;
  private final int port;
  private final Path dir;
  private final HttpClient http = HttpClient.newHttpClient();

  private LocalPrometheus(Process process, int port, Path dir) {
    this.process = process;
    this.port = port;
    this.dir = dir;
  }

  public static LocalPrometheus scraping(String target) {
    String env = System.getenv("PROMETHEUS_BIN");
    Path binary = Path.of(env != null && !env.isBlank() ? env : "/usr/bin/prometheus");
    Skips.unless(Files.isExecutable(binary), "no Prometheus at " + binary + ": apt-get install -y prometheus (or set PROMETHEUS_BIN)");
    try {
      Path dir = Files.createTempDirectory("prometheus");
      Files.writeString(dir.resolve("prometheus.yml"), """
          global:
            scrape_interval: 1s
            evaluation_interval: 1s
          scrape_configs:
            - job_name: target
              static_configs:
                - targets: ['%s']
          """.formatted(target));
      int port;
      try (ServerSocket s = new ServerSocket(0)) {
        port = s.getLocalPort();
      }
      Process p = new ProcessBuilder(binary.toString(), "--config.file=" + dir.resolve("prometheus.yml"),
          "--storage.tsdb.path=" + dir.resolve("data"), "--web.listen-address=127.0.0.1:" + port)
          .redirectErrorStream(true).redirectOutput(dir.resolve("log").toFile()).start();
      LocalPrometheus prometheus = new LocalPrometheus(p, port, dir);
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
      while (System.nanoTime() < deadline) {
        if (!p.isAlive()) {
          throw new IllegalStateException("prometheus exited: " + Files.readString(dir.resolve("log")));
        }
        try {
          if (prometheus.get("/-/ready").statusCode() == 200) {
            return prometheus;
          }
        } catch (IOException notYet) {
          // starting
        }
        Thread.sleep(200);
      }
      throw new IllegalStateException("prometheus not ready in 30 s: " + Files.readString(dir.resolve("log")));
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    }
  }

  /** GET on the HTTP API, e.g. {@code /api/v1/query?query=...}; the body is JSON. */
  public HttpResponse<String> get(String pathAndQuery) throws IOException, InterruptedException {
    return http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + pathAndQuery))
        .timeout(Duration.ofSeconds(5)).build(), HttpResponse.BodyHandlers.ofString());
  }

  /** An instant PromQL query; returns the JSON body. */
  public String query(String promql) throws IOException, InterruptedException {
    return get("/api/v1/query?query=" + URLEncoder.encode(promql, StandardCharsets.UTF_8)).body();
  }

  @Override
  public void close() {
    process.destroy();
    try {
      if (!process.waitFor(10, TimeUnit.SECONDS)) {
        process.destroyForcibly();
      }
      try (var files = Files.walk(dir)) {
        files.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }
}
