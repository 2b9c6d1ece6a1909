package dev.finetune.trainer;

import dev.finetune.api.FineTuneJob;
import dev.finetune.api.FineTuneJobs;
import dev.finetune.api.trainer.TrainerContract.ExitCodes;
import dev.finetune.api.validation.InvalidJobException;
import dev.finetune.trainer.eval.Evaluation;
import dev.finetune.trainer.observe.Observability;
import dev.finetune.trainer.observe.ProgressPrinter;
import dev.finetune.trainer.train.DivergedException;
import dev.finetune.trainer.train.Trainer;
import dev.finetune.trainer.train.TrainingListener;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

/**
 * {@code java -jar finetune-trainer.jar JOB.yaml [--output DIR]}: runs a FineTuneJob on this machine.
 * Exit codes as {@link ExitCodes}: 0 done, 1 crashed (retry), 3 bad job, 4 diverged, 75 stopped by SIGTERM
 * after a checkpoint (retry resumes).
 */
public final class Main {
  static final String USAGE = "usage: java -jar finetune-trainer.jar JOB.yaml [--output DIR]\n"
      + "       java -jar finetune-trainer.jar --check-engine   (load libtorch and tokenizers, train one tiny step)";

  private Main() {}

  /** What the command line asks for. */
  record Args(Path job, Path output) {
    static Args parse(String[] args) {
      Path job = null;
      Path output = null;
      for (int i = 0; i < args.length; i++) {
        if (args[i].equals("--output") || args[i].equals("-o")) {
          if (i + 1 >= args.length) {
            throw new BadJobException("--output needs a directory\n" + USAGE);
          }
          output = Path.of(args[++i]);
        } else if (args[i].startsWith("--output=")) {
          output = Path.of(args[i].substring("--output=".length()));
        } else if (args[i].startsWith("-") || job != null) {
          throw new BadJobException("unexpected argument '" + args[i] + "'\n" + USAGE);
        } else {
          job = Path.of(args[i]);
        }
      }
      if (job == null) {
        throw new BadJobException("no job file given\n" + USAGE);
      }
      return new Args(job.toAbsolutePath().normalize(), output == null ? null : output.toAbsolutePath().normalize());
    }
  }

  /** The run directory: --output, else spec.checkpoints.path or runs/NAME, relative to the job file. */
  static Path outputDir(FineTuneJob job, Path jobFile, Path override) {
    if (override != null) {
      return override;
    }
    Path jobDir = jobFile.getParent();
    String name = job.getMetadata() != null && job.getMetadata().getName() != null ? job.getMetadata().getName() : "job";
    String path = job.getSpec().checkpoints == null ? null : job.getSpec().checkpoints.path;
    return jobDir.resolve(path != null ? path : "runs/" + name).normalize();
  }

  /**
   * DJL offline unless DJL_OFFLINE says otherwise: the engine's native library ships in lib/, and offline mode
   * skips a telemetry probe and keeps the tokenizers' loader from fetching a CUDA build on GPU hosts.
   */
  static void defaultOffline() {
    if (System.getenv("DJL_OFFLINE") == null && System.getProperty("ai.djl.offline") == null) {
      System.setProperty("ai.djl.offline", "true");
    }
  }

  public static void main(String[] args) {
    defaultOffline();
    AtomicReference<Trainer> trainer = new AtomicReference<>();
    AtomicBoolean finished = new AtomicBoolean();
    AtomicBoolean terminating = new AtomicBoolean();
    AtomicInteger exitCode = new AtomicInteger(ExitCodes.CRASHED);
    CountDownLatch done = new CountDownLatch(1);
    // SIGTERM: ask the training thread for a checkpoint at the next step boundary, wait for it, exit with its code.
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      if (finished.get()) {
        return;
      }
      System.out.println("SIGTERM: stopping at the next step boundary (after a checkpoint)");
      synchronized (terminating) {
        terminating.set(true);
        Trainer t = trainer.get();
        if (t != null) {
          t.requestStop();
        }
      }
      try {
        done.await();
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
      System.out.flush();
      System.err.flush();
      Runtime.getRuntime().halt(exitCode.get());
    }, "finetune-sigterm"));
    int code = ExitCodes.CRASHED;
    try {
      code = run(args, List.of(), t -> {
        synchronized (terminating) {
          trainer.set(t);
          if (terminating.get()) {
            t.requestStop(); // SIGTERM came while the job was being read
          }
        }
      });
    } finally {
      exitCode.set(code);
      done.countDown();
    }
    finished.set(true);
    System.exit(code);
  }

  /**
   * Runs a job and returns the exit code (no System.exit: tests and embedding callers use this).
   * {@code extra} listeners are called after the console printer; {@code onTrainer} receives the trainer
   * before it starts, e.g. to wire a stop request.
   */
  public static int run(String[] args, List<TrainingListener> extra, java.util.function.Consumer<Trainer> onTrainer) {
    if (args.length == 1 && args[0].equals("--check-engine")) {
      try {
        return EngineCheck.run();
      } catch (Exception | UnsatisfiedLinkError e) {
        System.err.println("error: engine check failed: " + e);
        e.printStackTrace();
        return ExitCodes.CRASHED;
      }
    }
    List<TrainingListener> listeners = new ArrayList<>();
    listeners.add(new ProgressPrinter(System.out, 2.0));
    listeners.addAll(extra);
    // /metrics, /progress, /healthz (FINETUNE_PORT), loss.svg, summary.json, termination log: failures included.
    Observability obs = Observability.fromEnvironment();
    listeners.add(obs);
    TrainingListener all = TrainingListener.all(listeners);
    try {
      Args a = Args.parse(args);
      if (!Files.isRegularFile(a.job())) {
        throw new BadJobException("job file " + a.job() + " does not exist\n" + USAGE);
      }
      FineTuneJob job = FineTuneJobs.readValid(a.job());
      Path out = outputDir(job, a.job(), a.output());
      obs.bind(job, out);
      Trainer trainer = new Trainer(job, a.job().getParent(), out, all);
      if (onTrainer != null) {
        onTrainer.accept(trainer);
      }
      TrainingListener.Result r = trainer.run();
      Evaluation.afterTraining(r, obs); // responses.jsonl and judge scores; never throws
      return r.outcome() == TrainingListener.Outcome.INTERRUPTED ? ExitCodes.INTERRUPTED : ExitCodes.SUCCEEDED;
    } catch (InvalidJobException | BadJobException e) {
      System.err.println("error: " + e.getMessage());
      all.onError(e, ExitCodes.BAD_JOB);
      return ExitCodes.BAD_JOB;
    } catch (DivergedException e) {
      System.err.println("error: training diverged: " + e.getMessage());
      all.onError(e, ExitCodes.DIVERGED);
      return ExitCodes.DIVERGED;
    } catch (Exception | OutOfMemoryError e) {
      System.err.println("error: trainer crashed: " + e);
      e.printStackTrace();
      all.onError(e, ExitCodes.CRASHED);
      return ExitCodes.CRASHED;
    } finally {
      obs.close(); // the final summary, then the server stops
    }
  }
}
