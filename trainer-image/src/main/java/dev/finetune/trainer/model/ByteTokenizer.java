package dev.finetune.trainer.model;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * The scratch models' tokenizer: one token per UTF-8 byte (0-255) and end-of-text = 256. It is saved as a small
 * {@code tokenizer.json} with a marker the loader recognises, so {@code best/} of a scratch run reloads.
 */
public final class ByteTokenizer implements TextTokenizer {
  public static final int VOCAB_SIZE = 257;
  public static final int END_OF_TEXT = 256;
  static final String MARKER = "finetune-byte-level";
  private static final String JSON = "{\n  \"type\": \"" + MARKER + "\",\n"
      + "  \"description\": \"One token per UTF-8 byte (ids 0-255) and <|endoftext|> = 256. Written by the FineTune trainer.\",\n"
      + "  \"vocab_size\": 257,\n  \"end_of_text\": 256\n}\n";

  static boolean isByteTokenizer(Path tokenizerJson) throws IOException {
    if (Files.size(tokenizerJson) > 4096) {
      return false;
    }
    return Files.readString(tokenizerJson).contains("\"" + MARKER + "\"");
  }

  @Override
  public long[] encode(String text) {
    byte[] bytes = text.getBytes(StandardCharsets.UTF_8);
    long[] ids = new long[bytes.length];
    for (int i = 0; i < bytes.length; i++) {
      ids[i] = bytes[i] & 0xff;
    }
    return ids;
  }

  @Override
  public String decode(long[] ids) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    for (long id : ids) {
      if (id >= 0 && id < 256) {
        out.write((int) id);
      } else if (id == END_OF_TEXT) {
        out.writeBytes("<|endoftext|>".getBytes(StandardCharsets.UTF_8));
      }
    }
    return out.toString(StandardCharsets.UTF_8);
  }

  @Override
  public long endOfText() {
    return END_OF_TEXT;
  }

  @Override
  public void save(Path dir) throws IOException {
    Files.writeString(dir.resolve("tokenizer.json"), JSON);
  }
}
