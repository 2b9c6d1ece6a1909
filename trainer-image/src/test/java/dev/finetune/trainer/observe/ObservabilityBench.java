package dev.finetune.trainer.observe;

import dev.finetune.api.EpochRecord;
import dev.finetune.api.FineTuneJob;
import dev.finetune.api.FineTuneJobs;
import dev.finetune.api.trainer.TrainerContract;
import dev.finetune.trainer.train.Trainer;
import dev.finetune.trainer.train.TrainingListener;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * What observability costs (not a test; run it with {@code bench/observability-bench.sh}):
 * <ol>
 *   <li>training speed: one run of a small job whose steps alternate in blocks of three between observed (the
 *       listener gets the step; /metrics and /progress are fetched every 250 ms) and unobserved; median step
 *       time of each kind. Interleaving makes the load of other processes on a shared machine hit both alike;
 *       whole A/B runs ({@code OBS_BENCH_AB=1}, with process CPU seconds a step) were too noisy here to tell
 *       anything;
 *   <li>the listener's own time per onStep call (a million calls), to put next to a step's time;
 *   <li>latency of /metrics and /progress over HTTP (median, p90, max of N requests) with a 100-epoch history.
 * </ol>
 * Arguments: {@code [pairs=3 (A/B runs)] [epochs=4] [scrapes=100]}.
 */
public final class ObservabilityBench {
  static final String JOB = """
      apiVersion: finetune.dev/v1alpha1
      kind: FineTuneJob
      metadata:
        name: bench
        namespace: bench
      spec:
        model:
          scratch:
            layers: 2
            embeddingDim: 64
            heads: 4
            contextLength: 128
            seed: 1
        dataset:
          synthetic:
            size: 400
            seed: 2
          promptStyle: phi3
          maskPrompt: true
          maxLength: 128
        training:
          epochs: %d
          batchSize: 16
          learningRate: 0.003
          seed: 3
        checkpoints:
          keep: 1
        evaluation:
          enabled: false
      """;

  private ObservabilityBench() {}

