package dev.finetune.api;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonMappingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.exc.InvalidFormatException;
import com.fasterxml.jackson.databind.exc.MismatchedInputException;
import com.fasterxml.jackson.databind.exc.UnrecognizedPropertyException;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import com.fasterxml.jackson.dataformat.yaml.YAMLGenerator;
import dev.finetune.api.validation.FineTuneJobValidator;
import dev.finetune.api.validation.InvalidJobException;
import dev.finetune.api.validation.Problem;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Collectors;

/**
 * The one parser of FineTuneJob documents (YAML or JSON, which is YAML too), used by the operator and the
 * trainer. Unknown fields are errors, so a typo like {@code epoch:} is reported instead of ignored.
 */
public final class FineTuneJobs {
  private static final ObjectMapper YAML = configure(new ObjectMapper(
      new YAMLFactory().disable(YAMLGenerator.Feature.WRITE_DOC_START_MARKER)
          .enable(YAMLGenerator.Feature.MINIMIZE_QUOTES)
          // cpu: "1" must stay a string, or kubectl apply of the written YAML is refused
          .enable(YAMLGenerator.Feature.ALWAYS_QUOTE_NUMBERS_AS_STRINGS)));
  private static final ObjectMapper JSON = configure(new ObjectMapper());

  private FineTuneJobs() {}

  private static ObjectMapper configure(ObjectMapper mapper) {
    return mapper.findAndRegisterModules()
        .enable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES)
        .disable(DeserializationFeature.ACCEPT_FLOAT_AS_INT)
        .disable(SerializationFeature.FAIL_ON_EMPTY_BEANS);
  }

  /** A JSON mapper that knows the API types, for the trainer's progress and summary documents. */
  public static ObjectMapper json() {
    return JSON;
  }

  /** Parses a FineTuneJob; a malformed document or a wrong type fails with the field's path. */
  public static FineTuneJob parse(String text) {
    try {
      FineTuneJob job = text.isBlank() ? null : YAML.readValue(text, FineTuneJob.class);
      if (job == null) {
        throw new InvalidJobException(List.of(new Problem("", "the document is empty; write a FineTuneJob (see examples/)")));
      }
      if (job.getSpec() == null) {
        throw new InvalidJobException(List.of(new Problem("spec", "is missing; a FineTuneJob needs spec.model and spec.dataset")));
      }
      return job;
    } catch (JsonProcessingException e) {
      throw new InvalidJobException(List.of(describe(e)));
    }
  }

  /** Reads and parses a FineTuneJob file; problems name the file. */
  public static FineTuneJob read(Path file) throws IOException {
    String text = Files.readString(file, StandardCharsets.UTF_8);
    try {
      return parse(text);
    } catch (InvalidJobException e) {
      throw e.in(file.toString());
    }
  }

  /** Parses and checks a FineTuneJob; throws with every problem at once. */
  public static FineTuneJob readValid(Path file) throws IOException {
    FineTuneJob job = read(file);
    List<Problem> problems = FineTuneJobValidator.validate(job);
    if (!problems.isEmpty()) {
      throw new InvalidJobException(problems).in(file.toString());
    }
    return job;
  }

  public static String toYaml(Object value) {
    try {
      return YAML.writeValueAsString(value);
    } catch (JsonProcessingException e) {
      throw new IllegalStateException("cannot write " + value.getClass().getSimpleName() + " as YAML", e);
    }
  }

  public static String toJson(Object value) {
    try {
      return JSON.writeValueAsString(value);
    } catch (JsonProcessingException e) {
      throw new IllegalStateException("cannot write " + value.getClass().getSimpleName() + " as JSON", e);
    }
  }

  /** A deep copy through JSON, e.g. a job with its defaults filled in. */
  public static FineTuneJob copy(FineTuneJob job) {
    return parse(toJson(job));
  }

  private static Problem describe(JsonProcessingException e) {
    String where = e instanceof JsonMappingException m ? path(m.getPath()) : "";
    String line = e.getLocation() == null ? "" : " (line " + e.getLocation().getLineNr() + ")";
    if (e instanceof UnrecognizedPropertyException u) {
      String known = u.getKnownPropertyIds() == null ? "" : u.getKnownPropertyIds().stream()
          .map(String::valueOf).sorted().collect(Collectors.joining(", "));
      return new Problem(where, "unknown field" + line + "; known fields here: " + known);
    }
    if (e instanceof InvalidFormatException f) {
      return new Problem(where, "'" + f.getValue() + "' is not " + typeName(f.getTargetType()) + line
          + enumValues(f.getTargetType()));
    }
    if (e instanceof MismatchedInputException m && !where.isEmpty()) {
      return new Problem(where, "expected " + typeName(m.getTargetType()) + line + enumValues(m.getTargetType()));
    }
    String msg = e.getOriginalMessage() == null ? e.getMessage() : e.getOriginalMessage();
    return new Problem(where, "not valid YAML or JSON" + line + ": " + msg.lines().findFirst().orElse(msg));
  }

  private static String path(List<JsonMappingException.Reference> refs) {
    StringBuilder sb = new StringBuilder();
    for (JsonMappingException.Reference r : refs) {
      if (r.getFieldName() != null) {
        if (sb.length() > 0) {
          sb.append('.');
        }
        sb.append(r.getFieldName());
      } else if (r.getIndex() >= 0) {
        sb.append('[').append(r.getIndex()).append(']');
      }
    }
    return sb.toString();
  }

  private static String typeName(Class<?> type) {
    if (type == null) {
      return "a different value";
    }
    if (type == Integer.class || type == int.class || type == Long.class || type == long.class) {
      return "an integer";
    }
    if (type == Double.class || type == double.class || type == Float.class) {
      return "a number";
    }
    if (type == Boolean.class || type == boolean.class) {
      return "true or false";
    }
    if (type == String.class) {
      return "a string";
    }
    if (type.isEnum()) {
      return "a valid value";
    }
    if (List.class.isAssignableFrom(type)) {
      return "a list";
    }
    return "an object (" + type.getSimpleName() + ")";
  }

  private static String enumValues(Class<?> type) {
    if (type == null || !type.isEnum()) {
      return "";
    }
    return "; one of: " + java.util.Arrays.stream(type.getEnumConstants())
        .map(c -> JSON.convertValue(c, String.class)).collect(Collectors.joining(", "));
  }
}
