package dev.finetune.trainer.data;

import java.util.Arrays;
import java.util.List;

/**
 * Turns tokenized records into a batch. An instruction record goes as the reference's {@code custom_collate_fn}
 * does: append one end-of-text, pad with end-of-text to the longest sequence in the batch, inputs = tokens[:-1],
 * targets = tokens[1:], every end-of-text target after the first becomes -100, then truncate to {@code maxLength}.
 * With {@code maskPrompt}, targets[0 .. P-2] become -100 too (P = the prompt's token count without the response
 * header), so the loss sees only the response header and the response. A chat record already ends with its
 * template's end of turn: nothing is appended, and its targets are its own tokens where {@code trained} says so,
 * -100 elsewhere and in the padding.
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

  /**
   * One tokenized record: all of its tokens, and either how many of them are the instruction-and-input part (an
   * instruction record; {@code trained} is null) or which of them the loss trains (a chat record).
   */
  public record Example(long[] tokens, int promptTokens, boolean[] trained) {
    public Example(long[] tokens, int promptTokens) {
      this(tokens, promptTokens, null);
    }

    public static Example chat(long[] tokens, boolean[] trained) {
      return new Example(tokens, 0, trained);
    }

    /** The whole sequence's length: with the end-of-text an instruction record gets appended. */
    public int length() {
      return trained == null ? tokens.length + 1 : tokens.length;
    }
  }

  /** Inputs and targets [B, T]; {@code tokens} counts the input positions that are not padding. */
  public record Batch(long[][] inputs, long[][] targets, long tokens) {
    public int size() {
      return inputs.length;
    }

    public int length() {
      return inputs[0].length;
    }
  }

  /**
   * A record as the model sees it, in the convention of HF's labels, before truncation: {@code ids} is the whole
   * sequence and {@code labels[j]} is {@code ids[j]} where the loss trains the prediction of token j, else -100
   * (the first token is never predicted).
   */
  public record Labelled(long[] ids, long[] labels) {
    /** What maxLength leaves: the first maxLength + 1 positions (maxLength inputs, maxLength targets). */
    public Labelled cut(int maxLength) {
      int n = Math.min(ids.length, maxLength + 1);
      return new Labelled(Arrays.copyOf(ids, n), Arrays.copyOf(labels, n));
    }
  }

  public Labelled labelled(Example e) {
    int n = e.length();
    long[] ids = Arrays.copyOf(e.tokens(), n);
    long[] labels = new long[n];
    labels[0] = IGNORE;
    if (e.trained() != null) {
      for (int j = 1; j < n; j++) {
        labels[j] = e.trained()[j] ? ids[j] : IGNORE;
      }
      return new Labelled(ids, labels);
    }
    ids[n - 1] = endOfText;
    boolean first = true;
    for (int j = 1; j < n; j++) {
      labels[j] = ids[j];
      if (ids[j] == endOfText) {
        if (!first) {
          labels[j] = IGNORE;
        }
        first = false;
      }
      if (maskPrompt && j <= e.promptTokens() - 1) {
        labels[j] = IGNORE;
      }
    }
    return new Labelled(ids, labels);
  }

  public Batch collate(List<Example> examples) {
    int longest = 0;
    for (Example e : examples) {
      longest = Math.max(longest, e.length());
    }
    int t = Math.min(longest - 1, maxLength);
    long[][] inputs = new long[examples.size()][t];
    long[][] targets = new long[examples.size()][t];
    long tokens = 0;
    for (int i = 0; i < examples.size(); i++) {
      Labelled l = labelled(examples.get(i));
      int n = Math.min(l.ids().length - 1, t);
      Arrays.fill(inputs[i], endOfText);
      Arrays.fill(targets[i], IGNORE);
      System.arraycopy(l.ids(), 0, inputs[i], 0, n);
      System.arraycopy(l.labels(), 1, targets[i], 0, n);
      tokens += n;
    }
    return new Batch(inputs, targets, tokens);
  }
}
