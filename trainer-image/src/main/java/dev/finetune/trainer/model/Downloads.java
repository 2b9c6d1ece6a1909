package dev.finetune.trainer.model;

import dev.finetune.trainer.BadJobException;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;

/** One-time downloads into the run directory (hub models, dataset URLs), written to a temp file and renamed. */
public final class Downloads {
  private Downloads() {}

  /**
   * Fetches {@code uri} into {@code target}. 401/403/404 mean the job names something that is not there
   * ({@link BadJobException}); a network failure is an {@link IOException} (a crash: the retry may succeed).
   */
  public static void fetch(URI uri, Path target) throws IOException {
    Files.createDirectories(target.getParent());
    Path part = target.resolveSibling(target.getFileName() + ".part");
    HttpClient client = HttpClient.newBuilder().followRedirects(HttpClient.Redirect.NORMAL)
        .connectTimeout(Duration.ofSeconds(20)).build();
    HttpRequest req = HttpRequest.newBuilder(uri).timeout(Duration.ofMinutes(30)).GET().build();
    HttpResponse<Path> resp;
    try {
      resp = client.send(req, HttpResponse.BodyHandlers.ofFile(part));
    } catch (IOException e) {
      Files.deleteIfExists(part);
      throw new IOException("cannot download " + uri + " (" + e + "); check the network from the trainer, or"
          + " provide the files another way (spec.model.path / spec.dataset.path)", e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IOException("download of " + uri + " interrupted", e);
    }
    int code = resp.statusCode();
    if (code != 200) {
      Files.deleteIfExists(part);
      String msg = "downloading " + uri + " failed with HTTP " + code;
      if (code == 401 || code == 403 || code == 404) {
        throw new BadJobException(msg + ": it does not exist or is not public; check the repository, revision and file name");
      }
      throw new IOException(msg);
    }
    Files.move(part, target, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
  }
}
