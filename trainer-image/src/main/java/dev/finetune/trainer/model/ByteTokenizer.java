package dev.finetune.trainer.model;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The scratch models' tokenizer: one token per UTF-8 byte (0-255) and end-of-text = 256. It is saved as a standard
 * HuggingFace {@code tokenizer.json} (byte-level BPE without merges, GPT-2's byte-to-character map), so
 * {@code best/} of a scratch run loads in HuggingFace tokenizers and transformers, and reloads here as this class.
 */
public final class ByteTokenizer implements TextTokenizer {
  public static final int VOCAB_SIZE = 257;
  public static final int END_OF_TEXT = 256;
  static final String END_OF_TEXT_TOKEN = "<|endoftext|>";
  /** The format trainers before the HuggingFace one wrote; still read. */
  static final String MARKER = "finetune-byte-level";
  private static final ObjectMapper JSON = new ObjectMapper();

  /** Whether a tokenizer.json is this tokenizer: the old marker, or byte-level BPE with the 256 bytes and no merges. */
  static boolean isByteTokenizer(Path tokenizerJson) throws IOException {
    if (Files.size(tokenizerJson) > 65536) {
      return false;
    }
    String text = Files.readString(tokenizerJson);
    if (text.contains("\"" + MARKER + "\"")) {
      return true;
    }
    JsonNode t;
    try {
      t = JSON.readTree(text);
    } catch (IOException e) {
      return false;
    }
    JsonNode model = t.path("model");
    JsonNode added = t.path("added_tokens");
    return model.path("type").asText().equals("BPE") && model.path("merges").isArray() && model.path("merges").isEmpty()
        && model.path("vocab").equals(JSON.valueToTree(vocab())) && t.path("pre_tokenizer").path("type").asText().equals("ByteLevel")
        && added.size() == 1 && added.get(0).path("id").asInt() == END_OF_TEXT
        && added.get(0).path("content").asText().equals(END_OF_TEXT_TOKEN);
  }

  /** GPT-2's map of bytes to printable characters (bytes_to_unicode), as token string to id (= the byte). */
  static Map<String, Integer> vocab() {
    List<Integer> printable = new ArrayList<>();
    for (int b = '!'; b <= '~'; b++) {
      printable.add(b);
    }
    for (int b = 0xA1; b <= 0xAC; b++) {
      printable.add(b);
    }
    for (int b = 0xAE; b <= 0xFF; b++) {
      printable.add(b);
    }
    Map<String, Integer> vocab = new LinkedHashMap<>();
    int shifted = 0;
    for (int b = 0; b < 256; b++) {
      int c = printable.contains(b) ? b : 256 + shifted++;
      vocab.put(new String(Character.toChars(c)), b);
    }
    return vocab;
  }

  /** The HuggingFace tokenizer.json of this tokenizer. */
  static String huggingFaceJson() {
    ObjectNode t = JSON.createObjectNode();
    t.put("version", "1.0");
    t.putNull("truncation");
    t.putNull("padding");
    ObjectNode eot = t.putArray("added_tokens").addObject();
    eot.put("id", END_OF_TEXT);
    eot.put("content", END_OF_TEXT_TOKEN);
    eot.put("single_word", false);
    eot.put("lstrip", false);
    eot.put("rstrip", false);
    eot.put("normalized", false);
    eot.put("special", true);
    t.putNull("normalizer");
    ObjectNode pre = t.putObject("pre_tokenizer");
    pre.put("type", "ByteLevel");
    pre.put("add_prefix_space", false);
    pre.put("trim_offsets", true);
    pre.put("use_regex", true);
    t.putNull("post_processor");
    ObjectNode decoder = t.putObject("decoder");
    decoder.put("type", "ByteLevel");
    decoder.put("add_prefix_space", true);
    decoder.put("trim_offsets", true);
    decoder.put("use_regex", true);
    ObjectNode model = t.putObject("model");
    model.put("type", "BPE");
    model.putNull("dropout");
    model.putNull("unk_token");
    model.put("continuing_subword_prefix", "");
    model.put("end_of_word_suffix", "");
    model.put("fuse_unk", false);
    model.put("byte_fallback", false);
    model.set("vocab", JSON.valueToTree(vocab()));
    model.putArray("merges");
    try {
      return JSON.writerWithDefaultPrettyPrinter().writeValueAsString(t) + "\n";
    } catch (IOException e) {
      throw new IllegalStateException(e);
    }
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

  /** One id a UTF-8 byte; the bytes of a character share its place in the text. */
  @Override
  public Encoded encodeRendered(String text) {
    long[] ids = encode(text);
    int[] starts = new int[ids.length];
    int[] ends = new int[ids.length];
    int k = 0;
    for (int unit = 0; unit < text.length(); ) {
      int cp = text.codePointAt(unit);
      int next = unit + Character.charCount(cp);
      int bytes = new String(Character.toChars(cp)).getBytes(StandardCharsets.UTF_8).length;
      for (int b = 0; b < bytes; b++, k++) {
        starts[k] = unit;
        ends[k] = next;
      }
      unit = next;
    }
    return new Encoded(ids, starts, ends);
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
    Files.writeString(dir.resolve("tokenizer.json"), huggingFaceJson());
    // transformers' AutoTokenizer reads the class and the special token from here
    Files.writeString(dir.resolve("tokenizer_config.json"), "{\n  \"tokenizer_class\": \"PreTrainedTokenizerFast\",\n"
        + "  \"eos_token\": \"" + END_OF_TEXT_TOKEN + "\",\n  \"bos_token\": \"" + END_OF_TEXT_TOKEN + "\",\n"
        + "  \"unk_token\": \"" + END_OF_TEXT_TOKEN + "\",\n  \"add_prefix_space\": false\n}\n");
  }
}
