package dev.finetune.api;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonPropertyDescription;

/** Outcome of answering the test split and of the optional judging. */
@JsonInclude(JsonInclude.Include.NON_NULL)
public class EvaluationStatus {
  @JsonPropertyDescription("Test prompts answered (lines of responses.jsonl).")
  public Integer responses;

  @JsonPropertyDescription("Path of the answers, relative to the run directory.")
  public String responsesPath;

  @JsonPropertyDescription("Answers equal to the expected output (both stripped of surrounding white space).")
  public Integer exactMatches;

  @JsonPropertyDescription("exactMatches / responses: the share of test prompts answered exactly right (0-1).")
  public Double exactMatchRate;

  @JsonPropertyDescription("Answers the judge scored.")
  public Integer scored;

  @JsonPropertyDescription("Answers the judge could not score (timeouts, HTTP errors, unparseable replies).")
  public Integer scoreFailures;

  @JsonPropertyDescription("Mean judge score (0-100) of the scored answers.")
  public Double meanScore;
}
