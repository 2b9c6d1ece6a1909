package dev.finetune.api;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonPropertyDescription;
import io.fabric8.generator.annotation.Default;
import io.fabric8.generator.annotation.Pattern;

/** The pretrained GPT-2-family model: exactly one of {@code hub}, {@code path} or {@code scratch}. */
@JsonInclude(JsonInclude.Include.NON_NULL)
public class ModelSpec {

  @Pattern("^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
  @JsonPropertyDescription("HuggingFace hub repository id, e.g. openai-community/gpt2. Downloaded once (config.json, model.safetensors, tokenizer.json) into the checkpoint volume.")
  public String hub;

  @Default("main")
  @JsonPropertyDescription("Hub revision (branch, tag or commit) used with hub.")
  public String revision = "main";

  @JsonPropertyDescription("A HuggingFace-layout model directory (config.json, model.safetensors, tokenizer.json). With claimName it is relative to that volume; in a local run it is relative to the job file.")
  public String path;

  @JsonPropertyDescription("An existing PersistentVolumeClaim that holds path; mounted read-only into the trainer Pod.")
  public String claimName;

  @JsonPropertyDescription("A new, randomly initialised GPT-2 with the trainer's byte-level tokenizer: needs no download and no files (tests, demos).")
  public ScratchModelSpec scratch;
}
