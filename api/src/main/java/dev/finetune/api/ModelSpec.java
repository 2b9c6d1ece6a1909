package dev.finetune.api;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonPropertyDescription;
import io.fabric8.generator.annotation.Pattern;
import io.fabric8.generator.annotation.ValidationRule;

/** The pretrained GPT-2-family model: exactly one of {@code hub}, {@code path} or {@code scratch}. */
@JsonInclude(JsonInclude.Include.NON_NULL)
@ValidationRule(value = "[has(self.hub), has(self.path), has(self.scratch)].filter(s, s).size() == 1",
    messageExpression = "[has(self.hub), has(self.path), has(self.scratch)].filter(s, s).size() == 0"
        + " ? 'names no model; set exactly one of hub, path or scratch'"
        + " : 'names %d models; set exactly one of hub, path or scratch'"
        + ".format([[has(self.hub), has(self.path), has(self.scratch)].filter(s, s).size()])")
@ValidationRule(value = "!has(self.claimName) || has(self.path)", fieldPath = ".claimName",
    message = "is set without spec.model.path; say where in the volume the model directory is")
public class ModelSpec {

  @Pattern("^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
  @JsonPropertyDescription("HuggingFace hub repository id, e.g. openai-community/gpt2. Downloaded once (config.json, model.safetensors, tokenizer.json) into the checkpoint volume.")
  public String hub;

  @JsonPropertyDescription("Hub revision (branch, tag or commit) used with hub.")
  public String revision = "main";

  @JsonPropertyDescription("A HuggingFace-layout model directory (config.json, model.safetensors, tokenizer.json). With claimName it is relative to that volume; in a local run it is relative to the job file.")
  public String path;

  @Pattern(CheckpointSpec.CLAIM_NAME)
  @JsonPropertyDescription("An existing PersistentVolumeClaim that holds path; mounted read-only into the trainer Pod.")
  public String claimName;

  @JsonPropertyDescription("A new, randomly initialised GPT-2 with the trainer's byte-level tokenizer: needs no download and no files (tests, demos).")
  public ScratchModelSpec scratch;
}
