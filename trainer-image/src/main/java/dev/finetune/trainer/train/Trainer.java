package dev.finetune.trainer.train;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.Shape;
import ai.djl.training.GradientCollector;
import dev.finetune.api.EpochRecord;
import dev.finetune.api.FineTuneJob;
import dev.finetune.api.FineTuneJobSpec;
import dev.finetune.api.FineTuneJobs;
import dev.finetune.api.TrainingSpec;
import dev.finetune.api.trainer.TrainerContract;
import dev.finetune.trainer.BadJobException;
import dev.finetune.trainer.data.Collator;
import dev.finetune.trainer.data.Record;
import dev.finetune.trainer.hub.HubSettings;
import dev.finetune.api.LoraSpec;
import dev.finetune.trainer.model.CausalLm;
import dev.finetune.trainer.model.Gpt2;
import dev.finetune.trainer.model.Lora;
import dev.finetune.trainer.model.Model;
import dev.finetune.trainer.model.NoGrad;
import dev.finetune.trainer.model.PrecisionPolicy;
import dev.finetune.trainer.model.WeightStorage;
import dev.finetune.trainer.train.TrainingListener.Outcome;
import dev.finetune.trainer.train.TrainingListener.Result;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Optional;

/**
 * Runs one FineTuneJob: loads model and data, trains epoch by epoch with AdamW (accumulation, clipping,
 * schedule), validates after each epoch, keeps best/ and history.jsonl, checkpoints, early-stops, and resumes
 * from the newest complete checkpoint. {@link #requestStop()} (SIGTERM) makes it checkpoint at the next
 * optimizer-step boundary and return {@link Outcome#INTERRUPTED}.
 */
public final class Trainer {
  private final FineTuneJob job;
  private final Path jobDir;
  private final Path outputDir;
  private final TrainingListener listener;
  private volatile boolean stopRequested;
  /** Distributed: whether any rank asked to stop, as all agreed at the last optimizer step. */
  private boolean stopAgreed;
  /** The last micro-batch of this step ran in pieces: its gradients are all-reduced after it, not during it. */
  private boolean allReduceGradientsAfter;
  private Distributed dist = Distributed.single();
  private volatile String stopSignal = "SIGTERM";
  private boolean moreEpochs;
  private boolean evaluationStands;
  private volatile List<Record> testSplit = List.of();
  private PrecisionPolicy precision;
  /** The environment's (HF_ENDPOINT, HF_TOKEN, ...), read when the run starts, unless {@link #hub(HubSettings)} set it. */
  private HubSettings hub;

  public Trainer(FineTuneJob job, Path jobDir, Path outputDir, TrainingListener listener) {
    this.job = job;
    this.jobDir = jobDir;
    this.outputDir = outputDir;
    this.listener = listener == null ? new TrainingListener() {} : listener;
  }

  /** Asks the training thread to checkpoint at the next step boundary and stop. Safe from any thread. */
  public void requestStop() {
    stopRequested = true;
  }

  /** {@link #requestStop()}, naming the signal (SIGTERM, SIGINT) in the messages. */
  public void requestStop(String signal) {
    stopSignal = signal;
    stopRequested = true;
  }

  /**
   * Trains as one rank of a data-parallel run: each rank takes its share of every batch, gradients are summed over
   * the ranks, rank 0 alone writes the run folder, and a stop asked of any rank stops all at the same step.
   */
  public void distributed(Distributed d) {
    this.dist = d;
  }

  /** Whether to stop at this step boundary: this process was asked to, or, distributed, any rank was. */
  private boolean stopNow() {
    return dist.isDistributed() ? stopAgreed : stopRequested;
  }

  /** Where the hub is and how to reach it; the environment's (HF_ENDPOINT, HF_TOKEN, ...) unless set here. */
  public void hub(HubSettings settings) {
    this.hub = settings;
  }

  private HubSettings hub() {
    if (hub == null) {
      hub = HubSettings.fromEnvironment();
    }
    return hub;
  }

