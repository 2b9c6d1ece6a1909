package dev.finetune.trainer;

import dev.finetune.api.EvaluationStatus;
import dev.finetune.api.FineTuneJob;
import dev.finetune.api.FineTuneJobs;
import dev.finetune.api.trainer.TrainerContract;
import dev.finetune.api.trainer.TrainerContract.ExitCodes;
import dev.finetune.api.validation.InvalidJobException;
import dev.finetune.trainer.eval.Evaluation;
import dev.finetune.trainer.observe.Observability;
import dev.finetune.trainer.observe.ProgressPrinter;
import dev.finetune.trainer.observe.Summaries;
import dev.finetune.trainer.model.PrecisionPolicy;
import dev.finetune.trainer.train.Checkpoints;
import dev.finetune.trainer.train.Distributed;
import dev.finetune.trainer.train.DivergedException;
import dev.finetune.trainer.train.TrainedWith;
import dev.finetune.trainer.train.Trainer;
import dev.finetune.trainer.train.TrainingListener;
import java.io.IOException;
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
  static final String USAGE = """
      usage: java -jar finetune-trainer.jar JOB.yaml [--output DIR] [--restart] [--more-epochs] [--nproc-per-node N]
             java -jar finetune-trainer.jar JOB.yaml --plan [--device-memory SIZE] [--json]
             java -jar finetune-trainer.jar JOB.yaml --inspect-data N [--json]
             java -jar finetune-trainer.jar --check-engine | --help | --version""";

  static final String HELP = USAGE + """


      Runs a FineTuneJob (see examples/) on this machine, as the operator's trainer Pod does.

        JOB.yaml        the FineTuneJob: spec.model, spec.dataset, and what else it sets
        --output DIR    the run directory; default: spec.checkpoints.path, else runs/NAME, beside the job file.
                        It holds checkpoints/, best/, history.jsonl, responses.jsonl, loss.svg, summary.json;
                        a rerun resumes from its newest checkpoint
        --restart       move an existing run folder aside (DIR.old-TIMESTAMP) and start over; needed when
                        the spec changed in a way that changes the result (the trainer lists the fields)
        --more-epochs   let a finished run train on to a raised spec.training.epochs
        --nproc-per-node N
                        data-parallel: run N ranks on this node, one per GPU, as torchrun does (with NNODES,
                        NODE_RANK, MASTER_ADDR, MASTER_PORT for several nodes); the exit code is the worst rank's
        --plan          print the memory one rank of the job needs (weights, gradients, AdamW state,
                        activations, logits, runtime) and whether it fits; exit 0 if it does, 3 if not. Reads
                        the job and the model's config.json only (a hub model: that file alone), trains nothing
                        and writes no run. Planned for a GPU when spec.resources.gpus > 0 or with
          --device-memory SIZE  the GPU's memory, e.g. 24Gi (an L4), 80Gi (an H100)
          --json        the plan as one JSON object (totalBytes, the parts in bytes, fits)
        --inspect-data N
                        show the first N training records as the model will see them: the prompt text with
                        the tokens the loss trains in [[ ]] (the rest is -100) and token counts; reads the
                        data and the tokenizer files only (a hub model: config.json and the tokenizer), trains
                        nothing and writes no run
          --json        one JSON object a record: {"text", "input_ids", "labels"} (labels: -100 or the token)
        --check-engine  load libtorch and the tokenizers and train one tiny step
        --help          this text
        --version       the trainer's version

      exit codes:
        0   done: all epochs, or stopped early; results written
        1   crashed or a transient failure (network, a lost volume): retry, it resumes from the last checkpoint
        3   bad job: invalid spec, data or model files; the message names file, line and field. Do not retry
        4   diverged: the loss became NaN or infinite, or far above its start. Do not retry
        75  stopped by SIGTERM or SIGINT (Ctrl-C) after a checkpoint: rerun to resume

      environment:
        FINETUNE_PORT             port of /metrics, /progress and /healthz (default 9090; 0: none)
        FINETUNE_TERMINATION_LOG  file for the final summary (default /dev/termination-log when it exists)
        FINETUNE_MODEL_DIR, FINETUNE_DATA_DIR, FINETUNE_DATASET_CONFIGMAP_DIR
                                  where the operator mounted the model, data and data ConfigMap volumes
        FINETUNE_JUDGE_API_KEY    API key of the judge model (spec.evaluation.judge)
        WORLD_SIZE, RANK, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT
                                  torchrun's: this process is one rank of a data-parallel run (c10d: NCCL on
                                  GPUs, Gloo on CPUs; FINETUNE_DIST_BACKEND to choose); rank 0 writes the run
                                  folder and serves /metrics and /progress
        FINETUNE_DIST_TIMEOUT_SECONDS
                                  a rank that hangs fails the others after this long (default 600; a rank that
                                  dies fails them at once)
        DJL_OFFLINE               true (the default here): never download libtorch or tokenizers
      """;

  private Main() {}

  /** What the command line asks for. */
  record Args(Path job, Path output, boolean restart, boolean moreEpochs) {
    static Args parse(String[] args) {
      Path job = null;
      Path output = null;
      boolean restart = false;
      boolean moreEpochs = false;
      for (int i = 0; i < args.length; i++) {
        if (args[i].equals("--output") || args[i].equals("-o")) {
          if (i + 1 >= args.length) {
            throw new BadJobException("--output needs a directory\n" + USAGE);
          }
          output = Path.of(args[++i]);
        } else if (args[i].startsWith("--output=")) {
          output = Path.of(args[i].substring("--output=".length()));
        } else if (args[i].equals("--restart")) {
          restart = true;
        } else if (args[i].equals("--more-epochs")) {
          moreEpochs = true;
        } else if (args[i].startsWith("-") || job != null) {
          throw new BadJobException("unexpected argument '" + args[i] + "'\n" + USAGE);
        } else {
          job = Path.of(args[i]);
        }
      }
      if (job == null) {
        throw new BadJobException("no job file given\n" + USAGE);
      }
      return new Args(job.toAbsolutePath().normalize(), output == null ? null : output.toAbsolutePath().normalize(),
          restart, moreEpochs);
    }
  }

  /** --restart: the run folder moves aside to NAME.old-YYYYMMDD-HHMMSS (kept, not deleted); the run starts over. */
  static void moveAside(Path out) throws java.io.IOException {
    if (!Files.exists(out)) {
      return;
    }
    String stamp = java.time.LocalDateTime.now().format(java.time.format.DateTimeFormatter.ofPattern("yyyyMMdd-HHmmss"));
    Path aside = out.resolveSibling(out.getFileName() + ".old-" + stamp);
    for (int i = 2; Files.exists(aside); i++) {
      aside = out.resolveSibling(out.getFileName() + ".old-" + stamp + "-" + i);
    }
    Files.move(out, aside);
    System.out.println("--restart: moved the earlier run to " + aside);
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

  /** The run directory of a job file that did not parse or validate, if it exists (read leniently: name, checkpoints.path). */
  static java.util.Optional<Path> existingRunDir(Args a) {
    try {
      Path dir = outputDir(stub(a.job()), a.job(), a.output());
      return Files.isDirectory(dir) ? java.util.Optional.of(dir) : java.util.Optional.empty();
    } catch (RuntimeException e) {
      return java.util.Optional.empty();
    }
  }

  /** A job with only what a broken job file still says: metadata.name and spec.checkpoints.path. */
  private static FineTuneJob stub(Path jobFile) {
    FineTuneJob job = new FineTuneJob();
    job.setSpec(new dev.finetune.api.FineTuneJobSpec());
    try {
      var doc = new com.fasterxml.jackson.databind.ObjectMapper(new com.fasterxml.jackson.dataformat.yaml.YAMLFactory())
          .readTree(new String(Files.readAllBytes(jobFile), java.nio.charset.StandardCharsets.UTF_8)); // lenient: a bad byte is U+FFFD
      String name = doc.path("metadata").path("name").asText(null);
      String namespace = doc.path("metadata").path("namespace").asText(null);
      job.setMetadata(new io.fabric8.kubernetes.api.model.ObjectMetaBuilder().withName(name).withNamespace(namespace).build());
      job.getSpec().checkpoints.path = doc.path("spec").path("checkpoints").path("path").asText(null);
    } catch (java.io.IOException | RuntimeException e) {
      // not even YAML: the default run directory (runs/job) or --output
    }
    return job;
  }

  /**
   * The first line a run prints: "device cpu (PyTorch 2.7.1), precision bf16, 8 threads; /metrics and /progress at
   * http://localhost:9090", with the precision as the spec resolved on this device (loads the engine).
   */
  static String runtimeLine(int port, PrecisionPolicy precision) {
    ai.djl.engine.Engine engine = ai.djl.engine.Engine.getInstance();
    boolean gpu = engine.defaultDevice().isGpu();
    String device = gpu ? "gpu " + engine.defaultDevice().getDeviceId() + " of " + engine.getGpuCount() : "cpu";
    int threads = engine.getEngineName().equals("PyTorch") ? ai.djl.pytorch.jni.JniUtils.getNumThreads()
        : Runtime.getRuntime().availableProcessors();
    String served = port == 0 ? "no /metrics or /progress server"
        : "/metrics and /progress at http://localhost:" + port;
    String p = precision.precision().toString();
    return "device " + device + " (" + engine.getEngineName() + " " + engine.getVersion() + "), precision " + p
        + (p.equals("tf32") && !gpu ? " (fp32: a CPU has no tensor cores)" : "") + ", " + threads + " threads; " + served;
  }

  /**
   * spec.resources.gpus above 0 with no GPU visible: in a Pod (KUBERNETES_SERVICE_HOST is set) the image or the
   * node is wrong, which a retry on the same node does not fix, so it fails; a local run warns and uses the CPU.
   */
  static void checkGpus(FineTuneJob job, java.util.Map<String, String> env) {
    Integer gpus = job.getSpec().resources == null ? null : job.getSpec().resources.gpus;
    if (gpus == null || gpus == 0 || ai.djl.engine.Engine.getInstance().getGpuCount() > 0) {
      return;
    }
    String what = "spec.resources.gpus is " + gpus + " but no GPU is visible";
    if (env.get("KUBERNETES_SERVICE_HOST") != null) {
      throw new BadJobException(what + " in this Pod: the trainer image is the CPU build (use the -cuda image) or the"
          + " node lacks the NVIDIA driver or device plugin. Set spec.image, or spec.resources.gpus: 0 to train on the CPU");
    }
    System.out.println("warning: " + what + " on this machine; training on the CPU (set spec.resources.gpus: 0 to"
        + " silence this)");
  }

  /** "finetune-trainer 0.1.0 (DJL 0.36.0)": the jar's version, or "development build" when run from classes. */
  static String version() {
    String v = Main.class.getPackage() == null ? null : Main.class.getPackage().getImplementationVersion();
    return "finetune-trainer " + (v == null ? "development build" : v) + " (DJL " + ai.djl.engine.Engine.getDjlVersion() + ")";
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
    // Before anything loads libtorch: on a platform the jar has none for, say so instead of an UnsatisfiedLinkError.
    // Exit 3, as checkGpus does for a Pod without its GPU: the machine or image is wrong, and a retry cannot help.
    String unsupported = Platform.needsEngine(args)
        ? Platform.unsupported(System.getProperty("os.name"), System.getProperty("os.arch"), System.getenv()) : null;
    if (unsupported != null) {
      System.err.println("error: " + unsupported);
      System.exit(ExitCodes.BAD_JOB);
    }
    Integer nproc = nprocPerNode(args);
    if (nproc != null) {
      int code;
      try {
        code = Launcher.run(nproc, withoutNproc(args), System.getenv());
      } catch (BadJobException e) {
        System.err.println("error: " + e.getMessage());
        code = ExitCodes.BAD_JOB;
      } catch (Exception e) {
        System.err.println("error: the launcher failed: " + e);
        code = ExitCodes.CRASHED;
      }
      System.exit(code);
    }
    AtomicReference<Trainer> trainer = new AtomicReference<>();
    AtomicBoolean finished = new AtomicBoolean();
    AtomicBoolean terminating = new AtomicBoolean();
    AtomicInteger exitCode = new AtomicInteger(ExitCodes.CRASHED);
    CountDownLatch done = new CountDownLatch(1);
    // The JVM runs the same shutdown hook for SIGINT (Ctrl-C) and SIGTERM; a handler for INT records which it was.
    AtomicReference<String> signal = new AtomicReference<>("SIGTERM");
    try {
      sun.misc.Signal.handle(new sun.misc.Signal("INT"), s -> {
        signal.set("SIGINT");
        new Thread(() -> System.exit(ExitCodes.INTERRUPTED), "finetune-sigint").start();
      });
    } catch (IllegalArgumentException e) {
      // no SIGINT here (a JVM started with -Xrs): the hook reports SIGTERM
    }
    // SIGTERM: ask the training thread for a checkpoint at the next step boundary, wait for it, exit with its code.
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      if (finished.get()) {
        return;
      }
      System.out.println(signal.get() + ": stopping at the next step boundary (after a checkpoint)");
      synchronized (terminating) {
        terminating.set(true);
        Trainer t = trainer.get();
        if (t != null) {
          t.requestStop(signal.get());
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
    }, "finetune-stop"));
    int code = ExitCodes.CRASHED;
    try {
      code = run(args, List.of(), t -> {
        synchronized (terminating) {
          trainer.set(t);
          if (terminating.get()) {
            t.requestStop(signal.get()); // the signal came while the job was being read
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
    Integer answered = answerWithoutJob(args);
    if (answered != null) {
      return answered;
    }
    if (PlanCommand.asked(args)) {
      return PlanCommand.run(args, System.out, System.err);
    }
    if (InspectCommand.asked(args)) {
      return InspectCommand.run(args, System.out, System.err);
    }
    Distributed dist;
    try {
      dist = Distributed.fromEnv(System.getenv());
    } catch (BadJobException e) {
      System.err.println("error: " + e.getMessage());
      return ExitCodes.BAD_JOB;
    }
    List<TrainingListener> listeners = new ArrayList<>();
    if (dist.isMain()) {
      listeners.add(new ProgressPrinter(System.out, 2.0));
    }
    listeners.addAll(extra);
    // /metrics, /progress, /healthz (FINETUNE_PORT), loss.svg, summary.json, termination log: failures included.
    // The other ranks of a distributed run serve nothing and write their reports to their own scratch folder.
    Observability obs = dist.isMain() ? Observability.fromEnvironment() : Observability.start(0, null);
    listeners.add(obs);
    TrainingListener all = TrainingListener.all(listeners);
    try {
      return trainAndEvaluate(args, obs, all, onTrainer, dist);
    } catch (InvalidJobException | BadJobException e) {
      System.err.println("error: " + e.getMessage());
      all.onError(e, ExitCodes.BAD_JOB);
      return ExitCodes.BAD_JOB;
    } catch (DivergedException e) {
      System.err.println("error: training diverged: " + e.getMessage());
      all.onError(e, ExitCodes.DIVERGED);
      return ExitCodes.DIVERGED;
    } catch (TransientException e) {
      System.err.println("error: " + e.getMessage());
      all.onError(e, ExitCodes.CRASHED);
      return ExitCodes.CRASHED;
    } catch (java.nio.file.FileSystemException e) {
      // a lost, full or read-only volume: worth a retry, not a stack trace
      System.err.println("error: cannot write or read " + e.getFile() + (e.getReason() == null ? "" : " (" + e.getReason() + ")")
          + ": the volume may be gone, full or read-only. " + TransientException.retry("from its last complete checkpoint"));
      all.onError(e, ExitCodes.CRASHED);
      return ExitCodes.CRASHED;
    } catch (Exception | OutOfMemoryError e) {
      System.err.println("error: trainer crashed: " + e);
      e.printStackTrace();
      all.onError(e, ExitCodes.CRASHED);
      return ExitCodes.CRASHED;
    } finally {
      obs.close(); // the final summary, then the server stops
    }
  }

  /** {@code --nproc-per-node N}: how many ranks to launch on this node; null without it (run the job here). */
  static Integer nprocPerNode(String[] args) {
    for (int i = 0; i < args.length; i++) {
      if (args[i].equals("--nproc-per-node")) {
        try {
          int n = Integer.parseInt(i + 1 < args.length ? args[i + 1] : "");
          if (n < 1) {
            throw new NumberFormatException();
          }
          return n;
        } catch (NumberFormatException e) {
          System.err.println("error: --nproc-per-node needs a whole number of 1 or more\n" + USAGE);
          System.exit(ExitCodes.BAD_JOB);
        }
      }
    }
    return null;
  }

  static List<String> withoutNproc(String[] args) {
    List<String> out = new ArrayList<>(List.of(args));
    int i = out.indexOf("--nproc-per-node");
    out.subList(i, i + 2).clear();
    return out;
  }

  /** --help, --version and --check-engine: their exit code; null for a job to run. */
  private static Integer answerWithoutJob(String[] args) {
    if (args.length == 1 && (args[0].equals("--help") || args[0].equals("-h"))) {
      System.out.print(HELP);
      return ExitCodes.SUCCEEDED;
    }
    if (args.length == 1 && args[0].equals("--version")) {
      System.out.println(version());
      return ExitCodes.SUCCEEDED;
    }
    if (args.length == 1 && args[0].equals("--check-engine")) {
      try {
        return EngineCheck.run();
      } catch (Exception | UnsatisfiedLinkError e) {
        System.err.println("error: engine check failed: " + e);
        e.printStackTrace();
        return ExitCodes.CRASHED;
      }
    }
    return null;
  }

  /**
   * The run folder must take files before anything else happens: one that cannot (read-only, not a folder, no
   * permission) is the job's or the volume's setup, which a retry does not change, so it is a bad job (exit 3). A
   * volume lost later, mid-run, stays a retry.
   */
  static void checkWritable(Path out) {
    try {
      Files.createDirectories(out);
      Files.delete(Files.createTempFile(out, ".write-check-", ""));
    } catch (IOException | SecurityException e) {
      String why = e instanceof java.nio.file.AccessDeniedException ? "permission denied"
          : e instanceof java.nio.file.FileAlreadyExistsException f ? f.getFile() + " is a file, not a folder"
          : e instanceof java.nio.file.FileSystemException f && f.getReason() != null ? f.getReason() : e.toString();
      throw new BadJobException("the run folder " + out + " cannot be written (" + why + "). Give the run a writable"
          + " folder: --output DIR here; in a Pod, a volume at spec.checkpoints.path mounted writable for the trainer's"
          + " user (not read-only)");
    }
  }

  /** Reads the job, trains (or resumes) and evaluates; failures are thrown to {@link #run}, which maps them. */
  private static int trainAndEvaluate(String[] args, Observability obs, TrainingListener all,
      java.util.function.Consumer<Trainer> onTrainer, Distributed dist) throws Exception {
    Args a = Args.parse(args);
    if (!Files.isRegularFile(a.job())) {
      throw new BadJobException("job file " + a.job() + " does not exist\n" + USAGE);
    }
    FineTuneJob job;
    try {
      job = FineTuneJobs.readValid(a.job());
    } catch (InvalidJobException e) {
      // an earlier run's summary must not go on saying Succeeded; nothing else of it is touched
      existingRunDir(a).ifPresent(dir -> obs.bind(stub(a.job()), dir));
      throw e;
    }
    Path out = outputDir(job, a.job(), a.output());
    if (!dist.isMain()) { // rank 0 alone writes the run folder; the others keep downloads and reports to themselves
      out = Path.of(System.getProperty("java.io.tmpdir"), "finetune-rank-" + dist.rank()).resolve(out.getFileName());
    }
    checkWritable(out);
    if (a.restart() && dist.isMain()) {
      moveAside(out);
    }
    EvaluationStatus earlierEvaluation = Summaries.readEvaluation(out);
    obs.bind(job, out);
    Trainer trainer = new Trainer(job, a.job().getParent(), out, all);
    trainer.distributed(dist);
    System.out.println(dist.describe() + runtimeLine(obs.port(), trainer.precision()));
    checkGpus(job, System.getenv());
    trainer.allowMoreEpochs(a.moreEpochs());
    if (onTrainer != null) {
      onTrainer.accept(trainer);
    }
    TrainingListener.Result r;
    try (dist) {
      dist.join();
      r = trainer.run();
    } catch (java.nio.file.FileSystemException e) {
      // the run folder deleted or read-only mid-run (a lost volume): a retry; anything else is reported by run()
      throw e.getFile() != null && Path.of(e.getFile()).startsWith(out) ? TransientException.lostVolume(out, e) : e;
    }
    if (!dist.isMain()) { // rank 0 answers the test split
      return r.outcome() == TrainingListener.Outcome.INTERRUPTED ? ExitCodes.INTERRUPTED : ExitCodes.SUCCEEDED;
    }
    if (trainer.evaluationStands() && earlierEvaluation != null) {
      System.out.println("evaluation: unchanged since the run finished; the answers are in " + out.resolve(
          TrainerContract.RESPONSES_FILE));
      obs.evaluationFinished(earlierEvaluation);
    } else if (Evaluation.afterTraining(r, trainer.testSplit(), obs) != null) { // responses.jsonl, judge scores; never throws
      // a finished run answered again with changed settings: recorded, so the same rerun does not answer again
      new Checkpoints(out.resolve(TrainerContract.CHECKPOINTS_DIR)).recordEvaluation(TrainedWith.of(job.getSpec()));
    }
    return r.outcome() == TrainingListener.Outcome.INTERRUPTED ? ExitCodes.INTERRUPTED : ExitCodes.SUCCEEDED;
  }
}
