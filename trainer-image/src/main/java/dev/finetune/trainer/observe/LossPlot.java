package dev.finetune.trainer.observe;

import dev.finetune.api.EpochRecord;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * {@code loss.svg}: training and validation loss per epoch, the best epoch marked, for people who look at the
 * volume rather than Grafana. Each epoch is one {@code <circle class="point train">} and one
 * {@code <circle class="point validation">} with {@code data-epoch} and {@code data-loss} attributes; the best
 * epoch has a dashed line and a ring with {@code class="best"}. Plain SVG (data-* attributes as SVG 2 allows), no
 * script, no external file.
 */
public final class LossPlot {
  static final int WIDTH = 720;
  static final int HEIGHT = 420;
  private static final int LEFT = 70;
  private static final int RIGHT = 30;
  private static final int TOP = 50;
  private static final int BOTTOM = 60;
  private static final String TRAIN_COLOUR = "#1f77b4";
  private static final String VALIDATION_COLOUR = "#ff7f0e";
  private static final String BEST_COLOUR = "#2ca02c";

  private LossPlot() {}

  /** Writes the plot through a temporary file and a rename. */
  public static void write(Path file, String title, List<EpochRecord> history, int bestEpoch) throws IOException {
    Summaries.writeAtomically(file, svg(title, history, bestEpoch));
  }