  /** Lets a finished run train on to a raised spec.training.epochs (--more-epochs). */
  public void allowMoreEpochs(boolean allow) {
    moreEpochs = allow;
  }

  /** Whether the run had finished before this call, with the same evaluation settings: its answers stand. */
  public boolean evaluationStands() {
    return evaluationStands;
  }

  /** spec.training.precision as it resolves on this machine's device (fp32, tf32 or bf16); resolved once. */
  public PrecisionPolicy precision() {
    if (precision == null) {
      precision = PrecisionPolicy.resolve(job.getSpec().training.precision);
    }
    return precision;
  }

  /** The dataset's test split, for the evaluation after training; empty before {@link #run()} loaded the data. */
  public List<Record> testSplit() {
    return testSplit;
  }

  public Result run() throws IOException {
    FineTuneJobSpec spec = job.getSpec();
    if (dist.isMain()) {
      evaluationStands = Rerun.check(outputDir, spec, moreEpochs);
    }
    Files.createDirectories(outputDir);
    try (NDManager base = NDManager.newBaseManager();
        Model model = Model.fromSpec(spec.model, jobDir, outputDir, base,
            WeightStorage.forRun(spec.training.lora != null, precision().bf16()), hub(), listener)) {
      return train(spec, base, model);
    }
  }

  /** Resume, then for each epoch: train the epoch, end it (validate, best, early stop, checkpoint). */
  private Result train(FineTuneJobSpec spec, NDManager base, Model model) throws IOException {
    TrainingSpec t = spec.training;
    model.net().setDropout(t.dropout);
    PrecisionPolicy precision = precision();
    model.net().setPrecision(precision);
    if (precision.nativeOps().isPresent()) { // the run's first line names the precision; this adds the kernels
      System.out.println(precision.describe());
    }
    if (t.lora != null) {
      attachLora(spec, model.net());
    }
    TrainingData data = TrainingData.load(spec.dataset, model, jobDir, outputDir, hub(), listener);
    testSplit = data.test();
    int firstBatch = Math.min(t.batchSize, data.train().size());
    if (dist.size() > firstBatch) {
      throw new BadJobException("WORLD_SIZE is " + dist.size() + " but a training batch has " + firstBatch + " records"
          + " (spec.training.batchSize " + t.batchSize + ", " + data.train().size() + " training records): each rank"
          + " takes a share of every batch, so raise batchSize to at least the number of ranks");
    }
    // ZeRO-1 where it pays: a distributed run that trains every weight (a LoRA adapter's state is small)
    int shards = Distributed.optimizerShards(t.lora == null, dist.size());
    MemoryPlan.of(model.net(), Distributed.batchShare(t.batchSize, dist.size()), data.longest(), precision.bf16(), shards,
        MemoryPlan.Savings.of(t))
        .checkWhereItRuns();
    model.net().requireGradients();
    try (AdamW optimizer = new AdamW(model.net().trainable(), base, t.beta1, t.beta2, t.epsilon, t.weightDecay)) {
      optimizer.useFused(precision.nativeOps().orElse(null));
      if (shards > 1) {
        optimizer.shard(dist);
      }
      Run run = new Run(spec, base, model, optimizer, data, precision);
      Optional<Result> done = run.resume();
      for (int epoch = run.state.epochsCompleted; done.isEmpty() && epoch < t.epochs; epoch++) {
        done = run.trainEpoch(epoch);
        if (done.isEmpty()) {
          done = run.endEpoch(epoch);
        }
      }
      return done.isPresent() ? done.get() : run.finish(Outcome.COMPLETED, "completed " + t.epochs
          + " epochs; best validation loss " + fmt(run.state.bestValidationLoss) + " at epoch " + run.state.bestEpoch);
    }
  }

