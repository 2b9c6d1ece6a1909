package dev.finetune.trainer.data;

import dev.finetune.api.PromptStyle;

/** The reference's prompt templates (DESIGN.md), character for character. */
public final class Prompts {
  static final String ALPACA_PREAMBLE =
      "Below is an instruction that describes a task. Write a response that appropriately completes the request.";

  private Prompts() {}

  /** The instruction-and-input part, without the response header (what maskPrompt hides from the loss). */
  public static String instructionPart(PromptStyle style, Record r) {
    boolean hasInput = r.input() != null && !r.input().isEmpty();
    if (style == PromptStyle.PHI3) {
      return "<|User|>\n" + r.instruction() + (hasInput ? "\n" + r.input() : "");
    }
    return ALPACA_PREAMBLE + "\n\n### Instruction:\n" + r.instruction() + (hasInput ? "\n\n### Input:\n" + r.input() : "");
  }

  public static String responseHeader(PromptStyle style) {
    return style == PromptStyle.PHI3 ? "\n\n<|Assistant|>\n" : "\n\n### Response:\n";
  }

  /** What the model is asked at generation time: instruction part and response header. */
  public static String prompt(PromptStyle style, Record r) {
    return instructionPart(style, r) + responseHeader(style);
  }

  /** A whole training text: prompt and the expected response. */
  public static String full(PromptStyle style, Record r) {
    return prompt(style, r) + r.output();
  }
}
