package dev.finetune.trainer.hub;

import dev.finetune.trainer.BadJobException;
import dev.finetune.trainer.TransientException;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;

/** A dataset URL downloaded once into the run directory, written to a temp file and renamed. */
public final class Downloads {
  private Downloads() {}

  /**
   * Fetches {@code uri} into {@code target}. 401/403/404 mean the job names something that is not there
   * ({@link BadJobException}); a network failure is an {@link IOException} (a crash: the retry may succeed).
   */
  public static void fetch(URI uri, Path target) throws IOException {
    fetch(uri, target, "If the trainer cannot reach the internet at all, copy the files to a volume and use"
        + " spec.model.path or spec.dataset.path instead");
  }

  /** As {@link #fetch(URI, Path)}; {@code offline} tells a trainer that cannot connect what to do instead. */
  public static void fetch(URI uri, Path target, String offline) throws IOException {
    Path created = firstMissing(target.getParent());
    Files.createDirectories(target.getParent());
    try {
      download(uri, target, offline);
    } catch (IOException | RuntimeException e) {
      removeEmpty(target.getParent(), created); // no empty model-cache/ left behind
      throw e;
    }
  }

  private static void download(URI uri, Path target, String offline) throws IOException {
    Path part = target.resolveSibling(target.getFileName() + ".part");
    HttpClient client = HttpClient.newBuilder().followRedirects(HttpClient.Redirect.NORMAL)
        .proxy(HubSettings.environmentProxies())
        .connectTimeout(Duration.ofSeconds(20)).build();
    HttpRequest req = HttpRequest.newBuilder(uri).timeout(Duration.ofMinutes(30)).GET().build();
    HttpResponse<Path> resp;
    try {
      resp = client.send(req, HttpResponse.BodyHandlers.ofFile(part));
    } catch (IOException e) {
      Files.deleteIfExists(part);
      throw new TransientException("cannot download " + uri + ": " + Hub.networkProblem(e) + ". This may pass: "
          + TransientException.retry("where it stopped") + ". " + offline, e);
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
      throw new TransientException(msg + " (the server's problem, which may pass): "
          + TransientException.retry("where it stopped"), null);
    }
    Files.move(part, target, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
  }

  /** The topmost directory of {@code dir} that does not exist yet, or null when it exists. */
  private static Path firstMissing(Path dir) {
    Path missing = null;
    for (Path p = dir.toAbsolutePath(); p != null && !Files.exists(p); p = p.getParent()) {
      missing = p;
    }
    return missing;
  }

  /** Deletes {@code dir} and its parents up to {@code top} while they are empty. */
  private static void removeEmpty(Path dir, Path top) {
    if (top == null) {
      return;
    }
    for (Path p = dir.toAbsolutePath(); p != null && p.startsWith(top); p = p.getParent()) {
      try {
        Files.deleteIfExists(p);
      } catch (IOException e) {
        return; // not empty: something else is in it
      }
    }
  }
}
