package dev.finetune.operator.observer;

import dev.finetune.api.FineTuneJobs;
import dev.finetune.api.trainer.TrainerContract;
import dev.finetune.api.trainer.TrainerReport;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/** Reads a running trainer's {@code /progress} document. One short request; failures are reported, not thrown. */
public class ProgressClient {
  private static final Logger LOG = LoggerFactory.getLogger(ProgressClient.class);
  private final HttpClient http;
  private final Duration timeout;

  public ProgressClient(Duration timeout) {
    this.timeout = timeout;
    this.http = HttpClient.newBuilder()
        .connectTimeout(timeout)
        .version(HttpClient.Version.HTTP_1_1)
        .followRedirects(HttpClient.Redirect.NEVER)
        .build();
  }

  public static URI progressUri(String podIp, int port) {
    String host = podIp.contains(":") ? "[" + podIp + "]" : podIp;
    return URI.create("http://" + host + ":" + port + TrainerContract.PROGRESS_PATH);
  }

  /**
   * The progress document, fetched without blocking the caller; completes with null when the trainer is not
   * reachable yet or answers nonsense (never exceptionally).
   */
  public CompletableFuture<TrainerReport> fetchAsync(String podIp, int port) {
    URI uri = progressUri(podIp, port);
    return http.sendAsync(
            HttpRequest.newBuilder(uri).timeout(timeout).header("Accept", "application/json").GET().build(),
            HttpResponse.BodyHandlers.ofString())
        .thenApply(rsp -> {
          if (rsp.statusCode() != 200) {
            LOG.debug("msg=\"progress poll failed\" uri={} status={}", uri, rsp.statusCode());
            return null;
          }
          try {
            return FineTuneJobs.json().readValue(rsp.body(), TrainerReport.class);
          } catch (IOException e) {
            LOG.debug("msg=\"progress document not understood\" uri={} error=\"{}\"", uri, e.toString());
            return null;
          }
        })
        .exceptionally(e -> {
          LOG.debug("msg=\"progress poll failed\" uri={} error=\"{}\"", uri, e.toString());
          return null;
        });
  }
}