  /** One run's plan and moving parts: what the loop's steps share. */
  private final class Run {
    final FineTuneJobSpec spec;
    final TrainingSpec t;
    final NDManager base;
    final Model model;
    final CausalLm net;
    final AdamW optimizer;
    final TrainingData data;
    final PrecisionPolicy precision;
    final int batch;
    final int accum;
    /** As the reference's DataLoader: the training split drops its last partial batch (unless it is the only one). */
    final int microPerEpoch;
    final long stepsPerEpoch;
    final long totalSteps;
    final LrSchedule schedule;
    final double minDelta;
    final Checkpoints checkpoints;
    TrainerState state = new TrainerState();
    String latestName;
    long runStart;
    long runTokens;
    long runSteps;
    long epochStart;

    Run(FineTuneJobSpec spec, NDManager base, Model model, AdamW optimizer, TrainingData data, PrecisionPolicy precision) {
      this.precision = precision;
      this.spec = spec;
      this.t = spec.training;
      this.base = base;
      this.model = model;
      this.net = model.net();
      this.optimizer = optimizer;
      this.data = data;
      batch = t.batchSize;
      accum = t.gradientAccumulationSteps;
      microPerEpoch = Math.max(1, data.train().size() / batch);
      stepsPerEpoch = (microPerEpoch + accum - 1) / accum;
      totalSteps = stepsPerEpoch * t.epochs;
      schedule = LrSchedule.of(t, totalSteps);
      minDelta = spec.earlyStopping == null ? 0 : spec.earlyStopping.minDelta;
      checkpoints = new Checkpoints(outputDir.resolve(TrainerContract.CHECKPOINTS_DIR));
    }

    /**
     * Continues from the newest complete checkpoint (weights, moments, state, history.jsonl as of then) and
     * reports the start; a result when there is nothing left to train or a stop came first.
     */
    Optional<Result> resume() throws IOException {
      Optional<Checkpoints.Saved> latest = Optional.empty();
      if (dist.isMain()) { // the other ranks get what rank 0 resumes from in syncFromMain
        checkpoints.removeIncomplete();
        latest = checkpoints.latest();
      }
      String restoredFrom = null;
      if (latest.isPresent()) {
        Path dir = latest.get().dir();
        state = latest.get().state();
        model.restoreTrained(dir);
        optimizer.load(dir.resolve(Checkpoints.OPTIMIZER), state.step);
        restoredFrom = outputDir.relativize(dir).toString();
        // in the words of the stop message ("in epoch 4 after step 221"), so the two agree
        System.out.println("resuming from " + dir + ": " + (state.batchInEpoch > 0
            ? "in epoch " + (state.epochsCompleted + 1) + " after step " + state.step + " (" + state.batchInEpoch
                + " of its batches done)"
            : "after epoch " + state.epochsCompleted + " (step " + state.step + ")"));
      }
      syncFromMain(latest.isPresent());
      state.trainedWith = TrainedWith.of(spec);
      rewriteHistory(state.history);
      listener.onStart(new TrainingListener.RunInfo(job, outputDir, t.epochs, stepsPerEpoch, totalSteps,
          data.train().size(), data.validation().size(), testSplit, net.parameterCount(), model, restoredFrom,
          state.epochsCompleted, state.step, List.copyOf(state.history), precision.precision().toString(),
          precision.device()));
      latestName = latest.map(s -> outputDir.relativize(s.dir()).toString()).orElse(null);
      if (state.earlyStopped || state.epochsCompleted >= t.epochs) {
        return Optional.of(finish(state.earlyStopped ? Outcome.EARLY_STOPPED : Outcome.COMPLETED,
            "already finished: " + state.epochsCompleted + " epochs in " + latestName));
      }
      if (stopRequested && !dist.isDistributed()) { // distributed: the ranks agree on a stop at the first step
        return Optional.of(finish(Outcome.INTERRUPTED, "stopped by request (" + stopSignal + ") before training started"));
      }
      runStart = System.nanoTime();
      return Optional.empty();
    }

