package dev.finetune.api;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonPropertyDescription;

/** Where the results are, as paths on the checkpoint volume relative to the run directory. */
@JsonInclude(JsonInclude.Include.NON_NULL)
public class CheckpointStatus {
  @JsonPropertyDescription("The newest complete checkpoint, e.g. checkpoints/epoch-0003.")
  public String latest;

  @JsonPropertyDescription("The best model in HuggingFace layout, loadable by other tools: best.")
  public String best;

  @JsonPropertyDescription("The checkpoint training resumed from after a restart, if any.")
  public String restoredFrom;
}
