package dev.finetune.trainer.hub;

import java.util.Locale;

/**
 * How far a large download is: a console line every few seconds (bytes, MB/s, time left) and the same words for
 * /progress and the job's status through a {@link DownloadListener}.
 */
final class DownloadProgress {
  private static final long EVERY_NANOS = 5_000_000_000L;

  private final String what;
  private final long total;
  private final long resumedAt;
  private final DownloadListener listener;
  private final long started = System.nanoTime();
  private long lastReport = Long.MIN_VALUE;
  private long done;

  DownloadProgress(String what, long total, long resumedAt, DownloadListener listener) {
    this.what = what;
    this.total = total;
    this.resumedAt = resumedAt;
    this.listener = listener;
    this.done = resumedAt;
    report(false);
  }

  void update(long bytes) {
    done = bytes;
    if (System.nanoTime() - lastReport >= EVERY_NANOS) {
      report(false);
    }
  }

  void finish() {
    done = total;
    report(true);
  }

  private void report(boolean finished) {
    lastReport = System.nanoTime();
    double seconds = (lastReport - started) / 1e9;
    double rate = seconds > 0 ? (done - resumedAt) / seconds : 0;
    String line;
    if (finished) {
      line = "downloaded " + what + ": " + bytes(total) + " in " + duration(seconds)
          + (rate > 0 ? String.format(Locale.ROOT, " (%.1f MB/s)", rate / 1e6) : "");
    } else {
      line = "downloading " + what + ": " + bytes(done) + " of " + bytes(total)
          + String.format(Locale.ROOT, " (%d%%)", total > 0 ? done * 100 / total : 0)
          + (rate > 0 ? String.format(Locale.ROOT, ", %.1f MB/s, about %s left", rate / 1e6,
              duration((total - done) / rate)) : "");
    }
    System.out.println(line);
    listener.onDownload(line, finished);
  }

  /** Bytes for a person: 512 B, 3.4 MB, 1.20 GB. */
  static String bytes(long n) {
    if (n < 1_000_000) {
      return n < 1000 ? n + " B" : String.format(Locale.ROOT, "%.1f kB", n / 1e3);
    }
    return n < 1_000_000_000 ? String.format(Locale.ROOT, "%.1f MB", n / 1e6) : String.format(Locale.ROOT, "%.2f GB", n / 1e9);
  }

  static String duration(double seconds) {
    long s = Math.round(seconds);
    return s < 60 ? s + " s" : s < 3600 ? s / 60 + " min " + s % 60 + " s" : s / 3600 + " h " + s % 3600 / 60 + " min";
  }
}
