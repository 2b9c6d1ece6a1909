package dev.finetune.api;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonProperty;
import com.fasterxml.jackson.annotation.JsonPropertyDescription;
import io.fabric8.generator.annotation.Max;
import io.fabric8.generator.annotation.Min;
import io.fabric8.generator.annotation.Pattern;
import io.fabric8.generator.annotation.Required;
import io.fabric8.generator.annotation.ValidationRule;

/**
 * Instruction records ({@code instruction}, {@code input}, {@code output}) from exactly one source:
 * {@code path}, {@code configMap}, {@code url}, {@code synthetic}, separate {@code files} per split, or a {@code hub}
 * dataset repository.
 */
@JsonInclude(JsonInclude.Include.NON_NULL)
@ValidationRule(value = DatasetSpec.SOURCES + ".filter(s, s).size() == 1",
    messageExpression = DatasetSpec.SOURCES + ".filter(s, s).size() == 0"
        + " ? 'names no data; set exactly one of path, configMap, url, synthetic, files or hub'"
        + " : 'names %d data sources; set exactly one of path, configMap, url, synthetic, files or hub'"
        + ".format([" + DatasetSpec.SOURCES + ".filter(s, s).size()])")
@ValidationRule(value = "!has(self.claimName) || has(self.path) || has(self.files)", fieldPath = ".claimName",
    message = "is set without spec.dataset.path or spec.dataset.files; say where in the volume the data is")
@ValidationRule(value = "has(self.files) || (" + DatasetSpec.SPLIT_SUM + " - 1.0 <= 0.000001 && 1.0 - " + DatasetSpec.SPLIT_SUM
    + " <= 0.000001)", fieldPath = ".split",
    messageExpression = "'fractions sum to %s, must be 1.0 (train + validation + test)'"
        + ".format([double(int(" + DatasetSpec.SPLIT_SUM + " * 1000000.0 + 0.5)) / 1000000.0])")
@ValidationRule(value = "has(self.files) || self.split.train > 0.0", fieldPath = ".split.train",
    message = "is 0; training needs some records")
@ValidationRule(value = "has(self.files) || self.split.validation > 0.0", fieldPath = ".split.validation",
    message = "is 0; validation loss picks the best epoch, give it some records (e.g. 0.05)")
@ValidationRule(value = "!has(self.columns) || self.columns.all(k, k in ['instruction', 'input', 'output', 'messages'])",
    fieldPath = ".columns", message = "names a field the trainer does not read; the keys are instruction, input, output and messages")
@ValidationRule(value = "!has(self.chatTemplate) || self.promptStyle == 'chat'", fieldPath = ".chatTemplate",
    message = "is set but promptStyle is not chat; set spec.dataset.promptStyle: chat to use it")
@ValidationRule(value = "!has(self.trainOn) || self.promptStyle == 'chat'", fieldPath = ".trainOn",
    message = "is set but promptStyle is not chat; with alpaca or phi3, spec.dataset.maskPrompt says what trains")
@ValidationRule(value = "!(self.promptStyle == 'chat' && self.maskPrompt == true)", fieldPath = ".maskPrompt",
    message = "is for alpaca and phi3; with promptStyle chat, spec.dataset.trainOn says what trains (assistantTurns by default)")
public class DatasetSpec {
  static final String SOURCES = "[has(self.path), has(self.configMap), has(self.url), has(self.synthetic), has(self.files), has(self.hub)]";
  static final String SPLIT_SUM = "(self.split.train + self.split.validation + self.split.test)";


  @JsonPropertyDescription("A JSON array or JSON Lines file of records. With claimName it is relative to that volume; in a local run it is relative to the job file.")
  public String path;

  @JsonPropertyDescription("An existing PersistentVolumeClaim that holds path or files; mounted read-only into the trainer Pod.")
  public String claimName;

  @JsonPropertyDescription("A ConfigMap key that holds the records (small data sets).")
  public ConfigMapSource configMap;

  @Pattern("^https://\\S+$")
  @JsonPropertyDescription("An https URL of the records, downloaded once into the checkpoint volume.")
  public String url;

  @JsonPropertyDescription("A generated set of small instruction tasks (reverse a word, upper-case a phrase, add two numbers, ...); needs no file.")
  public SyntheticDataSpec synthetic;

  @JsonPropertyDescription("Separate train, validation and test files instead of one file split by fractions.")
  public DatasetFiles files;

  @JsonPropertyDescription("A dataset repository on the Hugging Face hub (HF_ENDPOINT's, else huggingface.co): some of its files, or one split of the hub's Parquet conversion. Downloaded once into the hub cache (spec.model.cacheClaim, else the checkpoint volume).")
  public HubDataset hub;

  @JsonPropertyDescription("Which column (field) of the data holds each field the trainer reads, where the names differ: e.g. {instruction: question, output: answer}, or {messages: dialog}. Keys: instruction, input, output, messages.")
  public java.util.Map<String, String> columns;

  @JsonPropertyDescription("Fractions of the records for train, validation and test (they must sum to 1.0); ignored with files.")
  public SplitSpec split = new SplitSpec();

  @JsonPropertyDescription("How a record becomes the model's text: alpaca (### Instruction / ### Input / ### Response), phi3 (<|User|> / <|Assistant|>), or chat (the model's own chat template; records are conversations: messages [{role, content}] or ShareGPT conversations [{from, value}], and instruction records become one user and one assistant turn).")
  public PromptStyle promptStyle = PromptStyle.ALPACA;

