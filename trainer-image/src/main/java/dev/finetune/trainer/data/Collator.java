package dev.finetune.trainer.data;

import java.util.Arrays;
import java.util.List;

/**
 * Turns tokenized records into a batch as the reference's {@code custom_collate_fn} does: append one
 * end-of-text, pad with end-of-text to the longest sequence in the batch, inputs = tokens[:-1],
 * targets = tokens[1:], every end-of-text target after the first becomes -100, then truncate to
 * {@code maxLength}. With {@code maskPrompt}, targets[0 .. P-2] become -100 too (P = the prompt's token count
 * without the response header), so the loss sees only the response header and the response.
 */
public final class Collator {
  public static final long IGNORE = -100;

  private final long endOfText;
  private final int maxLength;
  private final boolean maskPrompt;

  public Collator(long endOfText, int maxLength, boolean maskPrompt) {
    this.endOfText = endOfText;
    this.maxLength = maxLength;
    this.maskPrompt = maskPrompt;
  }

  /** One tokenized record: all of its tokens, and how many of them are the instruction-and-input part. */
  public record Example(long[] tokens, int promptTokens) {}

  /** Inputs and targets [B, T]; {@code tokens} counts the input positions that are not padding. */
  public record Batch(long[][] inputs, long[][] targets, long tokens) {
    public int size() {
      return inputs.length;
    }

    public int length() {
      return inputs[0].length;
    }
  }

  public Batch collate(List<Example> examples) {
    int longest = 0;
    for (Example e : examples) {
      longest = Math.max(longest, e.tokens().length + 1);
    }
    int t = Math.min(longest - 1, maxLength);
    long[][] inputs = new long[examples.size()][];
    long[][] targets = new long[examples.size()][];
    long tokens = 0;
    for (int i = 0; i < examples.size(); i++) {
      Example e = examples.get(i);
      long[] padded = Arrays.copyOf(e.tokens(), longest);
      Arrays.fill(padded, e.tokens().length, longest, endOfText);
      long[] in = Arrays.copyOfRange(padded, 0, longest - 1);
      long[] out = Arrays.copyOfRange(padded, 1, longest);
      boolean first = true;
      for (int j = 0; j < out.length; j++) {
        if (out[j] == endOfText) {
          if (!first) {
            out[j] = IGNORE;
          }
          first = false;
        }
      }
      if (maskPrompt) {
        for (int j = 0; j <= e.promptTokens() - 2 && j < out.length; j++) {
          out[j] = IGNORE;
        }
      }
      inputs[i] = Arrays.copyOf(in, t);
      targets[i] = Arrays.copyOf(out, t);
      tokens += Math.min(e.tokens().length, t);
    }
    return new Batch(inputs, targets, tokens);
  }
}
