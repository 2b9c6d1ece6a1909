package dev.finetune.trainer.train;

import dev.finetune.api.FineTuneJobs;
import dev.finetune.trainer.TransientException;
import dev.finetune.trainer.model.Lora;
import dev.finetune.trainer.model.Model;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.stream.Stream;

/**
 * {@code checkpoints/epoch-NNNN/} (end of an epoch) and {@code checkpoints/step-NNNNNNNN/} (inside one): an
 * HF-layout model (config.json, model.safetensors, tokenizer.json), {@code optimizer.safetensors} and
 * {@code state.json}. Each is written into {@code .tmp-NAME/} and renamed into place, so a crash never leaves
 * a half checkpoint that looks whole; {@code state.json} is written last and only directories that have it
 * count.
 */
public final class Checkpoints {
  static final String STATE = "state.json";
  static final String OPTIMIZER = "optimizer.safetensors";

  private final Path dir;

  public Checkpoints(Path dir) {
    this.dir = dir;
  }

  public Path dir() {
    return dir;
  }

  public static String epochName(int epoch) {
    return String.format("epoch-%04d", epoch);
  }

  public static String stepName(long step) {
    return String.format("step-%08d", step);
  }

  /** A complete checkpoint and its state. */
  public record Saved(Path dir, TrainerState state) {}

  /**
   * Writes checkpoint {@code name}. A filesystem failure (the volume deleted, read-only or full) is a
   * {@link TransientException} naming this folder; what was half written is removed where the filesystem still
   * allows it, else by {@link #removeIncomplete} on the next start, and never counts as a checkpoint.
   */
  public Path save(String name, Model model, AdamW optimizer, TrainerState state) throws IOException {
    Path tmp = dir.resolve(".tmp-" + name);
    try {
      Files.createDirectories(dir);
      deleteTree(tmp);
      Files.createDirectories(tmp);
      model.saveTrained(tmp);
      optimizer.save(tmp.resolve(OPTIMIZER));
      TestHold.at("checkpoint-" + name, () -> false);
      writeState(tmp.resolve(STATE), state);
      Path target = dir.resolve(name);
      deleteTree(target);
      Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE);
      return target;
    } catch (IOException | UncheckedIOException e) {
      try {
        deleteTree(tmp);
      } catch (IOException | UncheckedIOException ignored) {
        // the folder is not writable: removeIncomplete deletes it on the next start
      }
      throw TransientException.lostVolume(dir, e);
    }
  }

  private static void writeState(Path file, TrainerState state) throws IOException {
    Files.writeString(file, FineTuneJobs.json().writerWithDefaultPrettyPrinter().writeValueAsString(state));
  }

  /**
   * After the test split was answered: the newest checkpoint records the evaluation settings of {@code trainedWith}
   * (a finished run answered again with changed ones), so a rerun with the same settings does not answer again.
   * Nothing changes when they are already recorded or the checkpoint predates recorded specs.
   */
  public void recordEvaluation(Map<String, String> trainedWith) throws IOException {
    Optional<Saved> latest = latest();
    if (latest.isEmpty() || latest.get().state().trainedWith == null
        || TrainedWith.sameEvaluation(latest.get().state().trainedWith, trainedWith)) {
      return;
    }
    TrainerState state = latest.get().state();
    state.trainedWith = TrainedWith.withEvaluation(state.trainedWith, trainedWith);
    Path tmp = latest.get().dir().resolve(".tmp-" + STATE);
    writeState(tmp, state);
    Files.move(tmp, latest.get().dir().resolve(STATE), StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
  }

  /** Complete checkpoints, oldest first (by optimizer step, then epochs finished). */
  public List<Saved> list() throws IOException {
    List<Saved> out = new ArrayList<>();
    if (!Files.isDirectory(dir)) {
      return out;
    }
    try (Stream<Path> s = Files.list(dir)) {
      for (Path p : s.toList()) {
        String n = p.getFileName().toString();
        if (n.startsWith(".") || !Files.isRegularFile(p.resolve(STATE)) || !Files.isRegularFile(p.resolve(OPTIMIZER))
            || !(Files.isRegularFile(p.resolve("model.safetensors")) || Files.isRegularFile(p.resolve(Lora.WEIGHTS)))) {
          continue;
        }
        try {
          out.add(new Saved(p, FineTuneJobs.json().readValue(p.resolve(STATE).toFile(), TrainerState.class)));
        } catch (IOException e) {
          System.err.println("ignoring checkpoint " + p + ": unreadable " + STATE + " (" + e.getMessage() + ")");
        }
      }
    }
    out.sort(Comparator.comparingLong((Saved c) -> c.state().step).thenComparingInt(c -> c.state().epochsCompleted)
        .thenComparing(c -> c.dir().getFileName().toString()));
    return out;
  }

  public Optional<Saved> latest() throws IOException {
    List<Saved> all = list();
    return all.isEmpty() ? Optional.empty() : Optional.of(all.get(all.size() - 1));
  }

  /** Removes leftovers of interrupted writes ({@code .tmp-*}). */
  public void removeIncomplete() throws IOException {
    if (!Files.isDirectory(dir)) {
      return;
    }
    try (Stream<Path> s = Files.list(dir)) {
      for (Path p : s.toList()) {
        if (p.getFileName().toString().startsWith(".tmp-")) {
          deleteTree(p);
        }
      }
    }
  }

  /** Keeps the newest {@code keep} checkpoints and the best epoch's one; deletes the rest. */
  public void prune(int keep, int bestEpoch) throws IOException {
    List<Saved> all = list();
    String best = bestEpoch > 0 ? epochName(bestEpoch) : null;
    for (int i = 0; i < all.size() - keep; i++) {
      Path p = all.get(i).dir();
      if (!p.getFileName().toString().equals(best)) {
        deleteTree(p);
      }
    }
  }

  static void deleteTree(Path p) throws IOException {
    if (!Files.exists(p)) {
      return;
    }
    try (Stream<Path> s = Files.walk(p)) {
      s.sorted(Comparator.reverseOrder()).forEach(f -> {
        try {
          Files.delete(f);
        } catch (IOException e) {
          throw new UncheckedIOException(e);
        }
      });
    }
  }
}
