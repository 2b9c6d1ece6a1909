package dev.finetune.trainer.observe;

import dev.finetune.api.CheckpointStatus;
import dev.finetune.api.EpochRecord;
import dev.finetune.api.EvaluationStatus;
import dev.finetune.api.FineTuneJob;
import dev.finetune.api.FineTuneJobs;
import dev.finetune.api.trainer.TrainerContract;
import dev.finetune.api.trainer.TrainerReport;
import dev.finetune.trainer.hub.RepoKind;
import dev.finetune.trainer.train.TrainingListener;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Everything a person or the operator sees of a training run, behind one {@link TrainingListener}: the HTTP
 * port ({@code /metrics}, {@code /progress}, {@code /healthz}), {@code loss.svg} after every epoch, and at the
 * end {@code summary.json} plus the same summary cut to 4 KiB in the termination log.
 *
 * <p>Use in the trainer's main:
 * <pre>{@code
 * try (Observability obs = Observability.fromEnvironment()) {   // before the spec is read: failures are reported too
 *   listeners.add(obs);
 *   FineTuneJob job = FineTuneJobs.readValid(file);
 *   obs.bind(job, outputDir);                                    // labels, where summary.json goes
 *   Trainer trainer = new Trainer(job, jobDir, outputDir, TrainingListener.all(listeners));
 *   Result r = trainer.run();
 *   Evaluation.afterTraining(r, trainer.testSplit(), obs);       // responses.jsonl, judge scores; never throws
 * } // on errors call obs.onError(e, exitCode) before leaving the block
 * }</pre>
 *
 * <p>The port: {@code FINETUNE_PORT} (the operator sets it), else {@link TrainerContract#DEFAULT_PORT}, so a local
 * run serves its metrics on localhost too; {@code 0} turns the server off. A port that cannot be bound is
 * reported on stderr and training goes on without the server. The termination log: {@code
 * FINETUNE_TERMINATION_LOG}, else {@code /dev/termination-log} when that file exists (the kubelet creates it in a
 * Pod; a local run does not write into {@code /dev}).
 *
 * <p>Every callback catches its own failures (a full disk must not fail training because of a plot) and
 * reports them on stderr. The summary is written at {@code onFinish} and {@code onError}, again when the
 * evaluation ends, and at {@link #close()}.
 */
public final class Observability implements TrainingListener, AutoCloseable {
  public static final String STARTING = "Starting";
  public static final String DOWNLOADING = TrainerContract.PHASE_DOWNLOADING;
  public static final String TRAINING = "Training";
  public static final String EVALUATING = "Evaluating";
  public static final String SUCCEEDED = "Succeeded";
  public static final String FAILED = "Failed";

  private final ObservabilityServer server;
  private final Path terminationLog;
  private volatile TrainerMetrics metrics;
  private volatile FineTuneJob job;
  private volatile Path outputDir;

  // Run state, guarded by this: the one report that /progress, summary.json and the termination log show.
  private final TrainerReport report = newReport();
  /** Succeeded or Failed once training ended (the phase shows Evaluating meanwhile). */
  private String finalPhase;
  private boolean closed;
  /**
   * A rerun refused because the spec changed: summary.json keeps the record of the run in the folder (the refusal is
   * this command's answer, on stderr and in the termination log, not the run's new state).
   */
  private volatile boolean keepRunRecord;
  /** The summary file that could not be written, so that its error is printed once, not at every rewrite. */
  private volatile Path unwritable;
  private final Throughput throughput = new Throughput();

  private Observability(InetSocketAddress address, Path terminationLog) {
    this.terminationLog = terminationLog;
    ObservabilityServer s = null;
    if (address != null) {
      try {
        s = new ObservabilityServer(address, this::scrape, this::progressJson);
      } catch (IOException | RuntimeException e) {
        System.err.println("observability: cannot serve /metrics and /progress on " + address + ": " + e
            + "; training goes on without them (set " + TrainerContract.ENV_PORT + " to a free port, or 0)");
      }
    }
    this.server = s;
  }

  /**
   * Starts serving on {@code port} on all interfaces (0: no server) and reports the summary to
   * {@code terminationLog} (null: none). Bind a job later with {@link #bind} or through {@code onStart}.
   */
  public static Observability start(int port, Path terminationLog) {
    if (port < 0 || port > 65535) {
      throw new IllegalArgumentException("port " + port + " is not 0 (off) or 1-65535");
    }
    return new Observability(port == 0 ? null : new InetSocketAddress(port), terminationLog);
  }

  /** {@link #start(int, Path)} and {@link #bind} in one. */
  public static Observability start(FineTuneJob job, Path outputDir, int port, Path terminationLog) {
    Observability o = start(port, terminationLog);
    o.bind(job, outputDir);
    return o;
  }

  /** Serves on {@code address} exactly (port 0: a free port; null: no server); for tests and benchmarks. */
  public static Observability on(InetSocketAddress address, Path terminationLog) {
    return new Observability(address, terminationLog);
  }

  /** On the loopback interface, a free port. */
  public static Observability onLoopback(Path terminationLog) {
    return on(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), terminationLog);
  }

  /**
   * Port and termination log from the environment, as the class comment says. A {@code FINETUNE_PORT} that is
   * not a port is reported on stderr and the default port is used: metrics are not worth failing training for.
   */
  public static Observability fromEnvironment() {
    int port;
    try {
      port = port(System.getenv());
    } catch (IllegalArgumentException e) {
      System.err.println("observability: " + e.getMessage() + "; using " + TrainerContract.DEFAULT_PORT);
      port = TrainerContract.DEFAULT_PORT;
    }
    return start(port, terminationLog(System.getenv()));
  }

  /** {@code FINETUNE_PORT}, else 9090; a value that is not a port is an error that names the variable. */
  public static int port(Map<String, String> env) {
    String v = env.get(TrainerContract.ENV_PORT);
    if (v == null || v.isBlank()) {
      return TrainerContract.DEFAULT_PORT;
    }
    try {
      int p = Integer.parseInt(v.strip());
      if (p >= 0 && p <= 65535) {
        return p;
      }
    } catch (NumberFormatException e) {
      // reported below
    }
    throw new IllegalArgumentException(TrainerContract.ENV_PORT + "='" + v + "' is not a port (1-65535, or 0 for none)");
  }

  /** {@code FINETUNE_TERMINATION_LOG}, else /dev/termination-log if it exists, else none (null). */
  public static Path terminationLog(Map<String, String> env) {
    String v = env.get(TrainerContract.ENV_TERMINATION_LOG);
    if (v != null && !v.isBlank()) {
      return Path.of(v);
    }
    Path def = Path.of(TrainerContract.DEFAULT_TERMINATION_LOG);
    return Files.isRegularFile(def) ? def : null;
  }

  /**
   * The job being run and its run directory: the metric labels ({@code finetune_job} = metadata.name,
   * {@code finetune_namespace} = metadata.namespace, "default" when the file names none) and where
   * summary.json and loss.svg go. Later calls are ignored.
   */
  public synchronized void bind(FineTuneJob job, Path outputDir) {
    if (metrics != null) {
      return;
    }
    this.job = job;
    this.outputDir = outputDir;
    String name = job != null && job.getMetadata() != null && job.getMetadata().getName() != null
        ? job.getMetadata().getName() : "job";
    String ns = job != null && job.getMetadata() != null && job.getMetadata().getNamespace() != null
        ? job.getMetadata().getNamespace() : "default";
    if (job != null && job.getSpec() != null && job.getSpec().training != null && job.getSpec().training.epochs != null) {
      report.epochs = job.getSpec().training.epochs;
    }
    TrainerMetrics m = new TrainerMetrics(name, ns);
    m.plan(0, report.epochs == null ? 0 : report.epochs, 0, 0);
    metrics = m;
  }

  // ---- TrainingListener ----

  @Override
  public void onResolved(RepoKind kind, String repo, String revision, String commit) {
    synchronized (this) {
      if (kind == RepoKind.MODEL) {
        report.modelCommit = commit;
      } else {
        report.datasetCommit = commit;
      }
    }
  }

  @Override
  public void onDownload(String message, boolean finished) {
    guard("onDownload", () -> {
      synchronized (this) {
        if (finished) {
          if (DOWNLOADING.equals(report.phase)) {
            report.phase = STARTING;
            report.message = null;
          }
        } else {
          report.phase = DOWNLOADING;
          report.message = message;
        }
      }
    });
  }

  @Override
  public void onStart(RunInfo run) {
    guard("onStart", () -> {
      bind(run.job(), run.outputDir());
      boolean resumed;
      synchronized (this) {
        TrainerReport p = report;
        p.phase = TRAINING;
        p.epochs = run.epochs();
        p.steps = run.totalSteps();
        p.step = run.startStep();
        p.epoch = Math.min(run.startEpoch() + 1, run.epochs());
        if (run.restoredFrom() != null || p.checkpoint != null) {
          checkpoint().restoredFrom = run.restoredFrom();
        }
        p.precision = run.precision();
        p.device = run.device();
        p.history = new ArrayList<>(run.history() == null ? List.of() : run.history());
        double minDelta = run.job().getSpec().earlyStopping == null || run.job().getSpec().earlyStopping.minDelta == null
            ? 0 : run.job().getSpec().earlyStopping.minDelta;
        for (EpochRecord r : p.history) {
          p.trainLoss = r.trainLoss;
          p.validationLoss = r.validationLoss;
          if (r.validationLoss != null && (p.bestValidationLoss == null || r.validationLoss < p.bestValidationLoss - minDelta)) {
            p.bestValidationLoss = r.validationLoss;
            p.bestEpoch = r.epoch;
          }
        }
        resumed = !p.history.isEmpty();
        long tokens = !resumed || p.history.get(p.history.size() - 1).tokens == null ? 0
            : p.history.get(p.history.size() - 1).tokens;
        metrics.plan(p.epoch, run.epochs(), run.startStep(), tokens);
        if (p.trainLoss != null && p.validationLoss != null) {
          metrics.epoch(p.trainLoss, p.validationLoss, p.bestValidationLoss);
        }
      }
      if (resumed) {
        writePlot();
      }
    });
  }

  @Override
  public void onStep(StepInfo s) {
    guard("onStep", () -> {
      double rate;
      synchronized (this) {
        rate = throughput.at(System.nanoTime(), s.tokens(), s.tokensPerSecond());
        TrainerReport p = report;
        p.phase = TRAINING;
        p.epoch = s.epoch();
        p.step = s.step();
        p.steps = s.totalSteps();
        p.stepLoss = finite(s.loss());
        p.learningRate = finite(s.learningRate());
        p.tokensPerSecond = finite(rate);
        p.etaSeconds = finite(s.etaSeconds());
      }
      TrainerMetrics m = metrics;
      if (m != null) {
        m.step(s.epoch(), s.step(), s.loss(), s.learningRate(), s.tokens(), rate);
      }
    });
  }

  @Override
  public void onEpoch(EpochInfo e) {
    guard("onEpoch", () -> {
      synchronized (this) {
        EpochRecord r = e.record();
        TrainerReport p = report;
        p.history.removeIf(old -> old.epoch != null && old.epoch.equals(r.epoch));
        p.history.add(r);
        p.epoch = r.epoch;
        p.trainLoss = finite(r.trainLoss);
        p.validationLoss = finite(r.validationLoss);
        p.bestValidationLoss = finite(e.bestValidationLoss());
        p.bestEpoch = e.bestEpoch() > 0 ? e.bestEpoch() : null;
        if (p.bestEpoch != null) {
          checkpoint().best = TrainerContract.BEST_DIR;
        }
        if (r.step != null) {
          p.step = r.step;
        }
        TrainerMetrics m = metrics;
        if (m != null) {
          m.epoch(r.trainLoss, r.validationLoss, e.bestValidationLoss());
        }
      }
      writePlot();
    });
  }

  @Override
  public void onCheckpoint(CheckpointInfo c) {
    guard("onCheckpoint", () -> {
      synchronized (this) {
        checkpoint().latest = c.name();
        if (c.best() != null) {
          checkpoint().best = c.best();
        }
      }
      TrainerMetrics m = metrics;
      if (m != null) {
        m.checkpointWritten(c.seconds());
      }
    });
  }

  @Override
  public void onFinish(Result r) {
    guard("onFinish", () -> {
      synchronized (this) {
        TrainerReport p = report;
        finalPhase = r.outcome() == Outcome.INTERRUPTED ? FAILED : SUCCEEDED;
        p.reason = switch (r.outcome()) {
          case COMPLETED -> Summaries.COMPLETED;
          case EARLY_STOPPED -> Summaries.EARLY_STOPPED;
          case INTERRUPTED -> Summaries.INTERRUPTED;
        };
        p.message = r.message();
        p.phase = finalPhase;
        p.earlyStopped = r.outcome() == Outcome.EARLY_STOPPED;
        if (r.history() != null && !r.history().isEmpty()) {
          p.history = new ArrayList<>(r.history());
          EpochRecord last = p.history.get(p.history.size() - 1);
          p.trainLoss = finite(last.trainLoss);
          p.validationLoss = finite(last.validationLoss);
        }
        p.epoch = Math.max(p.epoch, r.epochsCompleted());
        p.epochs = r.epochs();
        if (r.bestEpoch() > 0) {
          p.bestEpoch = r.bestEpoch();
          p.bestValidationLoss = finite(r.bestValidationLoss());
        }
        if (r.bestModel() != null) {
          checkpoint().best = outputDir == null ? r.bestModel().toString()
              : outputDir.toAbsolutePath().relativize(r.bestModel().toAbsolutePath()).toString();
        }
        if (r.latestCheckpoint() != null) {
          checkpoint().latest = r.latestCheckpoint();
        }
      }
      TrainerMetrics m = metrics;
      if (m != null) {
        m.earlyStopped(r.outcome() == Outcome.EARLY_STOPPED);
      }
      writePlot();
      writeSummary();
    });
  }

  @Override
  public void onError(Throwable error, int exitCode) {
    guard("onError", () -> {
      synchronized (this) {
        finalPhase = FAILED;
        report.phase = FAILED;
        report.reason = Summaries.reason(error, exitCode);
        report.message = Summaries.message(error);
      }
      keepRunRecord = error instanceof dev.finetune.trainer.SpecChangedException;
      writeSummary();
    });
  }

  // ---- evaluation ----

  /** Answering the test split begins (phase Evaluating). */
  public void evaluationStarted(int prompts) {
    synchronized (this) {
      report.phase = EVALUATING;
    }
  }

  /** The evaluation's results go into the summary, which is rewritten. */
  public void evaluationFinished(EvaluationStatus status) {
    guard("evaluationFinished", () -> {
      synchronized (this) {
        report.evaluation = status;
        report.phase = finalPhase == null ? report.phase : finalPhase;
      }
      TrainerMetrics m = metrics;
      if (m != null && status != null) {
        m.evaluation(status.exactMatchRate, status.meanScore);
      }
      writeSummary();
    });
  }

  /** The evaluation failed (never fatal): the message is added to the summary's. */
  public void evaluationFailed(String problem) {
    guard("evaluationFailed", () -> {
      synchronized (this) {
        report.message = (report.message == null ? "" : report.message + "; ") + "evaluation failed: " + problem;
        report.phase = finalPhase == null ? report.phase : finalPhase;
      }
      writeSummary();
    });
  }

  // ---- what others read ----

  /** The job bound by {@link #bind} or onStart; null before. */
  public FineTuneJob job() {
    return job;
  }

  public Path outputDir() {
    return outputDir;
  }

  /** The bound HTTP port, 0 when no server runs. */
  public int port() {
    return server == null ? 0 : server.port();
  }

  /** The Prometheus text of the metrics (empty before a job is bound). */
  public String scrape() {
    TrainerMetrics m = metrics;
    return m == null ? "" : m.scrape();
  }

  /**
   * The report as {@code /progress} shows it: the run so far, with the precision and device it runs in (the operator
   * shows them in {@code kubectl get ftj -o wide}), without the summary's reason, message and evaluation.
   */
  public synchronized TrainerReport progress() {
    TrainerReport p = copy(report);
    p.reason = null;
    if (!DOWNLOADING.equals(p.phase)) {
      p.message = null; // a summary's words; while downloading, the download's
    }
    p.evaluation = null;
    return p;
  }

  String progressJson() {
    return FineTuneJobs.toJson(progress());
  }

  /**
   * The report as the summary shows it: the end (before it: phase Failed, reason Error, "the trainer stopped
   * ..."), the last finished epoch, and none of the per-step fields.
   */
  public synchronized TrainerReport summary() {
    TrainerReport s = copy(report);
    s.phase = finalPhase == null ? FAILED : finalPhase;
    s.reason = s.reason == null ? Summaries.ERROR : s.reason;
    s.message = s.message == null ? "the trainer stopped before training finished, without reporting an error" : s.message;
    EpochRecord last = s.history.isEmpty() ? null : s.history.get(s.history.size() - 1);
    s.epoch = last == null || last.epoch == null ? 0 : last.epoch;
    s.step = null;
    s.steps = null;
    s.stepLoss = null;
    s.learningRate = null;
    s.tokensPerSecond = null;
    s.etaSeconds = null;
    return s;
  }

  private static TrainerReport newReport() {
    TrainerReport r = new TrainerReport();
    r.phase = STARTING;
    r.epoch = 0;
    r.step = 0L;
    r.earlyStopped = false;
    return r;
  }

  /** The report's checkpoint part, made on first use (a report without checkpoints has none). */
  private CheckpointStatus checkpoint() {
    if (report.checkpoint == null) {
      report.checkpoint = new CheckpointStatus();
    }
    return report.checkpoint;
  }

  private static TrainerReport copy(TrainerReport r) {
    return FineTuneJobs.json().convertValue(r, TrainerReport.class);
  }

  /** Writes summary.json (when a run directory is known) and the termination log (when one is configured). */
  public void writeSummary() {
    TrainerReport s = summary();
    Path out = outputDir;
    if (out != null && !keepRunRecord) {
      try {
        Summaries.writeSummaryFile(out, s);
      } catch (IOException | RuntimeException e) {
        Path file = out.resolve(TrainerContract.SUMMARY_FILE);
        if (!file.equals(unwritable)) {
          unwritable = file;
          System.err.println("observability: cannot write " + file + ": " + e);
        }
      }
    }
    if (terminationLog != null) {
      try {
        Summaries.writeTerminationLog(terminationLog, s);
      } catch (IOException | RuntimeException e) {
        System.err.println("observability: cannot write the termination log " + terminationLog + ": " + e);
      }
    }
  }

  private void writePlot() {
    Path out = outputDir;
    if (out == null) {
      return;
    }
    List<EpochRecord> h;
    int best;
    synchronized (this) {
      h = new ArrayList<>(report.history);
      best = report.bestEpoch == null ? 0 : report.bestEpoch;
    }
    String name = job != null && job.getMetadata() != null && job.getMetadata().getName() != null
        ? job.getMetadata().getName() : "training";
    try {
      LossPlot.write(out.resolve(TrainerContract.PLOT_FILE), name + ": loss per epoch", h, best);
    } catch (IOException | RuntimeException e) {
      System.err.println("observability: cannot write " + out.resolve(TrainerContract.PLOT_FILE) + ": " + e);
    }
  }

  /** Writes the final summary and stops the server. Idempotent. */
  @Override
  public void close() {
    synchronized (this) {
      if (closed) {
        return;
      }
      closed = true;
      if (EVALUATING.equals(report.phase) && finalPhase != null) {
        report.phase = finalPhase;
      }
    }
    writeSummary();
    if (server != null) {
      server.close();
    }
  }

  private static Double finite(double v) {
    return Double.isFinite(v) ? v : null;
  }

  private static Double finite(Double v) {
    return v == null || !Double.isFinite(v) ? null : v;
  }

  private void guard(String what, Runnable r) {
    try {
      r.run();
    } catch (RuntimeException e) {
      System.err.println("observability: " + what + " failed (training goes on): " + e);
    }
  }
}