    /**
     * Distributed: every rank takes rank 0's state, weights (the frozen base too) and AdamW moments, so the ranks start
     * identical whatever each loaded, and only rank 0 needs the checkpoint volume.
     */
    private void syncFromMain(boolean restored) throws IOException {
      if (!dist.isDistributed()) {
        return;
      }
      byte[] json = restored ? FineTuneJobs.json().writeValueAsBytes(state) : new byte[0];
      try (NDManager m = base.newSubManager()) {
        NDArray length = m.create(new long[] {json.length});
        dist.broadcastFromMain(List.of(length));
        int n = (int) length.toLongArray()[0];
        if (n > 0) {
          NDArray bytes = m.create(dist.isMain() ? json : new byte[n]);
          dist.broadcastFromMain(List.of(bytes));
          if (!dist.isMain()) {
            state = FineTuneJobs.json().readValue(bytes.toByteArray(), TrainerState.class);
          }
        }
        List<NDArray> weights = new ArrayList<>(net.parameters().values());
        if (net.lora() != null) {
          weights.addAll(net.lora().parameters().values());
        }
        dist.broadcastFromMain(weights);
        if (n > 0) {
          optimizer.receiveFromMain(state.step);
        }
      }
    }

    /** The epoch's micro-batches from where the state stands; a result when a stop request ends it early. */
    Optional<Result> trainEpoch(int epoch) throws IOException {
      epochStart = System.nanoTime();
      int[] order = TrainingData.order(data.train().size(), epoch, t);
      double[] groupLosses = new double[accum];
      for (int mb = state.batchInEpoch; mb < microPerEpoch; mb++) {
        int groupStart = mb / accum * accum;
        int groupSize = Math.min(accum, microPerEpoch - groupStart);
        groupLosses[mb - groupStart] = microBatch(epoch, mb, order, groupSize, groupStart);
        if (mb + 1 - groupStart < groupSize) {
          continue;
        }
        optimizerStep(epoch, Arrays.copyOf(groupLosses, groupSize));
        if (mb + 1 < microPerEpoch) {
          Optional<Result> stopped = checkpointInEpoch(epoch);
          if (stopped.isPresent()) {
            return stopped;
          }
        }
      }
      return Optional.empty();
    }

    /**
     * Forward and backward of micro-batch {@code mb} (distributed: of this rank's share, its loss weighted by its share
     * of the batch's target tokens, so the ranks' parts sum to the batch's mean); this rank's part of its loss.
     */
    private double microBatch(int epoch, int mb, int[] order, int groupSize, int groupStart) throws IOException {
      List<Collator.Example> items = new ArrayList<>();
      for (int i = mb * batch; i < Math.min((mb + 1) * batch, data.train().size()); i++) {
        items.add(data.train().get(order[i]));
      }
      Collator.Batch whole = data.collator().collate(items);
      Collator.Batch b = whole;
      double weight = 1;
      if (dist.isDistributed()) {
        // Shares as even as they go (sizes differ by at most one): weighting by target tokens keeps the mean exact.
        b = data.collator().collate(items.subList(dist.rank() * items.size() / dist.size(),
            (dist.rank() + 1) * items.size() / dist.size()));
        long all = MicroStep.targetCount(whole.targets());
        weight = all == 0 ? 0 : (double) MicroStep.targetCount(b.targets()) / all;
      }
      if (mb + 1 - groupStart == groupSize) {
        // The step's last backward pass sums the gradients as it goes; a pass in pieces gives a weight gradients
        // several times (a tied head, each chunk of the loss), so its gradients are summed once it is done.
        // (decided on the whole batch, so that every rank decides alike)
        allReduceGradientsAfter = microStep(net, t).inPieces((long) whole.size() * whole.length());
        if (!allReduceGradientsAfter) {
          dist.syncGradientsDuringBackward(net.trainable().values());
        }
      }
      double loss = trainMicroBatch(net, base, b, groupSize, t, state.step * accum + (mb - groupStart), weight);
      state.tokens += whole.tokens();
      runTokens += whole.tokens();
      state.batchInEpoch = mb + 1;
      return loss;
    }