  public static void main(String[] args) throws Exception {
    int pairs = args.length > 0 ? Integer.parseInt(args[0]) : 3;
    int epochs = args.length > 1 ? Integer.parseInt(args[1]) : 4;
    int scrapes = args.length > 2 ? Integer.parseInt(args[2]) : 100;
    Path dir = Files.createTempDirectory("obs-bench");
    Path jobFile = dir.resolve("job.yaml");
    Files.writeString(jobFile, JOB.formatted(epochs));
    FineTuneJob job = FineTuneJobs.readValid(jobFile);
    HttpClient http = HttpClient.newHttpClient();

    // Warm-up: engine start, JIT.
    run(job, dir, dir.resolve("warmup"), false, http);
    if (System.getenv("OBS_BENCH_AB") != null) {
      List<double[]> without = new ArrayList<>();
      List<double[]> with = new ArrayList<>();
      for (int i = 0; i < pairs; i++) {
        without.add(run(job, dir, dir.resolve("a" + i), false, http));
        with.add(run(job, dir, dir.resolve("b" + i), true, http));
      }
      System.out.println("run          steps  seconds  steps/s  scrapes  cpu-s/step");
      for (int i = 0; i < pairs; i++) {
        print("without " + i, without.get(i));
        print("with    " + i, with.get(i));
      }
      double a = median(without.stream().mapToDouble(r -> r[0] / r[1]).toArray());
      double b = median(with.stream().mapToDouble(r -> r[0] / r[1]).toArray());
      System.out.printf(Locale.ROOT, "whole runs, median steps/s: without %.3f, with %.3f (%+.2f%%)%n", a, b,
          (b - a) / a * 100);
    }
    interleaved(job, dir, dir.resolve("interleaved"), 3, http);

    // The listener's own cost per step.
    try (Observability obs = Observability.on(null, null)) {
      obs.bind(job, dir.resolve("micro"));
      int n = 1_000_000;
      for (int round = 0; round < 2; round++) {
        long t0 = System.nanoTime();
        for (int s = 1; s <= n; s++) {
          obs.onStep(new TrainingListener.StepInfo(1, s, n, 1.0 / s, 1e-3, s * 1000L, 1000, 10, 0.5));
        }
        long t1 = System.nanoTime();
        if (round == 1) {
          System.out.printf(Locale.ROOT, "onStep: %.0f ns a call (%d calls)%n", (t1 - t0) / (double) n, n);
        }
      }
    }

    // Scrape latency, with a 100-epoch history in /progress.
    try (Observability obs = Observability.onLoopback(null)) {
      obs.bind(job, dir.resolve("scrape"));
      for (int e = 1; e <= 100; e++) {
        EpochRecord rec = new EpochRecord(e, 2.0 / e, 2.1 / e);
        rec.step = e * 10L;
        rec.tokens = e * 10_000L;
        rec.learningRate = 1e-3;
        rec.seconds = 3.0;
        obs.onStep(new TrainingListener.StepInfo(e, e * 10L, 1000, 1.0, 1e-3, e * 10_000L, 5000, 100, 0.3));
        obs.onEpoch(new TrainingListener.EpochInfo(rec, 2.1 / e, e, true, 0));
        obs.onCheckpoint(new TrainingListener.CheckpointInfo(dir, "checkpoints/epoch-" + e, 0.2, "best"));
      }
      String base = "http://127.0.0.1:" + obs.port();
      for (String path : new String[] {TrainerContract.METRICS_PATH, TrainerContract.PROGRESS_PATH}) {
        double[] ms = new double[scrapes];
        int bytes = 0;
        for (int i = 0; i < 20; i++) {
          get(http, base + path);
        }
        for (int i = 0; i < scrapes; i++) {
          long t0 = System.nanoTime();
          bytes = get(http, base + path).length();
          ms[i] = (System.nanoTime() - t0) / 1e6;
        }
        Arrays.sort(ms);
        System.out.printf(Locale.ROOT, "%-9s %d requests: median %.2f ms, p90 %.2f ms, max %.2f ms (%d bytes)%n", path,
            scrapes, ms[scrapes / 2], ms[(int) (scrapes * 0.9)], ms[scrapes - 1], bytes);
      }
      System.out.println("scrape URL for curl: " + base + TrainerContract.METRICS_PATH);
      if (System.getenv("OBS_BENCH_HOLD") != null) {
        Thread.sleep(Long.parseLong(System.getenv("OBS_BENCH_HOLD")) * 1000);
      }
    }
  }

  /**
   * One run whose steps alternate, in blocks of {@code block}, between observed (the listener gets the step and
   * /metrics plus /progress are fetched every 250 ms, 60 times more often than a 15 s Prometheus scrape) and
   * unobserved. Load from other processes then hits both kinds alike. A step's time is from one onStep call to
   * the next, so it includes the listener's work; intervals across an epoch end (validation, checkpoint) are left
   * out.
   */
  static void interleaved(FineTuneJob job, Path jobDir, Path out, int block, HttpClient http) throws Exception {
    List<Double> on = new ArrayList<>();
    List<Double> off = new ArrayList<>();
    AtomicInteger scrapes = new AtomicInteger();
    try (Observability obs = Observability.onLoopback(null)) {
      AtomicBoolean observed = new AtomicBoolean();
      AtomicBoolean stop = new AtomicBoolean();
      String base = "http://127.0.0.1:" + obs.port();
      Thread scraper = new Thread(() -> {
        while (!stop.get()) {
          try {
            if (observed.get()) {
              get(http, base + TrainerContract.METRICS_PATH);
              get(http, base + TrainerContract.PROGRESS_PATH);
              scrapes.incrementAndGet();
            }
            Thread.sleep(250);
          } catch (InterruptedException e) {
            return;
          } catch (Exception e) {
            throw new IllegalStateException(e);
          }
        }
      }, "bench-scraper");
      scraper.setDaemon(true);
      scraper.start();
      TrainingListener switching = new TrainingListener() {
        long last;
        boolean lastObserved;
        boolean skip = true;

        @Override
        public void onStart(RunInfo run) {
          obs.onStart(run);
        }

        @Override
        public void onStep(StepInfo s) {
          long now = System.nanoTime();
          if (!skip) {
            (lastObserved ? on : off).add((now - last) / 1e6);
          }
          skip = false;
          boolean o = (s.step() / block) % 2 == 1;
          observed.set(o);
          if (o) {
            obs.onStep(s);
          }
          lastObserved = o;
          last = now;
        }

        @Override
        public void onEpoch(EpochInfo e) {
          obs.onEpoch(e);
          skip = true;
        }

        @Override
        public void onCheckpoint(CheckpointInfo c) {
          obs.onCheckpoint(c);
        }

        @Override
        public void onFinish(Result r) {
          obs.onFinish(r);
        }
      };
      new Trainer(job, jobDir, out, switching).run();
      stop.set(true);
      scraper.interrupt();
      scraper.join();
    }
    double[] a = off.stream().mapToDouble(Double::doubleValue).toArray();
    double[] b = on.stream().mapToDouble(Double::doubleValue).toArray();
    double ma = median(a);
    double mb = median(b);
    System.out.printf(Locale.ROOT, "interleaved steps (blocks of %d): without listener %d steps, median %.1f ms"
        + " (%.3f steps/s, mean %.1f ms); with listener and %d scrape pairs %d steps, median %.1f ms (%.3f steps/s,"
        + " mean %.1f ms); difference of medians %+.2f%%%n", block, a.length, ma, 1000 / ma, mean(a), scrapes.get(),
        b.length, mb, 1000 / mb, mean(b), (mb - ma) / ma * 100);
  }

