package dev.finetune.trainer.model;

import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;
import dev.finetune.trainer.BadJobException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Map;

/** Text to token ids and back; no special tokens are added, no truncation, no padding (the collator pads). */
public interface TextTokenizer extends AutoCloseable {

  long[] encode(String text);

  /**
   * A chat template's rendered text as transformers' apply_chat_template tokenizes it: no tokens put in front (the
   * template writes its own), special-token text as one id; with each id's place in the text.
   */
  Encoded encodeRendered(String text);

  /** Token ids and where each came from: {@code starts[i]} to {@code ends[i]}, indices into the Java String. */
  record Encoded(long[] ids, int[] starts, int[] ends) {}

  String decode(long[] ids);

  /** The end-of-text id: appended to every record and used as padding. */
  long endOfText();

  /** Writes {@code tokenizer.json} into an HF model directory so that {@link #load} reads it back. */
  void save(Path dir) throws IOException;

  @Override
  default void close() {}

  /** Reads a model directory's {@code tokenizer.json}: the trainer's byte-level one, or any HF tokenizer. */
  static TextTokenizer load(Path tokenizerJson, long endOfText) throws IOException {
    if (!Files.isRegularFile(tokenizerJson)) {
      throw new BadJobException("no tokenizer.json at " + tokenizerJson + "; a model directory needs config.json, model.safetensors and tokenizer.json");
    }
    if (ByteTokenizer.isByteTokenizer(tokenizerJson)) {
      return new ByteTokenizer();
    }
    try {
      return new Hf(tokenizerJson, endOfText);
    } catch (RuntimeException e) {
      // the tokenizers library refuses a truncated or hand-edited file; its message names line and column
      String why = e.getMessage() == null ? e.toString() : e.getMessage().lines().findFirst().orElse("");
      throw new BadJobException(tokenizerJson + ": HuggingFace tokenizers cannot read it (" + why + "); copy tokenizer.json"
          + " from the model's repository (it must match the model's vocabulary)", e);
    }
  }

  /** A HuggingFace {@code tokenizer.json} (GPT-2's byte-level BPE) through DJL's tokenizers binding. */
  final class Hf implements TextTokenizer {
    private final HuggingFaceTokenizer tokenizer;
    private final Path source;
    private final long endOfText;
    private final long[] prefix;

    Hf(Path tokenizerJson, long endOfText) throws IOException {
      // DJL truncates at 512 and pads by default; the collator does its own padding and truncation.
      this.tokenizer = HuggingFaceTokenizer.newInstance(tokenizerJson,
          Map.of("truncation", "false", "padding", "false", "addSpecialTokens", "false"));
      this.source = tokenizerJson;
      this.endOfText = endOfText;
      long[] with = tokenizer.encode("a", true, false).getIds();
      long[] without = tokenizer.encode("a", false, false).getIds();
      int lead = 0;
      while (lead < with.length - without.length && with[lead] != without[0]) {
        lead++;
      }
      this.prefix = java.util.Arrays.copyOf(with, lead);
    }

    /** The text's ids, after the tokens the tokenizer itself puts in front (Llama's begin-of-text; none for GPT-2). */
    @Override
    public long[] encode(String text) {
      long[] ids = tokenizer.encode(text, false, false).getIds();
      if (prefix.length == 0) {
        return ids;
      }
      long[] all = java.util.Arrays.copyOf(prefix, prefix.length + ids.length);
      System.arraycopy(ids, 0, all, prefix.length, ids.length);
      return all;
    }

    @Override
    public Encoded encodeRendered(String text) {
      ai.djl.huggingface.tokenizers.Encoding e = tokenizer.encode(text, false, false);
      ai.djl.huggingface.tokenizers.jni.CharSpan[] spans = e.getCharTokenSpans();
      // the tokenizers library counts code points; a String counts UTF-16 units (2 for a character outside the BMP)
      int[] unitOf = new int[text.codePointCount(0, text.length()) + 1];
      for (int cp = 0, unit = 0; cp < unitOf.length; cp++) {
        unitOf[cp] = unit;
        if (unit < text.length()) {
          unit += Character.charCount(text.codePointAt(unit));
        }
      }
      long[] ids = e.getIds();
      int[] starts = new int[ids.length];
      int[] ends = new int[ids.length];
      for (int i = 0; i < ids.length; i++) {
        starts[i] = spans[i] == null ? 0 : unitOf[Math.min(spans[i].getStart(), unitOf.length - 1)];
        ends[i] = spans[i] == null ? 0 : unitOf[Math.min(spans[i].getEnd(), unitOf.length - 1)];
      }
      return new Encoded(ids, starts, ends);
    }

    @Override
    public String decode(long[] ids) {
      return tokenizer.decode(ids, false);
    }

    @Override
    public long endOfText() {
      return endOfText;
    }

    @Override
    public void save(Path dir) throws IOException {
      Path target = dir.resolve("tokenizer.json");
      if (!Files.exists(target) || !Files.isSameFile(source, target)) {
        Files.copy(source, target, StandardCopyOption.REPLACE_EXISTING);
      }
    }

    @Override
    public void close() {
      tokenizer.close();
    }
  }
}