    /**
     * Sums the gradients and the group's losses over the ranks (one process: as they are) and agrees on a stop;
     * checks and records the losses, then clips, steps AdamW and reports the step.
     */
    private void optimizerStep(int epoch, double[] groupLosses) throws IOException {
      double[] losses = allReduce(groupLosses);
      for (double l : losses) {
        if (!Double.isFinite(l)) {
          throw new DivergedException("the training loss became " + l + " in epoch " + (epoch + 1) + " at step "
              + (state.step + 1) + "; lower spec.training.learningRate, add warmupSteps or set maxGradNorm");
        }
        state.epochLossSum += l;
        state.epochBatches++;
      }
      double loss = losses[losses.length - 1];
      double gradNorm = t.maxGradNorm == null ? Double.NaN : AdamW.clipGradNorm(net.trainable(), t.maxGradNorm);
      double lr = schedule.at(state.step);
      optimizer.step(net.trainable(), lr);
      optimizer.shareUpdated(net.trainable());
      AdamW.zeroGradients(net.trainable());
      state.step++;
      runSteps++;
      double elapsed = (System.nanoTime() - runStart) / 1e9;
      listener.onStep(new TrainingListener.StepInfo(epoch + 1, state.step, totalSteps, loss, lr, state.tokens,
          runTokens / Math.max(elapsed, 1e-9), elapsed / runSteps * (totalSteps - state.step), gradNorm));
    }

    /** The gradients and {@code values} summed over the ranks, with the stop flag riding along; one process: as is. */
    private double[] allReduce(double[] values) throws IOException {
      if (!dist.isDistributed()) {
        return values;
      }
      dist.finishGradientSync();
      if (allReduceGradientsAfter) {
        dist.allReduceGradients(net.trainable().values(), base);
      }
      try (NDManager m = base.newSubManager()) {
        double[] withStop = Arrays.copyOf(values, values.length + 1);
        withStop[values.length] = stopRequested ? 1 : 0;
        NDArray scalars = m.create(withStop);
        dist.allReduceSum(List.of(scalars));
        double[] sums = scalars.toDoubleArray();
        stopAgreed = sums[values.length] > 0;
        return Arrays.copyOf(sums, values.length);
      }
    }

    /** Inside an epoch: the periodic checkpoint (spec.checkpoints.everySteps), and the one a stop request asks for. */
    private Optional<Result> checkpointInEpoch(int epoch) throws IOException {
      TestHold.at("epoch-" + (epoch + 1) + "-step-" + (state.step - epoch * stepsPerEpoch), () -> stopRequested);
      boolean periodic = spec.checkpoints.everySteps > 0 && state.step % spec.checkpoints.everySteps == 0;
      if (periodic || stopNow()) {
        state.epochSeconds += (System.nanoTime() - epochStart) / 1e9;
        epochStart = System.nanoTime();
        checkpoint(Checkpoints.stepName(state.step));
      }
      if (stopNow()) {
        return Optional.of(finish(Outcome.INTERRUPTED, "stopped by request (" + stopSignal + ") in epoch " + (epoch + 1)
            + " after step " + state.step + "; checkpoint " + latestName));
      }
      return Optional.empty();
    }

