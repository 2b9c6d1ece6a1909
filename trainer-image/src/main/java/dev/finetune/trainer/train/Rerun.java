package dev.finetune.trainer.train;

import dev.finetune.api.FineTuneJobSpec;
import dev.finetune.api.TrainingSpec;
import dev.finetune.api.trainer.TrainerContract;
import dev.finetune.trainer.SpecChangedException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/** What a rerun of a job in a run folder that holds a checkpoint may do: the trainer's rerun policy. */
final class Rerun {
  private Rerun() {}

  /**
   * A rerun continues the run in its folder only under the spec it was trained with: a change that changes the
   * result (model, data, training, early stopping; epochs under a linear or cosine schedule) is refused with the
   * fields that differ and the two ways out, before anything in the folder is touched. More epochs on a finished
   * run is a choice (--more-epochs). Returns whether the run had finished with the same evaluation settings, so
   * that its answers stand.
   */
  static boolean check(Path outputDir, FineTuneJobSpec spec, boolean moreEpochs) throws IOException {
    Optional<Checkpoints.Saved> latest = new Checkpoints(outputDir.resolve(TrainerContract.CHECKPOINTS_DIR)).latest();
    if (latest.isEmpty()) {
      return false;
    }
    TrainerState saved = latest.get().state();
    Map<String, String> now = TrainedWith.of(spec);
    List<String> changes = new ArrayList<>(TrainedWith.resultChanges(saved.trainedWith, now));
    Integer planned = TrainedWith.epochs(saved.trainedWith);
    int epochs = spec.training.epochs;
    boolean finished = saved.earlyStopped || (planned != null && saved.epochsCompleted >= planned);
    String ways = "To train with the new spec, write to a new run folder (--output DIR, or another metadata.name or"
        + " spec.checkpoints.path), or rerun with --restart, which moves this run aside to " + outputDir.getFileName()
        + ".old-TIMESTAMP and starts over";
    if (planned != null && epochs != planned) {
      if (finished && !saved.earlyStopped && epochs > saved.epochsCompleted && !moreEpochs) {
        throw new SpecChangedException("the run in " + outputDir + " finished its " + planned + " epochs; the spec now asks for "
            + epochs + ". Training on is a choice: rerun with --more-epochs (the " + spec.training.schedule.name()
            .toLowerCase(java.util.Locale.ROOT) + " learning-rate schedule is then computed over " + epochs + " epochs"
            + (spec.training.schedule == TrainingSpec.Schedule.CONSTANT ? ")" : ", so the rate rises again)")
            + ". " + ways);
      }
      if (!finished && spec.training.schedule != TrainingSpec.Schedule.CONSTANT) {
        changes.add(TrainedWith.EPOCHS + ": " + planned + ", now " + epochs + " (the learning-rate schedule spans them)");
      }
    }
    if (!changes.isEmpty()) {
      throw new SpecChangedException("the run in " + outputDir + " was trained with a different spec:\n  "
          + String.join("\n  ", changes) + "\n" + ways);
    }
    boolean stillFinished = finished && (saved.earlyStopped || saved.epochsCompleted >= epochs);
    return stillFinished && TrainedWith.sameEvaluation(saved.trainedWith, now)
        && Files.isRegularFile(outputDir.resolve(TrainerContract.RESPONSES_FILE));
  }
}
