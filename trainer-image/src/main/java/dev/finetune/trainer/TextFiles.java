package dev.finetune.trainer;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.io.JsonEOFException;
import com.fasterxml.jackson.databind.JsonNode;
import dev.finetune.api.FineTuneJobs;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** The text files a job names (data, config.json): their problems in words, with where, as bad input. */
public final class TextFiles {
  private TextFiles() {}

  /** A text file's content; a byte that is not UTF-8 is bad input, named by file and line. */
  public static String utf8(Path file) throws IOException {
    byte[] bytes = Files.readAllBytes(file);
    try {
      return StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
          .onUnmappableCharacter(CodingErrorAction.REPORT).decode(ByteBuffer.wrap(bytes)).toString();
    } catch (CharacterCodingException e) {
      throw new BadJobException(file + ": " + FineTuneJobs.notUtf8(bytes));
    }
  }

  /**
   * A model directory's config.json as a JSON object; not UTF-8, not JSON or not an object is bad input that names
   * the file, line and column.
   */
  public static JsonNode modelConfig(Path configJson) throws IOException {
    JsonNode c;
    try {
      c = FineTuneJobs.json().readTree(utf8(configJson));
    } catch (JsonProcessingException e) {
      throw new BadJobException(configJson + " line " + e.getLocation().getLineNr() + ": not valid JSON at column "
          + e.getLocation().getColumnNr() + ": " + jsonProblem(e) + "; a model directory needs the config.json"
          + " HuggingFace wrote for the model (copy it from the model's repository)");
    }
    if (c == null || !c.isObject()) {
      throw new BadJobException(configJson + ": is not a JSON object; a model directory needs the config.json HuggingFace"
          + " wrote for the model");
    }
    return c;
  }

  /** What is wrong with a JSON text, in words (the parser's own message names its internals, not the fix). */
  public static String jsonProblem(JsonProcessingException e) {
    String m = e.getOriginalMessage() == null ? "" : e.getOriginalMessage();
    Matcher unexpected = Pattern.compile("^Unexpected character \\('(.+?)' \\(code").matcher(m);
    Matcher token = Pattern.compile("^Unrecognized token '(.*?)'").matcher(m);
    if (e instanceof JsonEOFException || m.startsWith("Unexpected end-of-input")) {
      return "it ends before the value is closed (a missing '}', ']' or '\"'?)";
    } else if (unexpected.find()) {
      return "unexpected '" + unexpected.group(1) + "' (a missing comma or quote, or a trailing comma?)";
    } else if (token.find()) {
      return "'" + token.group(1) + "' is not a JSON value (strings need double quotes)";
    } else if (m.startsWith("Illegal unquoted character")) {
      return "a control character inside a string (write a tab as \\t and a line break as \\n)";
    } else if (m.contains("Trailing token")) {
      return "more than one value (one object a line, or one array)";
    }
    return "it is not a JSON value";
  }
}
