package dev.finetune.api;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonPropertyDescription;
import io.fabric8.generator.annotation.Pattern;
import io.fabric8.generator.annotation.Required;
import io.fabric8.generator.annotation.Size;
import io.fabric8.generator.annotation.ValidationRule;

/**
 * The pretrained GPT-2-family model: exactly one of {@code hub}, {@code path} or {@code scratch}; for hub downloads
 * also a token Secret and a shared cache claim.
 */
@JsonInclude(JsonInclude.Include.NON_NULL)
@ValidationRule(value = "[has(self.hub), has(self.path), has(self.scratch)].filter(s, s).size() == 1",
    messageExpression = "[has(self.hub), has(self.path), has(self.scratch)].filter(s, s).size() == 0"
        + " ? 'names no model; set exactly one of hub, path or scratch'"
        + " : 'names %d models; set exactly one of hub, path or scratch'"
        + ".format([[has(self.hub), has(self.path), has(self.scratch)].filter(s, s).size()])")
@ValidationRule(value = "!has(self.claimName) || has(self.path)", fieldPath = ".claimName",
    message = "is set without spec.model.path; say where in the volume the model directory is")
public class ModelSpec {
  /** A Secret name (a DNS subdomain), written for CEL: no backslash escapes. */
  public static final String SECRET_NAME = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
  /** A key in a Secret's data. */
  public static final String SECRET_KEY = "^[-._a-zA-Z0-9]+$";

  @Pattern("^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
  @JsonPropertyDescription("HuggingFace hub repository id, e.g. openai-community/gpt2. The trainer downloads config.json, the safetensors weights and tokenizer.json from the hub (HF_ENDPOINT: the operator's hub.endpoint, else https://huggingface.co) into the shared hub cache when there is one (cacheClaim), else into the checkpoint volume.")
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

  @JsonPropertyDescription("A Secret in the job's namespace that holds a HuggingFace hub token, for gated or private repositories (create it with kubectl create secret generic hf-token --from-literal=token=hf_...). Every trainer container gets it as HF_TOKEN straight from the Secret: the operator never reads it, and it never shows in the status, Events or the run folder. A missing Secret or key keeps the trainer Pod from starting (the status says which). Meant for hub downloads (spec.model.hub); in a local run, set HF_TOKEN instead.")
  public HubTokenSecret hubTokenSecret;

  @Pattern(CheckpointSpec.CLAIM_NAME)
  @JsonPropertyDescription("An existing PersistentVolumeClaim in the job's namespace used as a shared HuggingFace hub cache: mounted read-write at /hub-cache in every trainer Pod and set as HF_HUB_CACHE (huggingface_hub's layout), so jobs on the same model download it once. It must be writable by the trainer's user; use ReadWriteMany for jobs on several nodes or jobs that run at once on different nodes. Empty: the operator's default (the chart's hubCache.claimName) for a job that downloads from the hub, else each job downloads into its run folder. Meant for hub downloads; in a local run, set HF_HUB_CACHE instead.")
  public String cacheClaim;

  /** A key of a Secret in the job's namespace that holds a hub token. */
  @JsonInclude(JsonInclude.Include.NON_NULL)
  public static class HubTokenSecret {
    /** The key when the job names none. */
    public static final String DEFAULT_KEY = "token";

    @Required
    @Size(max = 253)
    @ValidationRule(value = "self.matches('" + SECRET_NAME + "')",
        messageExpression = "\"'\" + self + \"' is not a Secret name; use lower-case letters, digits, '-' and '.', e.g. hf-token\"")
    @JsonPropertyDescription("Name of the Secret, in the job's namespace.")
    public String name;

    @Size(max = 253)
    @ValidationRule(value = "self.matches('" + SECRET_KEY + "')",
        messageExpression = "\"'\" + self + \"' is not a Secret key; use letters, digits, '-', '_' and '.', e.g. token\"")
    @JsonPropertyDescription("Key in the Secret whose value is the token.")
    public String key = DEFAULT_KEY;
  }
}