    /**
     * Validates, records the epoch (history.jsonl, best/), checkpoints it; a result when training stops here
     * (early stopping, or a stop request before the last epoch).
     */
    Optional<Result> endEpoch(int epoch) throws IOException {
      EpochRecord rec = validate(epoch);
      boolean improved = rec.validationLoss < state.bestValidationLoss - minDelta;
      if (improved) {
        state.bestValidationLoss = rec.validationLoss;
        state.bestEpoch = epoch + 1;
        state.epochsWithoutImprovement = 0;
        if (dist.isMain()) {
          writeBest(model);
        }
      } else {
        state.epochsWithoutImprovement++;
      }
      state.epochsCompleted = epoch + 1;
      state.batchInEpoch = 0;
      state.epochLossSum = 0;
      state.epochBatches = 0;
      state.epochSeconds = 0;
      state.earlyStopped = spec.earlyStopping != null && state.epochsWithoutImprovement >= spec.earlyStopping.patience;
      System.out.printf("epoch %d/%d done: train loss %.4f, validation loss %.4f%s (%.1f s)%n", epoch + 1, t.epochs,
          rec.trainLoss, rec.validationLoss, improved ? ", best so far" : ", best " + fmt(state.bestValidationLoss)
              + " at epoch " + state.bestEpoch, rec.seconds);
      listener.onEpoch(new TrainingListener.EpochInfo(rec, state.bestValidationLoss, state.bestEpoch, improved,
          state.epochsWithoutImprovement));
      checkpoint(Checkpoints.epochName(epoch + 1));
      TestHold.at("epoch-" + (epoch + 1) + "-end", () -> stopRequested);
      if (state.earlyStopped) {
        return Optional.of(finish(Outcome.EARLY_STOPPED, "early stopped after epoch " + (epoch + 1) + ": validation loss"
            + " did not improve on " + fmt(state.bestValidationLoss) + " (epoch " + state.bestEpoch + ") by more than "
            + minDelta + " for " + spec.earlyStopping.patience + " epoch(s)"));
      }
      if (stopNow() && epoch + 1 < t.epochs) {
        return Optional.of(finish(Outcome.INTERRUPTED, "stopped by request (" + stopSignal + ") after epoch " + (epoch + 1)
            + "; checkpoint " + latestName));
      }
      return Optional.empty();
    }

    /** The epoch's record: mean training loss, validation loss, and where the run stands; appended to history. */
    private EpochRecord validate(int epoch) throws IOException {
      double trainLoss = state.epochLossSum / Math.max(1, state.epochBatches);
      double validationLoss = evaluate(net, base, data.collator(), data.validation(), batch,
          MemoryPlan.Savings.of(t).lossChunkTokens());
      if (!Double.isFinite(validationLoss)) {
        throw new DivergedException("the validation loss after epoch " + (epoch + 1) + " is " + validationLoss
            + "; lower spec.training.learningRate or set maxGradNorm");
      }
      checkNotDiverging(validationLoss, epoch + 1, state.history, net.vocabSize());
      EpochRecord rec = new EpochRecord(epoch + 1, trainLoss, validationLoss);
      rec.step = state.step;
      rec.learningRate = schedule.at(Math.max(0, state.step - 1));
      rec.tokens = state.tokens;
      rec.seconds = state.epochSeconds + (System.nanoTime() - epochStart) / 1e9;
      state.history.add(rec);
      appendHistory(rec);
      return rec;
    }

    private void checkpoint(String name) throws IOException {
      optimizer.gatherToMain(); // sharded: rank 0 writes every rank's moments
      try {
        if (dist.isMain()) { // the other ranks hold the same weights
          latestName = Trainer.this.checkpoint(checkpoints, name, model, optimizer, state, spec);
        }
      } finally {
        optimizer.releaseGathered();
      }
    }

    Result finish(Outcome outcome, String message) {
      return Trainer.this.finish(state, t, outcome, message, latestName);
    }
  }

  /** Nats above the loss of a uniform guess, ln(vocabulary), at which a run counts as diverged. */
  static final double ABOVE_UNIFORM = 1.0;
  /** A validation loss this many times the first epoch's (and a nat above it) counts as diverged. */
  static final double ABOVE_FIRST_EPOCH = 3.0;

