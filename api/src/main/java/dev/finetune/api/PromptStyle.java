package dev.finetune.api;

import com.fasterxml.jackson.annotation.JsonProperty;

/**
 * How a record becomes the model's text: the prompt templates of the reference (chapter 7 of "Build a Large
 * Language Model From Scratch"), or the model's own chat template.
 */
public enum PromptStyle {
  /** Below is an instruction ... ### Instruction: / ### Input: / ### Response: */
  @JsonProperty("alpaca")
  ALPACA,
  /** &lt;|User|&gt; ... &lt;|Assistant|&gt; */
  @JsonProperty("phi3")
  PHI3,
  /** The model's chat template (tokenizer_config.json's chat_template, or chat_template.jinja), as transformers renders it. */
  @JsonProperty("chat")
  CHAT
}