  static double mean(double[] v) {
    return Arrays.stream(v).average().orElse(Double.NaN);
  }

  /** {steps, seconds, scrapes} of one training run. */
  static double[] run(FineTuneJob job, Path jobDir, Path out, boolean observed, HttpClient http) throws Exception {
    AtomicInteger steps = new AtomicInteger();
    TrainingListener count = new TrainingListener() {
      @Override
      public void onStep(StepInfo step) {
        steps.incrementAndGet();
      }
    };
    AtomicInteger scrapes = new AtomicInteger();
    long t0;
    long t1;
    long c0 = cpu();
    if (!observed) {
      t0 = System.nanoTime();
      new Trainer(job, jobDir, out, count).run();
      t1 = System.nanoTime();
    } else {
      try (Observability obs = Observability.onLoopback(null)) {
        AtomicBoolean stop = new AtomicBoolean();
        String base = "http://127.0.0.1:" + obs.port();
        Thread scraper = new Thread(() -> {
          while (!stop.get()) {
            try {
              get(http, base + TrainerContract.METRICS_PATH);
              get(http, base + TrainerContract.PROGRESS_PATH);
              scrapes.incrementAndGet();
              Thread.sleep(1000);
            } catch (InterruptedException e) {
              return;
            } catch (Exception e) {
              throw new IllegalStateException(e);
            }
          }
        }, "bench-scraper");
        scraper.setDaemon(true);
        scraper.start();
        t0 = System.nanoTime();
        new Trainer(job, jobDir, out, TrainingListener.all(List.of(obs, count))).run();
        t1 = System.nanoTime();
        stop.set(true);
        scraper.interrupt();
        scraper.join();
      }
    }
    return new double[] {steps.get(), (t1 - t0) / 1e9, scrapes.get(), (cpu() - c0) / 1e9};
  }

  /** CPU time of this process (all threads, libtorch's included). */
  static long cpu() {
    return ((com.sun.management.OperatingSystemMXBean) java.lang.management.ManagementFactory
        .getOperatingSystemMXBean()).getProcessCpuTime();
  }

  static String get(HttpClient http, String url) throws Exception {
    HttpResponse<String> r = http.send(HttpRequest.newBuilder(URI.create(url)).GET().build(),
        HttpResponse.BodyHandlers.ofString());
    if (r.statusCode() != 200) {
      throw new IllegalStateException(url + " answered " + r.statusCode());
    }
    return r.body();
  }

  static void print(String name, double[] r) {
    System.out.printf(Locale.ROOT, "%-12s %5.0f  %7.2f  %7.3f  %7.0f  %10.3f%n", name, r[0], r[1], r[0] / r[1], r[2],
        r[3] / r[0]);
  }

  static double median(double[] v) {
    double[] s = v.clone();
    Arrays.sort(s);
    return s.length % 2 == 1 ? s[s.length / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  }
}
