package dev.finetune.api;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonPropertyDescription;
import io.fabric8.generator.annotation.Max;
import io.fabric8.generator.annotation.Min;
import io.fabric8.generator.annotation.Pattern;
import io.fabric8.generator.annotation.ValidationRule;

/**
 * The checkpoint volume: a new PVC the operator creates (size, storage class) or an existing claim. The run
 * directory on it holds checkpoints/, best/, history.jsonl, responses.jsonl, the loss plot and summary.json.
 */
@JsonInclude(JsonInclude.Include.NON_NULL)
public class CheckpointSpec {
  /** A PersistentVolumeClaim name: a DNS subdomain. */
  static final String CLAIM_NAME = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

  @Min(1)
  @Max(1000)
  @JsonPropertyDescription("How many of the newest checkpoints are kept; the best one is always kept as well.")
  public Integer keep = 2;

  @Min(0)
  @JsonPropertyDescription("Also checkpoint every this many optimiser steps inside an epoch; 0: only at the end of each epoch.")
  public Integer everySteps = 0;

  @Pattern(CLAIM_NAME)
  @JsonPropertyDescription("Use this existing PersistentVolumeClaim instead of creating one; it is never deleted by the operator.")
  public String claimName;

  @Pattern("^[0-9]+(\\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
  @JsonPropertyDescription("Size of the PersistentVolumeClaim the operator creates (ignored with claimName).")
  public String size = "10Gi";

  @JsonPropertyDescription("StorageClass of the created claim. Empty: the cluster's default class.")
  public String storageClassName;

  @JsonPropertyDescription("Keep the claim the operator creates, and the results on it (best/, checkpoints/, responses.jsonl, summary.json), when the FineTuneJob is deleted (default true): it has no owner reference, and a new FineTuneJob of the same name uses it again. false: the claim and the results are deleted with the FineTuneJob. A claimName claim is never deleted.")
  public Boolean retainClaim = true;

  @ValidationRule(value = "!self.startsWith('/') && !self.contains('..')",
      messageExpression = "\"'\" + self + \"' must be a relative path inside the volume, without '..'\"")
  @JsonPropertyDescription("Run directory inside the volume. Empty: the FineTuneJob's name. In a local run, a directory relative to the job file (default runs/NAME), unless --output is given.")
  public String path;
}
