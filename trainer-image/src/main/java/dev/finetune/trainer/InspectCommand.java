package dev.finetune.trainer;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.finetune.api.FineTuneJob;
import dev.finetune.api.FineTuneJobSpec;
import dev.finetune.api.FineTuneJobs;
import dev.finetune.api.trainer.TrainerContract.ExitCodes;
import dev.finetune.api.validation.InvalidJobException;
import dev.finetune.api.PromptStyle;
import dev.finetune.trainer.data.ChatFormat;
import dev.finetune.trainer.data.Collator;
import dev.finetune.trainer.data.PromptFormat;
import dev.finetune.trainer.data.Datasets;
import dev.finetune.trainer.data.Record;
import dev.finetune.trainer.hub.DownloadListener;
import dev.finetune.trainer.hub.HubSettings;
import dev.finetune.trainer.model.Model;
import dev.finetune.trainer.model.TextTokenizer;
import dev.finetune.trainer.model.TokenizerConfig;
import dev.finetune.trainer.train.TrainingData;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.stream.Stream;

/**
 * {@code JOB.yaml --inspect-data N [--json]}: the first N training records as the model will see them, the tokens
 * the loss trains marked, and nothing trained: what shows at once whether prompts and masking are right. Reads the
 * data and the tokenizer files only (no weights, no run folder).
 */
final class InspectCommand {
  static final String USAGE = "usage: java -jar finetune-trainer.jar JOB.yaml --inspect-data N [--json]";
  /** Around the trained tokens in the text for a person; the rest is -100 (no loss). */
  static final String OPEN = "[[";
  static final String CLOSE = "]]";
  private static final ObjectMapper JSON = new ObjectMapper();

  private InspectCommand() {}

  static boolean asked(String[] args) {
    return List.of(args).contains("--inspect-data");
  }

  static int run(String[] args, PrintStream out, PrintStream err) {
    return run(args, out, err, HubSettings.fromEnvironment());
  }

  /** As {@link #run(String[], PrintStream, PrintStream)}, with the hub {@code hub} says. */
  static int run(String[] args, PrintStream out, PrintStream err, HubSettings hub) {
    try {
      inspect(args, out, hub);
      return ExitCodes.SUCCEEDED;
    } catch (InvalidJobException | BadJobException e) {
      err.println("error: " + e.getMessage());
      return ExitCodes.BAD_JOB;
    } catch (IOException e) { // a hub or URL that cannot be reached: worth another try
      err.println("error: " + e.getMessage());
      return ExitCodes.CRASHED;
    }
  }

  private static void inspect(String[] args, PrintStream out, HubSettings hub) throws IOException {
    Path jobFile = null;
    int n = -1;
    boolean json = false;
    for (int i = 0; i < args.length; i++) {
      switch (args[i]) {
        case "--json" -> json = true;
        case "--inspect-data" -> {
          if (i + 1 >= args.length || !args[i + 1].matches("\\d{1,6}")) {
            throw new BadJobException("--inspect-data needs how many records to show, e.g. --inspect-data 3\n" + USAGE);
          }
          n = Integer.parseInt(args[++i]);
        }
        default -> {
          if (args[i].startsWith("-") || jobFile != null) {
            throw new BadJobException("unexpected argument '" + args[i] + "'\n" + USAGE);
          }
          jobFile = Path.of(args[i]).toAbsolutePath().normalize();
        }
      }
    }
    if (jobFile == null || !Files.isRegularFile(jobFile)) {
      throw new BadJobException((jobFile == null ? "no job file given" : "job file " + jobFile + " does not exist")
          + "\n" + USAGE);
    }
    FineTuneJob job = FineTuneJobs.readValid(jobFile);
    FineTuneJobSpec spec = job.getSpec();
    Path jobDir = jobFile.getParent();
    // downloads go to the hub cache the environment names, else to a folder that goes when the records are shown
    Path tmp = Files.createTempDirectory("finetune-inspect-");
    try (Model.TokenizerOnly t = Model.tokenizer(spec.model, jobDir, hub, tmp)) {
      Datasets.Splits splits = Datasets.load(spec.dataset, jobDir, tmp, hub, DownloadListener.NONE);
      List<Record> records = splits.train().subList(0, Math.min(n, splits.train().size()));
      int maxLength = Math.min(spec.dataset.maxLength, t.contextLength());
      Collator collator = new Collator(t.tokenizer().endOfText(), maxLength, Boolean.TRUE.equals(spec.dataset.maskPrompt));
      TokenizerConfig config = ChatFormat.jobTemplate(spec.dataset, jobDir).map(t.config()::withChatTemplate)
          .orElse(t.config());
      PromptFormat format = PromptFormat.of(spec.dataset, t.tokenizer(), config);
      List<Collator.Example> examples = TrainingData.tokenize(format, records);
      if (!json) {
        boolean chat = spec.dataset.promptStyle == PromptStyle.CHAT;
        out.printf("the first %d of %d training records of %s (%s, promptStyle %s, %s, maxLength %d), as"
            + " the model sees them: the loss trains the tokens in %s %s, the rest is -100%n", records.size(),
            splits.train().size(), job.getMetadata().getName(), splits.source(), spec.dataset.promptStyle.toString()
                .toLowerCase(), chat ? "trainOn " + ChatFormat.trainOn(spec.dataset) : "maskPrompt "
                + Boolean.TRUE.equals(spec.dataset.maskPrompt), maxLength, OPEN, CLOSE);
      }
      for (int i = 0; i < records.size(); i++) {
        Collator.Labelled seen = collator.labelled(examples.get(i)).cut(maxLength);
        if (json) {
          ObjectNode o = JSON.createObjectNode();
          o.put("text", t.tokenizer().decode(seen.ids()));
          Arrays.stream(seen.ids()).forEach(o.putArray("input_ids")::add);
          Arrays.stream(seen.labels()).forEach(o.putArray("labels")::add);
          out.println(JSON.writeValueAsString(o));
        } else {
          long trained = Arrays.stream(seen.labels()).filter(l -> l != Collator.IGNORE).count();
          out.printf("%n--- record %d (%s): %d tokens, %d trained, %d -100%n%s%n", i + 1, records.get(i).where(),
              seen.ids().length, trained, seen.ids().length - trained, marked(t.tokenizer(), seen));
        }
      }
    } finally {
      try (Stream<Path> files = Files.walk(tmp)) {
        files.sorted(Comparator.reverseOrder()).forEach(f -> f.toFile().delete());
      }
    }
  }

  /** The text, each run of trained tokens decoded together and put in {@link #OPEN} and {@link #CLOSE}. */
  static String marked(TextTokenizer tok, Collator.Labelled s) {
    StringBuilder text = new StringBuilder();
    int start = 0;
    for (int j = 1; j <= s.ids().length; j++) {
      boolean edge = j == s.ids().length
          || (s.labels()[j] == Collator.IGNORE) != (s.labels()[start] == Collator.IGNORE);
      if (edge) {
        String run = tok.decode(Arrays.copyOfRange(s.ids(), start, j));
        text.append(s.labels()[start] == Collator.IGNORE ? run : OPEN + run + CLOSE);
        start = j;
      }
    }
    return text.toString();
  }
}