  /**
   * A run can diverge while its losses stay finite (a learning rate of 10 without clipping: losses in the
   * thousands): a validation loss well above guessing every token uniformly, or far above the first epoch's,
   * stops it as Diverged rather than letting it complete and ship an early epoch as "best".
   */
  static void checkNotDiverging(double validationLoss, int epoch, List<EpochRecord> history, int vocabSize) {
    double uniform = Math.log(vocabSize);
    String fix = "; lower spec.training.learningRate, add warmupSteps or set maxGradNorm (typical: 1.0)";
    if (validationLoss > uniform + ABOVE_UNIFORM) {
      throw new DivergedException(String.format("the validation loss after epoch %d is %.4g, above %.4g, the loss of"
          + " guessing every token uniformly (ln %d)%s", epoch, validationLoss, uniform, vocabSize, fix));
    }
    Double first = history.isEmpty() ? null : history.get(0).validationLoss;
    if (first != null && validationLoss > ABOVE_FIRST_EPOCH * first && validationLoss > first + 1) {
      throw new DivergedException(String.format("the validation loss after epoch %d is %.4g, more than %.0f times the"
          + " first epoch's (%.4g)%s", epoch, validationLoss, ABOVE_FIRST_EPOCH, first, fix));
    }
  }

  private Result finish(TrainerState s, TrainingSpec t, Outcome outcome, String message, String latest) {
    Path best = outputDir.resolve(TrainerContract.BEST_DIR);
    Result r = new Result(outcome, message, s.epochsCompleted, t.epochs, s.bestEpoch, s.bestValidationLoss,
        List.copyOf(s.history), Files.isDirectory(best) ? best : null, latest);
    System.out.println(message);
    listener.onFinish(r);
    return r;
  }

  private static String fmt(double v) {
    return String.format("%.4f", v);
  }

  public static NDArray ids(NDManager m, long[][] rows) {
    long[] flat = new long[rows.length * rows[0].length];
    for (int i = 0; i < rows.length; i++) {
      System.arraycopy(rows[i], 0, flat, i * rows[0].length, rows[0].length);
    }
    return m.create(flat, new Shape(rows.length, rows[0].length));
  }

  /**
   * Forward and backward of one micro-batch in its own manager and scope (closed after the backward pass, so
   * nothing of the step outlives it). Gradients accumulate over a group; the loss is divided by the group size
   * so the step sees their mean.
   */
  static double trainMicroBatch(CausalLm net, NDManager base, Collator.Batch b, int groupSize, TrainingSpec t,
      long microIndex) {
    return trainMicroBatch(net, base, b, groupSize, t, microIndex, 1);
  }

  /**
   * As above, the loss weighted by {@code weight} (a rank's share of the batch's target tokens; 1 in one process)
   * before the backward pass; returns the weighted loss.
   */
  static double trainMicroBatch(CausalLm net, NDManager base, Collator.Batch b, int groupSize, TrainingSpec t,
      long microIndex, double weight) {
    MicroStep pass = microStep(net, t);
    try (NDManager step = base.newSubManager(); NDScope scope = new NDScope();
        GradientCollector gc = Engine.getInstance().newGradientCollector()) {
      return pass.run(gc, ids(step, b.inputs()), b.targets(), new Gpt2.Consts(step), weight, groupSize, microIndex);
    }
  }

  /**
   * How the job's micro-batches pass forward and backward. Dropout masks (the model's and the adapter's) are a function
   * of the seed, the micro-batch and the layer, so resumed runs draw the same ones.
   */
  static MicroStep microStep(CausalLm net, TrainingSpec t) {
    double dropout = Math.max(t.dropout == null ? 0 : t.dropout, net.lora() == null ? 0 : net.lora().dropout());
    MemoryPlan.Savings savings = MemoryPlan.Savings.of(t);
    return new MicroStep(net, savings.checkpointing(), savings.lossChunkTokens(), dropout, t.seed);
  }

  /** Mean of per-batch losses over a split (batches in order, the last one may be partial). */
  static double evaluate(CausalLm net, NDManager base, Collator collator, List<Collator.Example> data, int batch) {
    return evaluate(net, base, collator, data, batch, 0);
  }

  /** As above, the logits made {@code lossChunkTokens} tokens at a time (0: the whole batch's at once). */
  static double evaluate(CausalLm net, NDManager base, Collator collator, List<Collator.Example> data, int batch,
      int lossChunkTokens) {
    MicroStep pass = new MicroStep(net, false, lossChunkTokens, 0, 0);
    double sum = 0;
    int n = 0;
    for (int i = 0; i < data.size(); i += batch) {
      Collator.Batch b = collator.collate(data.subList(i, Math.min(i + batch, data.size())));
      try (NoGrad noGrad = new NoGrad(); NDManager step = base.newSubManager(); NDScope scope = new NDScope()) {
        sum += pass.validationLoss(ids(step, b.inputs()), b.targets(), new Gpt2.Consts(step));
        n++;
      }
    }
    return sum / n;
  }

