package dev.finetune.operator.testing;

import com.sun.net.httpserver.HttpServer;
import dev.finetune.api.FineTuneJobs;
import dev.finetune.api.trainer.TrainerReport;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

/** A trainer's /progress endpoint on 127.0.0.1, serving whatever the test sets; counts the polls. */
public final class FakeTrainer implements AutoCloseable {
  private final HttpServer server;
  private final AtomicReference<TrainerReport> progress = new AtomicReference<>();
  private final AtomicInteger polls = new AtomicInteger();

  public FakeTrainer() throws IOException {
    server = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 0);
    server.createContext("/progress", x -> {
      polls.incrementAndGet();
      TrainerReport p = progress.get();
      byte[] body = (p == null ? "{\"phase\":\"Starting\",\"epoch\":0}" : FineTuneJobs.toJson(p))
          .getBytes(StandardCharsets.UTF_8);
      x.getResponseHeaders().set("Content-Type", "application/json");
      x.sendResponseHeaders(200, body.length);
      try (OutputStream out = x.getResponseBody()) {
        out.write(body);
      }
    });
    server.start();
  }

  public int port() {
    return server.getAddress().getPort();
  }

  public void set(TrainerReport p) {
    progress.set(p);
  }

  public int polls() {
    return polls.get();
  }

  @Override
  public void close() {
    server.stop(0);
  }
}