  @JsonPropertyDescription("alpaca and phi3: train only on the response; the targets inside the instruction and input are ignored by the loss (-100). With chat, use trainOn.")
  public Boolean maskPrompt = false;

  @JsonPropertyDescription("chat only: the chat template to render with, for a model that has none or to replace its own; saved with the trained model as chat_template.jinja.")
  public ChatTemplateSource chatTemplate;

  @JsonPropertyDescription("chat only: which tokens the loss trains. assistantTurns (default): each assistant message's content and the end-of-turn token that closes it ({% generation %} blocks where the template has them); lastAssistantTurn: the last one only; allTokens: every token of the conversation.")
  public TrainOn trainOn;

  @Min(2)
  @Max(1048576)
  @JsonPropertyDescription("Longest token sequence fed to the model; longer records are cut to it (and named in the log). At most the model's context length.")
  public Integer maxLength = 1024;

  @JsonPropertyDescription("Accept records of more than twice maxLength tokens and cut them to maxLength. False: such a record is an error that names it, since most of it would be cut away and the model would learn from a fragment.")
  public Boolean truncateLongRecords = false;

  /** What the loss trains in a chat record. */
  public enum TrainOn {
    @JsonProperty("assistantTurns")
    ASSISTANT_TURNS,
    @JsonProperty("lastAssistantTurn")
    LAST_ASSISTANT_TURN,
    @JsonProperty("allTokens")
    ALL_TOKENS
  }

  /** A chat template given by the job: exactly one of {@code template} or {@code path}. */
  @JsonInclude(JsonInclude.Include.NON_NULL)
  @ValidationRule(value = "has(self.template) != has(self.path)",
      message = "must give either template (the Jinja text) or path (a file that holds it), not both or neither")
  public static class ChatTemplateSource {
    @JsonPropertyDescription("The chat template's Jinja text, as tokenizer_config.json's chat_template holds it.")
    public String template;

    @JsonPropertyDescription("A file that holds the chat template (e.g. chat_template.jinja): on the dataset volume when spec.dataset.claimName is set, else relative to the job file.")
    public String path;
  }

  /** A hub dataset: exactly one of {@code files} or {@code split}. */
  @JsonInclude(JsonInclude.Include.NON_NULL)
  @ValidationRule(value = "has(self.files) != has(self.split)",
      message = "must name either files (of the repository) or split (of the hub's Parquet conversion), not both or neither")
  public static class HubDataset {
    @Required
    @Pattern("^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
    @JsonPropertyDescription("The dataset repository, ORG/NAME, e.g. tatsu-lab/alpaca.")
    public String repo;

    @JsonPropertyDescription("Branch, tag or commit; resolved once to a commit, which summary.json records.")
    public String revision = "main";

    @JsonPropertyDescription("Files of the repository to read, in order: JSON (an array of records), JSON Lines (.jsonl) or Parquet (.parquet); their records are split by spec.dataset.split.")
    public java.util.List<String> files;

    @JsonPropertyDescription("A split of the hub's Parquet conversion (branch refs/convert/parquet), e.g. train: every Parquet file of that split of config.")
    public String split;

    @JsonPropertyDescription("The dataset's config (subset) whose split is read; the hub's default is 'default'.")
    public String config = "default";
  }

  /** Where a data set in a ConfigMap is. */
  @JsonInclude(JsonInclude.Include.NON_NULL)
  public static class ConfigMapSource {
    @Required
    @JsonPropertyDescription("ConfigMap name, in the FineTuneJob's namespace.")
    public String name;

    @Required
    @JsonPropertyDescription("The key that holds the records.")
    public String key;
  }

  /** Separate files per split; relative to the dataset volume (or the job file in a local run). */
  @JsonInclude(JsonInclude.Include.NON_NULL)
  public static class DatasetFiles {
    @Required
    @JsonPropertyDescription("Training records (required).")
    public String train;

    @Required
    @JsonPropertyDescription("Validation records (required: validation loss drives early stopping and the best epoch).")
    public String validation;

    @JsonPropertyDescription("Test records whose answers are generated after training (optional).")
    public String test;
  }

  /** Split by fractions, after an optional seeded shuffle. */
  @JsonInclude(JsonInclude.Include.NON_NULL)
  public static class SplitSpec {
    @Min(0)
    @Max(1)
    @JsonPropertyDescription("Fraction of records for training.")
    public Double train = 0.85;

    @Min(0)
    @Max(1)
    @JsonPropertyDescription("Fraction of records for validation.")
    public Double validation = 0.05;

    @Min(0)
    @Max(1)
    @JsonPropertyDescription("Fraction of records for the test answers.")
    public Double test = 0.10;

    @JsonPropertyDescription("Shuffle the records with seed before splitting; false keeps the file's order (as the book's chapter 7 does).")
    public Boolean shuffle = true;

    @JsonPropertyDescription("Seed of the shuffle before splitting.")
    public Long seed = 123L;
  }

  /** A generated data set of simple tasks, so that a job needs no file at all. */
  @JsonInclude(JsonInclude.Include.NON_NULL)
  public static class SyntheticDataSpec {
    @Min(10)
    @Max(1000000)
    @JsonPropertyDescription("Number of records to generate.")
    public Integer size = 600;

    @JsonPropertyDescription("Seed of the generator.")
    public Long seed = 7L;
  }
}