  private String checkpoint(Checkpoints checkpoints, String name, Model model, AdamW optimizer, TrainerState state,
      FineTuneJobSpec spec) throws IOException {
    long start = System.nanoTime();
    Path dir = checkpoints.save(name, model, optimizer, state);
    checkpoints.prune(spec.checkpoints.keep, state.bestEpoch);
    String rel = outputDir.relativize(dir).toString();
    listener.onCheckpoint(new TrainingListener.CheckpointInfo(dir, rel, (System.nanoTime() - start) / 1e9,
        state.bestEpoch > 0 ? TrainerContract.BEST_DIR : null));
    return rel;
  }

  /** best/: an HF-layout directory, replaced via a temp directory. */
  private void writeBest(Model model) throws IOException {
    replace(TrainerContract.BEST_DIR, model::save);
    if (model.net().lora() != null) {
      replace(TrainerContract.ADAPTER_DIR, model.net().lora()::save);
    }
  }

  private interface DirWriter {
    void write(Path dir) throws IOException;
  }

  private void replace(String name, DirWriter writer) throws IOException {
    Path target = outputDir.resolve(name);
    Path tmp = outputDir.resolve(".tmp-" + name);
    Checkpoints.deleteTree(tmp);
    writer.write(tmp);
    Checkpoints.deleteTree(target);
    Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE);
  }

  /** spec.training.lora: the base stays frozen, the adapter is what trains, is checkpointed and resumed. */
  private void attachLora(FineTuneJobSpec spec, CausalLm net) throws IOException {
    LoraSpec l = spec.training.lora;
    Path init = l.initAdapter == null ? null : Model.resolve(spec.model, l.initAdapter, jobDir);
    String baseModel = spec.model.hub != null ? spec.model.hub : spec.model.path;
    if (spec.model.scratch != null) {
      System.out.println("warning: spec.training.lora trains an adapter on spec.model.scratch, a randomly initialised"
          + " model: the frozen base has learnt nothing, so the adapter alone must; name a pretrained model (hub or path)"
          + " to fine-tune one, or drop lora to train the scratch model itself");
    }
    Lora adapter = Lora.forJob(l, net, init, spec.training.seed, baseModel);
    net.attach(adapter);
    System.out.printf("LoRA: r %d, alpha %s, target modules %s: %,d trainable parameters (%.2f%% of %,d, frozen%s)%n",
        adapter.rank(), adapter.alpha(), adapter.targetModules(), adapter.parameterCount(),
        100.0 * adapter.parameterCount() / net.parameterCount(), net.parameterCount(),
        net.storage() == WeightStorage.BF16_BASE ? ", in bf16 but for the norms and biases" : "");
  }

  private void appendHistory(EpochRecord rec) throws IOException {
    if (!dist.isMain()) {
      return;
    }
    Files.writeString(outputDir.resolve(TrainerContract.HISTORY_FILE), FineTuneJobs.toJson(rec) + "\n",
        StandardCharsets.UTF_8, StandardOpenOption.CREATE, StandardOpenOption.APPEND);
  }

  /** history.jsonl as of the checkpoint resumed from (epochs after it are trained again). */
  private void rewriteHistory(List<EpochRecord> history) throws IOException {
    if (!dist.isMain()) {
      return;
    }
    StringBuilder sb = new StringBuilder();
    for (EpochRecord r : history) {
      sb.append(FineTuneJobs.toJson(r)).append('\n');
    }
    Files.writeString(outputDir.resolve(TrainerContract.HISTORY_FILE), sb.toString(), StandardCharsets.UTF_8);
  }
}
