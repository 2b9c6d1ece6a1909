package dev.finetune.api;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.annotation.JsonSetter;
import com.fasterxml.jackson.annotation.Nulls;
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
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonStreamContext;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.databind.DeserializationContext;
import com.fasterxml.jackson.databind.JsonDeserializer;
import com.fasterxml.jackson.databind.deser.DeserializationProblemHandler;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.util.ArrayList;
import java.util.Optional;
import java.util.Set;
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
        // An explicit null keeps the field's initial value, its default, as a real API server prunes the null
        // and applies the CRD default: the field initialisers are the one place defaults are written.
        .setDefaultSetterInfo(JsonSetter.Value.forValueNulls(Nulls.SKIP))
        .enable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES)
        .disable(DeserializationFeature.ACCEPT_FLOAT_AS_INT)
        .disable(SerializationFeature.FAIL_ON_EMPTY_BEANS);
  }

  /** A JSON mapper that knows the API types, for the trainer's progress and summary documents. */
  public static ObjectMapper json() {
    return JSON;
  }

  /**
   * Parses a FineTuneJob; a malformed document, an unknown field or a wrong type fails with the field's path
   * and line (every unknown field and wrong value at once).
   */
  public static FineTuneJob parse(String text) {
    Parsed parsed = parseCollecting(text);
    if (!parsed.problems().isEmpty()) {
      throw new InvalidJobException(parsed.problems());
    }
    return parsed.job();
  }

  /** Reads and parses a FineTuneJob file; problems name the file (and a byte that is not UTF-8, its line). */
  public static FineTuneJob read(Path file) throws IOException {
    try {
      return parse(readUtf8(file));
    } catch (InvalidJobException e) {
      throw e.in(file.toString());
    }
  }

  /**
   * Parses and checks a FineTuneJob; throws with every problem at once: unknown fields, wrong types and what
   * the validator finds in the rest.
   */
  public static FineTuneJob readValid(Path file) throws IOException {
    Parsed parsed;
    try {
      parsed = parseCollecting(readUtf8(file));
    } catch (InvalidJobException e) {
      throw e.in(file.toString());
    }
    List<Problem> problems = new ArrayList<>(parsed.problems());
    // a field the parser already refused (and left empty) is not reported twice
    Set<String> reported = problems.stream().map(Problem::field).collect(Collectors.toSet());
    FineTuneJobValidator.validate(parsed.job()).stream().filter(p -> !reported.contains(p.field()))
        .filter(p -> !parsed.knockOn(p)).forEach(problems::add);
    if (!problems.isEmpty()) {
      throw new InvalidJobException(problems).in(file.toString());
    }
    return parsed.job();
  }

  /** A parsed job and what the parser refused in it (unknown fields, values of the wrong type). */
  /** A field that a misspelt one beside it probably meant, left at its default: {@code parent}.{@code name}. */
  private record Shadowed(String parent, String name) {}

  private record Parsed(FineTuneJob job, List<Problem> problems, List<Shadowed> shadowed) {

    /**
     * Whether a validator problem only follows from a misspelt field having been left at its default: it is about
     * that field, or, beside it, names it ("below learningRate").
     */
    boolean knockOn(Problem p) {
      return shadowed.stream().anyMatch(s -> {
        String meant = s.parent().isEmpty() ? s.name() : s.parent() + "." + s.name();
        boolean beside = p.field().startsWith(s.parent().isEmpty() ? "" : s.parent() + ".");
        return p.field().equals(meant) || beside && p.message().matches("(?s).*\\b" + s.name() + "\\b.*");
      });
    }
  }

  private static Parsed parseCollecting(String text) {
    ProblemCollector collector = new ProblemCollector(text);
    try {
      FineTuneJob job = text.isBlank() ? null : YAML.readerFor(FineTuneJob.class).withHandler(collector).readValue(text);
      if (job == null) {
        throw new InvalidJobException(List.of(new Problem("", "the document is empty; write a FineTuneJob (see examples/)")));
      }
      if (job.getSpec() == null && collector.problems.isEmpty()) {
        throw new InvalidJobException(List.of(new Problem("spec", "is missing; a FineTuneJob needs spec.model and spec.dataset")));
      }
      return new Parsed(job, List.copyOf(collector.problems), List.copyOf(collector.shadowed));
    } catch (JsonProcessingException e) {
      List<Problem> problems = new ArrayList<>(collector.problems);
      problems.add(describe(e));
      throw new InvalidJobException(problems);
    }
  }

  /** The file's text; a byte that is not UTF-8 is bad input, named by line. */
  private static String readUtf8(Path file) throws IOException {
    byte[] bytes = Files.readAllBytes(file);
    try {
      return StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
          .onUnmappableCharacter(CodingErrorAction.REPORT).decode(ByteBuffer.wrap(bytes)).toString();
    } catch (CharacterCodingException e) {
      throw new InvalidJobException(List.of(new Problem("", notUtf8(bytes))));
    }
  }

  /**
   * Where the first byte that is not UTF-8 is, in words: "line 7, byte 12 (0xE9) is not UTF-8; ...". For every
   * text file the job reads (job files, data files).
   */
  public static String notUtf8(byte[] bytes) {
    var decoder = StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
        .onUnmappableCharacter(CodingErrorAction.REPORT);
    ByteBuffer in = ByteBuffer.wrap(bytes);
    java.nio.CharBuffer out = java.nio.CharBuffer.allocate(bytes.length + 1);
    var result = decoder.decode(in, out, true);
    int offset = result.isError() ? in.position() : bytes.length;
    int line = 1;
    int lineStart = 0;
    for (int i = 0; i < offset; i++) {
      if (bytes[i] == '\n') {
        line++;
        lineStart = i + 1;
      }
    }
    String value = offset < bytes.length ? String.format(" (0x%02X)", bytes[offset] & 0xff) : "";
    return "line " + line + ", byte " + (offset - lineStart + 1) + value
        + " is not UTF-8; save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)";
  }

  /** Records every unknown field and wrong value instead of stopping at the first; the value is left empty. */
  private static final class ProblemCollector extends DeserializationProblemHandler {
    final List<Problem> problems = new ArrayList<>();
    /** The fields unknown fields probably meant. */
    final List<Shadowed> shadowed = new ArrayList<>();
    private final List<String> lines;

    ProblemCollector(String text) {
      this.lines = text.lines().toList();
    }

    @Override
    public boolean handleUnknownProperty(DeserializationContext ctxt, JsonParser p, JsonDeserializer<?> deser,
        Object beanOrClass, String name) throws IOException {
      List<String> known = deser == null || deser.getKnownPropertyNames() == null ? List.of()
          : deser.getKnownPropertyNames().stream().map(String::valueOf).sorted().toList();
      String field = fieldPath(p);
      Optional<String> meant = closest(name, known);
      String suggestion = meant.map(k -> "; did you mean " + k + "?").orElse("");
      // the field the typo left at its default: checks of it, or against it, would only repeat this problem
      meant.ifPresent(k -> shadowed.add(new Shadowed(field.contains(".") ? field.substring(0, field.lastIndexOf('.'))
          : "", k)));
      problems.add(new Problem(field, "unknown field" + keyLine(p, name) + suggestion
          + (known.isEmpty() ? "" : " (known fields here: " + String.join(", ", known) + ")")));
      p.skipChildren();
      return true;
    }

    @Override
    public Object handleWeirdStringValue(DeserializationContext ctxt, Class<?> type, String value, String msg) {
      JsonParser p = ctxt.getParser();
      problems.add(new Problem(fieldPath(p), "'" + value + "' is not " + typeName(type) + line(p) + enumValues(type)));
      return null;
    }

    @Override
    public Object handleWeirdNumberValue(DeserializationContext ctxt, Class<?> type, Number value, String msg) {
      JsonParser p = ctxt.getParser();
      problems.add(new Problem(fieldPath(p), "'" + value + "' is not " + typeName(type) + line(p) + enumValues(type)));
      return null;
    }

    /**
     * The line of a field's name: the parser stands on its value, which for a nested block starts on a later
     * line, so look back from there for the name.
     */
    private String keyLine(JsonParser p, String name) {
      if (p.currentTokenLocation() == null) {
        return "";
      }
      int valueLine = p.currentTokenLocation().getLineNr();
      java.util.regex.Pattern key = java.util.regex.Pattern.compile("(^|[\\s{,])[\"']?" + java.util.regex.Pattern.quote(name) + "[\"']?\\s*:");
      for (int i = Math.min(valueLine, lines.size()); i >= 1; i--) {
        if (key.matcher(lines.get(i - 1)).find()) {
          return " (line " + i + ")";
        }
      }
      return " (line " + valueLine + ")";
    }

    private static String line(JsonParser p) {
      return p.currentTokenLocation() == null ? "" : " (line " + p.currentTokenLocation().getLineNr() + ")";
    }
  }

  /** The closest of the known names, when it is close enough to be the intended one. */
  static java.util.Optional<String> closest(String name, List<String> known) {
    String lower = name.toLowerCase(java.util.Locale.ROOT);
    for (String k : known) {
      // warmup for warmupSteps: a cut-short name
      if (lower.length() >= 4 && k.toLowerCase(java.util.Locale.ROOT).startsWith(lower)) {
        return java.util.Optional.of(k);
      }
    }
    String best = null;
    int bestDistance = Integer.MAX_VALUE;
    for (String k : known) {
      int d = distance(name.toLowerCase(java.util.Locale.ROOT), k.toLowerCase(java.util.Locale.ROOT));
      if (d < bestDistance) {
        best = k;
        bestDistance = d;
      }
    }
    return best != null && bestDistance <= Math.max(1, Math.min(3, name.length() / 3)) ? java.util.Optional.of(best)
        : java.util.Optional.empty();
  }

  /** Levenshtein distance, with a swap of two neighbours counted as one edit. */
  private static int distance(String a, String b) {
    int[][] d = new int[a.length() + 1][b.length() + 1];
    for (int i = 0; i <= a.length(); i++) {
      d[i][0] = i;
    }
    for (int j = 0; j <= b.length(); j++) {
      d[0][j] = j;
    }
    for (int i = 1; i <= a.length(); i++) {
      for (int j = 1; j <= b.length(); j++) {
        int cost = a.charAt(i - 1) == b.charAt(j - 1) ? 0 : 1;
        d[i][j] = Math.min(Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1), d[i - 1][j - 1] + cost);
        if (i > 1 && j > 1 && a.charAt(i - 1) == b.charAt(j - 2) && a.charAt(i - 2) == b.charAt(j - 1)) {
          d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
        }
      }
    }
    return d[a.length()][b.length()];
  }

  /** The field path of a parser position: spec.training.epochs, spec.tolerations[0].key. */
  private static String path(JsonStreamContext context) {
    java.util.Deque<String> parts = new java.util.ArrayDeque<>();
    for (JsonStreamContext c = context; c != null && !c.inRoot(); c = c.getParent()) {
      if (c.inObject() && c.getCurrentName() != null) {
        parts.addFirst("." + c.getCurrentName());
      } else if (c.inArray()) {
        parts.addFirst("[" + Math.max(0, c.getCurrentIndex()) + "]");
      }
    }
    String joined = String.join("", parts);
    return joined.startsWith(".") ? joined.substring(1) : joined;
  }

  /** The path of the value under the parser (an object or list value opens a context of its own). */
  private static String fieldPath(JsonParser p) {
    JsonStreamContext c = p.getParsingContext();
    if (p.currentToken() == JsonToken.START_OBJECT || p.currentToken() == JsonToken.START_ARRAY) {
      c = c.getParent();
    }
    return path(c);
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
    String detail = yamlDetail(msg);
    return detail != null ? new Problem(where, "not valid YAML: " + detail)
        : new Problem(where, "not valid YAML or JSON" + line + ": " + msg.lines().findFirst().orElse(msg));
  }

  private static final java.util.regex.Pattern MARK =
      java.util.regex.Pattern.compile("^ in '[^']*', line (\\d+), column (\\d+):$");

  /**
   * SnakeYAML's message in one line: the problem where it was found, and the construct it was parsing (its "context"),
   * each with line, column and the text there, e.g. "expected <block end>, but found '<block mapping start>' at
   * line 30, column 5 (batchSize: 16), while parsing a block mapping at line 13, column 3 (model:)". Null when
   * the message is not of that form.
   */
  static String yamlDetail(String msg) {
    List<String> lines = msg.lines().toList();
    List<String> said = new ArrayList<>();
    for (int i = 0; i < lines.size(); i++) {
      String text = lines.get(i);
      if (text.isBlank() || text.startsWith(" ")) {
        continue;
      }
      java.util.regex.Matcher m = i + 1 < lines.size() ? MARK.matcher(lines.get(i + 1)) : null;
      if (m == null || !m.matches()) {
        said.add(text);
        continue;
      }
      String excerpt = i + 2 < lines.size() ? lines.get(i + 2).trim() : "";
      said.add(text + " at line " + m.group(1) + ", column " + m.group(2) + (excerpt.isEmpty() ? "" : " (" + excerpt + ")"));
      i += 2;
    }
    if (said.isEmpty() || lines.stream().noneMatch(l -> MARK.matcher(l).matches())) {
      return null;
    }
    // SnakeYAML says the construct it was in first, the problem last: the problem leads
    String problem = said.get(said.size() - 1);
    String context = said.size() > 1 ? String.join("; ", said.subList(0, said.size() - 1)) : "";
    String hint = problem.contains("<block end>") || problem.contains("mapping values are not allowed")
        ? ". Check the indentation: a field must line up with the fields beside it" : "";
    return problem + (context.isEmpty() ? "" : ", " + context) + hint;
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
