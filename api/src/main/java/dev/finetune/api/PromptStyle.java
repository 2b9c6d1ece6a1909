package dev.finetune.api;

import com.fasterxml.jackson.annotation.JsonProperty;

/** The prompt templates of the reference (chapter 7 of "Build a Large Language Model From Scratch"). */
public enum PromptStyle {
  /** Below is an instruction ... ### Instruction: / ### Input: / ### Response: */
  @JsonProperty("alpaca")
  ALPACA,
  /** &lt;|User|&gt; ... &lt;|Assistant|&gt; */
  @JsonProperty("phi3")
  PHI3
}
