package dev.finetune.trainer.train;

import dev.finetune.api.DatasetSpec;
import dev.finetune.api.TrainingSpec;
import dev.finetune.trainer.BadDataException;
import dev.finetune.trainer.data.Collator;
import dev.finetune.trainer.data.Datasets;
import dev.finetune.trainer.hub.DownloadListener;
import dev.finetune.trainer.hub.HubSettings;
import dev.finetune.api.PromptStyle;
import dev.finetune.trainer.data.ChatFormat;
import dev.finetune.trainer.data.PromptFormat;
import dev.finetune.trainer.data.Record;
import dev.finetune.trainer.model.Model;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Random;

/**
 * What a run trains and validates on: the tokenized training and validation splits, the test split to answer, and
 * the collator that batches them; with the checks that name bad records and the order of each epoch.
 */
public record TrainingData(Collator collator, List<Collator.Example> train, List<Collator.Example> validation,
    List<Record> test, int maxLength) {

  /** The longest training batch's length: what the activations are planned for. */
  int longest() {
    return Math.min(maxLength, train.stream().mapToInt(Collator.Example::length).max().orElse(1));
  }

  /**
   * Loads spec.dataset's splits, tokenizes them for {@code model} and checks them: an empty split, records cut to
   * maxLength or teaching nothing, records far above it.
   */
  static TrainingData load(DatasetSpec ds, Model model, Path jobDir, Path outputDir, HubSettings hub,
      DownloadListener downloads) throws IOException {
    Datasets.Splits splits = Datasets.load(ds, jobDir, outputDir, hub, downloads);
    if (splits.train().isEmpty() || splits.validation().isEmpty()) {
      throw new BadDataException("dataset " + splits.source() + " gives " + splits.train().size() + " training and "
          + splits.validation().size() + " validation records; both splits need at least one record (more data, or"
          + " larger spec.dataset.split fractions)");
    }
    int maxLength = ds.maxLength;
    int context = model.net().contextLength();
    if (maxLength > context) {
      System.out.println("spec.dataset.maxLength " + maxLength + " is above the model's context length; using " + context);
      maxLength = context;
    }
    java.util.Optional<String> template = ChatFormat.jobTemplate(ds, jobDir);
    template.ifPresent(model::useChatTemplate); // saved with the model, so that it answers as it was trained
    PromptFormat format = PromptFormat.of(ds, model.tokenizer(), model.tokenizerConfig());
    Collator collator = new Collator(model.tokenizer().endOfText(), maxLength, Boolean.TRUE.equals(ds.maskPrompt));
    conversationsNeedChat(ds, splits);
    List<Collator.Example> train = tokenize(format, splits.train());
    List<Collator.Example> validation = tokenize(format, splits.validation());
    checkRecords(collator, splits.train(), train, ds, maxLength);
    checkLength(format, ds, splits, train, validation, maxLength);
    return new TrainingData(collator, train, validation, splits.test(), maxLength);
  }

  /** Conversations with promptStyle alpaca or phi3: a bad job that names them. */
  public static void conversationsNeedChat(DatasetSpec ds, Datasets.Splits splits) {
    if (ds.promptStyle == PromptStyle.CHAT) {
      return;
    }
    List<String> conversations = new ArrayList<>();
    for (List<Record> split : List.of(splits.train(), splits.validation(), splits.test())) {
      split.stream().filter(Record::isConversation).forEach(r -> conversations.add(r.where()));
    }
    if (!conversations.isEmpty()) {
      throw new BadDataException(conversations.size() + " records are conversations (messages or conversations), which"
          + " promptStyle " + ds.promptStyle.toString().toLowerCase() + " cannot write: " + named(conversations)
          + ". Set spec.dataset.promptStyle: chat to render them with the model's chat template");
    }
  }

  /** How many offending records a message names before it gives only the count. */
  static final int NAMED = 5;
  /** A record this many times above maxLength is an error unless spec.dataset.truncateLongRecords is set. */
  static final int FAR_ABOVE = 2;

  /**
   * Names the training records that will be cut to maxLength or teach nothing. A record whose targets are all
   * -100 after truncation (the prompt fills maxLength, and maskPrompt hides it) adds a loss of 0 to the epoch
   * mean; when every record is like that, the run would report falling losses while learning nothing: a bad job.
   */
  static void checkRecords(Collator collator, List<Record> records, List<Collator.Example> examples, DatasetSpec ds,
      int maxLength) {
    List<String> empty = new ArrayList<>();
    List<String> truncated = new ArrayList<>();
    for (int i = 0; i < examples.size(); i++) {
      Collator.Example e = examples.get(i);
      String where = records.get(i).where() + " (" + e.length() + " tokens)";
      if (e.length() > maxLength) {
        truncated.add(where);
      }
      if (Arrays.stream(collator.collate(List.of(e)).targets()[0]).allMatch(y -> y == Collator.IGNORE)) {
        empty.add(where);
      }
    }
    String why = "no target token within spec.dataset.maxLength (" + maxLength + ")"
        + (Boolean.TRUE.equals(ds.maskPrompt) ? " once spec.dataset.maskPrompt hides the prompt" : "")
        + (ds.promptStyle == PromptStyle.CHAT ? " (spec.dataset.trainOn: " + ChatFormat.trainOn(ds) + ")" : "");
    if (empty.size() == examples.size()) {
      throw new BadDataException("all " + examples.size() + " training records have " + why + ": the prompt fills it. Raise"
          + " maxLength (and the model's context length) or shorten the prompts"
          + (ds.promptStyle == PromptStyle.CHAT ? " (the system prompt and the turns before the assistant's)"
              : " (promptStyle phi3 is shorter than alpaca)") + ": " + named(empty));
    }
    if (!truncated.isEmpty()) {
      System.out.println("warning: " + truncated.size() + " of " + examples.size() + " training records are longer than"
          + " spec.dataset.maxLength (" + maxLength + " tokens) and are cut to it: " + named(truncated));
    }
    if (!empty.isEmpty()) {
      System.out.println("warning: " + empty.size() + " of " + examples.size() + " training records have " + why
          + " and teach nothing: " + named(empty));
    }
  }

  /**
   * A record more than {@link #FAR_ABOVE} times maxLength would be mostly cut away (or, in the test split, answered
   * from a cut prompt): a bad job that names the records, unless the spec opts into truncation.
   */
  static void checkLength(PromptFormat format, DatasetSpec ds, Datasets.Splits splits, List<Collator.Example> train,
      List<Collator.Example> validation, int maxLength) {
    if (Boolean.TRUE.equals(ds.truncateLongRecords)) {
      return;
    }
    List<Record> all = new ArrayList<>(splits.train());
    all.addAll(splits.validation());
    all.addAll(splits.test());
    List<Collator.Example> examples = new ArrayList<>(train);
    examples.addAll(validation);
    examples.addAll(tokenize(format, splits.test()));
    List<String> farAbove = new ArrayList<>();
    for (int i = 0; i < all.size(); i++) {
      int tokens = examples.get(i).length();
      if (tokens > (long) FAR_ABOVE * maxLength) {
        farAbove.add(all.get(i).where() + " (" + tokens + " tokens)");
      }
    }
    if (!farAbove.isEmpty()) {
      throw new BadDataException(farAbove.size() + " of " + all.size() + " records are more than " + FAR_ABOVE
          + " times spec.dataset.maxLength (" + maxLength + " tokens), so most of each would be cut away: "
          + named(farAbove) + ". Shorten or drop them, raise maxLength, or set spec.dataset.truncateLongRecords: true"
          + " to train on their first " + maxLength + " tokens");
    }
  }

  /** The first few places, and how many more. */
  private static String named(List<String> where) {
    return String.join("; ", where.subList(0, Math.min(NAMED, where.size())))
        + (where.size() > NAMED ? " and " + (where.size() - NAMED) + " more" : "");
  }

  /** The training split's order in an epoch: a function of seed and epoch only, so a resumed run sees the same. */
  public static int[] order(int n, int epoch, TrainingSpec t) {
    List<Integer> idx = new ArrayList<>(n);
    for (int i = 0; i < n; i++) {
      idx.add(i);
    }
    if (Boolean.TRUE.equals(t.shuffle)) {
      Collections.shuffle(idx, new Random(t.seed * 1_000_003L + epoch));
    }
    return idx.stream().mapToInt(Integer::intValue).toArray();
  }

  public static List<Collator.Example> tokenize(PromptFormat format, List<Record> records) {
    List<Collator.Example> out = new ArrayList<>(records.size());
    for (Record r : records) {
      out.add(format.example(r));
    }
    return out;
  }
}