  public static String svg(String title, List<EpochRecord> history, int bestEpoch) {
    List<EpochRecord> h = new ArrayList<>();
    for (EpochRecord r : history) {
      if (r != null && r.epoch != null) {
        h.add(r);
      }
    }
    double[] ticks = lossTicks(h);
    Axes axes;
    if (ticks == null) { // no finite loss yet: an empty frame over epoch 1
      ticks = niceTicks(0, 1, 5);
      axes = new Axes(1, 1, ticks[0], ticks[ticks.length - 1]);
    } else {
      axes = new Axes(h.stream().mapToInt(r -> r.epoch).min().getAsInt(), h.stream().mapToInt(r -> r.epoch).max()
          .getAsInt(), ticks[0], ticks[ticks.length - 1]);
    }

    StringBuilder sb = new StringBuilder(4096);
    header(sb, title);
    grid(sb, axes, ticks);
    // Best epoch: a dashed vertical line behind the curves.
    EpochRecord best = null;
    for (EpochRecord r : h) {
      if (r.epoch == bestEpoch) {
        best = r;
      }
    }
    if (best != null) {
      sb.append(String.format(Locale.ROOT, "<line class=\"best\" data-epoch=\"%d\" x1=\"%.2f\" y1=\"%d\" x2=\"%.2f\""
              + " y2=\"%d\" stroke=\"%s\" stroke-dasharray=\"5,4\"/>%n", best.epoch, axes.x(best.epoch), TOP,
          axes.x(best.epoch), HEIGHT - BOTTOM, BEST_COLOUR));
    }
    series(sb, "train", TRAIN_COLOUR, h, axes, true);
    series(sb, "validation", VALIDATION_COLOUR, h, axes, false);
    if (best != null && best.validationLoss != null && Double.isFinite(best.validationLoss)) {
      bestRing(sb, best, axes);
    }
    legend(sb);
    if (h.isEmpty()) {
      sb.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">no finished epoch yet</text>%n",
          WIDTH / 2, HEIGHT / 2));
    }
    sb.append("</svg>\n");
    return sb.toString();
  }

  /** Ticks over the finite losses; null when there is none. */
  private static double[] lossTicks(List<EpochRecord> h) {
    double lo = Double.POSITIVE_INFINITY;
    double hi = Double.NEGATIVE_INFINITY;
    for (EpochRecord r : h) {
      for (Double v : new Double[] {r.trainLoss, r.validationLoss}) {
        if (v != null && Double.isFinite(v)) {
          lo = Math.min(lo, v);
          hi = Math.max(hi, v);
        }
      }
    }
    return lo > hi ? null : niceTicks(lo, hi, 5);
  }

  private static void header(StringBuilder sb, String title) {
    sb.append("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    sb.append("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"").append(WIDTH)
        .append("\" height=\"").append(HEIGHT).append("\" viewBox=\"0 0 ").append(WIDTH).append(' ').append(HEIGHT)
        .append("\" font-family=\"sans-serif\" font-size=\"12\">\n");
    sb.append("<title>").append(escape(title)).append("</title>\n");
    sb.append("<rect x=\"0\" y=\"0\" width=\"").append(WIDTH).append("\" height=\"").append(HEIGHT)
        .append("\" fill=\"white\"/>\n");
    sb.append("<text x=\"").append(WIDTH / 2).append("\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">")
        .append(escape(title)).append("</text>\n");
  }

  /** Grid lines, tick labels, the frame and the axis names. */
  private static void grid(StringBuilder sb, Axes axes, double[] ticks) {
    sb.append("<g class=\"y-axis\" stroke=\"#dddddd\">\n");
    for (double t : ticks) {
      double y = axes.y(t);
      sb.append(String.format(Locale.ROOT, "<line x1=\"%d\" y1=\"%.2f\" x2=\"%d\" y2=\"%.2f\"/>%n", LEFT, y,
          WIDTH - RIGHT, y));
    }
    sb.append("</g>\n<g class=\"y-labels\" text-anchor=\"end\">\n");
    for (double t : ticks) {
      sb.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"%.2f\">%s</text>%n", LEFT - 6, axes.y(t) + 4,
          label(t, ticks)));
    }
    sb.append("</g>\n");
    // x ticks: every epoch when there are few, else about ten.
    int span = axes.lastEpoch() - axes.firstEpoch();
    int every = Math.max(1, (int) Math.ceil((span + 1) / 10.0));
    sb.append("<g class=\"x-labels\" text-anchor=\"middle\">\n");
    for (int e = axes.firstEpoch(); e <= axes.lastEpoch(); e += every) {
      sb.append(String.format(Locale.ROOT, "<text x=\"%.2f\" y=\"%d\">%d</text>%n", axes.x(e), HEIGHT - BOTTOM + 18, e));
    }
    sb.append("</g>\n");
    sb.append(String.format(Locale.ROOT,
        "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#444444\"/>%n", LEFT, TOP,
        WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM));
    sb.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">epoch</text>%n",
        LEFT + (WIDTH - LEFT - RIGHT) / 2, HEIGHT - BOTTOM + 38));
    sb.append(String.format(Locale.ROOT,
        "<text x=\"18\" y=\"%d\" text-anchor=\"middle\" transform=\"rotate(-90 18 %d)\">loss</text>%n",
        TOP + (HEIGHT - TOP - BOTTOM) / 2, TOP + (HEIGHT - TOP - BOTTOM) / 2));
  }

  private static void bestRing(StringBuilder sb, EpochRecord best, Axes axes) {
    double x = axes.x(best.epoch);
    double y = axes.y(best.validationLoss);
    sb.append(String.format(Locale.ROOT, "<circle class=\"best\" data-epoch=\"%d\" cx=\"%.2f\" cy=\"%.2f\" r=\"8\""
        + " fill=\"none\" stroke=\"%s\" stroke-width=\"2\"/>%n", best.epoch, x, y, BEST_COLOUR));
    String text = String.format(Locale.ROOT, "best: epoch %d, validation loss %.4f", best.epoch, best.validationLoss);
    sb.append(String.format(Locale.ROOT, "<text class=\"best-label\" x=\"%d\" y=\"%d\" fill=\"%s\">%s</text>%n",
        LEFT + 8, TOP - 8, BEST_COLOUR, escape(text)));
  }

  private static void legend(StringBuilder sb) {
    int lx = WIDTH - RIGHT - 150;
    sb.append("<g class=\"legend\">\n");
    sb.append(String.format(Locale.ROOT, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2\"/>"
        + "<text x=\"%d\" y=\"%d\">training loss</text>%n", lx, TOP + 16, lx + 24, TOP + 16, TRAIN_COLOUR, lx + 30,
        TOP + 20));
    sb.append(String.format(Locale.ROOT, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2\"/>"
        + "<text x=\"%d\" y=\"%d\">validation loss</text>%n", lx, TOP + 34, lx + 24, TOP + 34, VALIDATION_COLOUR,
        lx + 30, TOP + 38));
    sb.append("</g>\n");
  }

  private static void series(StringBuilder sb, String name, String colour, List<EpochRecord> h, Axes axes,
      boolean train) {
    StringBuilder points = new StringBuilder();
    StringBuilder circles = new StringBuilder();
    for (EpochRecord r : h) {
      Double v = train ? r.trainLoss : r.validationLoss;
      if (v == null || !Double.isFinite(v)) {
        continue;
      }
      double x = axes.x(r.epoch);
      double y = axes.y(v);
      points.append(String.format(Locale.ROOT, "%.2f,%.2f ", x, y));
      circles.append(String.format(Locale.ROOT, "<circle class=\"point %s\" data-epoch=\"%d\" data-loss=\"%s\""
          + " cx=\"%.2f\" cy=\"%.2f\" r=\"3.5\" fill=\"%s\"><title>epoch %d: %s loss %.4f</title></circle>%n",
          name, r.epoch, Double.toString(v), x, y, colour, r.epoch, name, v));
    }
    sb.append("<g class=\"series ").append(name).append("\">\n");
    if (points.length() > 0) {
      sb.append("<polyline class=\"line ").append(name).append("\" fill=\"none\" stroke=\"").append(colour)
          .append("\" stroke-width=\"2\" points=\"").append(points.toString().strip()).append("\"/>\n");
    }
    sb.append(circles);
    sb.append("</g>\n");
  }

  private record Axes(int firstEpoch, int lastEpoch, double yMin, double yMax) {
    double x(int epoch) {
      double w = WIDTH - LEFT - RIGHT;
      if (lastEpoch == firstEpoch) {
        return LEFT + w / 2;
      }
      double pad = 0.03 * w;
      return LEFT + pad + (epoch - firstEpoch) * (w - 2 * pad) / (lastEpoch - firstEpoch);
    }

    double y(double v) {
      double hgt = HEIGHT - TOP - BOTTOM;
      return TOP + (yMax - v) * hgt / (yMax - yMin);
    }
  }

  /** Round tick values that cover [lo, hi]. */
  static double[] niceTicks(double lo, double hi, int target) {
    if (hi - lo < 1e-12) {
      double pad = Math.max(Math.abs(lo) * 0.05, 1e-3);
      lo -= pad;
      hi += pad;
    }
    double raw = (hi - lo) / target;
    double mag = Math.pow(10, Math.floor(Math.log10(raw)));
    double step = mag;
    for (double m : new double[] {1, 2, 2.5, 5, 10}) {
      if (m * mag >= raw) {
        step = m * mag;
        break;
      }
    }
    double start = Math.floor(lo / step) * step;
    double end = Math.ceil(hi / step) * step;
    int n = (int) Math.round((end - start) / step) + 1;
    double[] ticks = new double[n];
    for (int i = 0; i < n; i++) {
      ticks[i] = start + i * step;
    }
    return ticks;
  }

  private static String label(double v, double[] ticks) {
    double step = ticks.length > 1 ? ticks[1] - ticks[0] : 1;
    int decimals = Math.max(0, Math.min(6, (int) Math.ceil(-Math.log10(step)) + 1));
    return String.format(Locale.ROOT, "%." + decimals + "f", v);
  }

  static String escape(String s) {
    if (s == null) {
      return "";
    }
    StringBuilder sb = new StringBuilder(s.length());
    for (char c : s.toCharArray()) {
      switch (c) {
        case '<' -> sb.append("&lt;");
        case '>' -> sb.append("&gt;");
        case '&' -> sb.append("&amp;");
        case '"' -> sb.append("&quot;");
        case '\'' -> sb.append("&apos;");
        default -> {
          if (c >= 0x20 || c == '\t' || c == '\n' || c == '\r') {
            sb.append(c);
          }
        }
      }
    }
    return sb.toString();
  }
}
