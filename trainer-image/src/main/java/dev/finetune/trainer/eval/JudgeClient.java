package dev.finetune.trainer.eval;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.finetune.api.EvaluationSpec.JudgeSpec;
import dev.finetune.api.PromptStyle;
import dev.finetune.trainer.data.Prompts;
import dev.finetune.trainer.data.Record;
import dev.finetune.trainer.hub.HubSettings;
import java.io.IOException;
import java.net.ConnectException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpConnectTimeoutException;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.net.http.HttpTimeoutException;
import java.time.Duration;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Scores an answer 0-100 against the expected output with a judge model behind an OpenAI-compatible
 * {@code POST {url}/chat/completions} (an Ollama server's {@code /v1}, say), with the fixed rubric of the
 * reference's chapter 7. One request per answer, temperature 0; the bearer token is sent when one is given.
 * Every failure (timeout, connection, HTTP status, a reply that is not a score) comes back as a
 * {@link Score} with an error, never as an exception.
 */
public final class JudgeClient {
  private static final ObjectMapper JSON = new ObjectMapper();
  /** The whole reply is a number, optionally "/100", "%" or a trailing period: "85", "85/100", "85.". */
  private static final Pattern WHOLE = Pattern.compile("^\\s*\\**\\s*(\\d{1,3})(?:\\s*/\\s*100|\\s*%)?\\s*\\**\\s*\\.?\\s*$");
  private static final Pattern NUMBER = Pattern.compile("(?<!\\d)(?<!\\d\\.)(\\d+(?:\\.\\d+)?)(?!\\d|\\.\\d)");

  private final URI endpoint;
  private final String model;
  private final String apiKey;
  private final Duration timeout;
  private final long seed;
  private final HttpClient http;

  /** The score of one answer, or why there is none. */
  public record Score(Integer value, String error) {
    public boolean ok() {
      return value != null;
    }

    /** Whether the judge could not be reached at all (timeout, connection): counts toward giving up. */
    boolean unreachable() {
      return error != null && (error.startsWith("timed out") || error.startsWith("cannot connect"));
    }
  }

  public JudgeClient(JudgeSpec spec, String apiKey, long seed) {
    this(spec, apiKey, seed, null);
  }

  JudgeClient(JudgeSpec spec, String apiKey, long seed, HttpClient http) {
    if (spec == null || spec.url == null || spec.url.isBlank() || spec.model == null || spec.model.isBlank()) {
      throw new IllegalArgumentException("spec.evaluation.judge needs url and model");
    }
    String base = spec.url.strip();
    while (base.endsWith("/")) {
      base = base.substring(0, base.length() - 1);
    }
    this.endpoint = URI.create(base + "/chat/completions");
    this.model = spec.model;
    this.apiKey = apiKey == null || apiKey.isBlank() ? null : apiKey.strip();
    this.timeout = Duration.ofSeconds(spec.timeoutSeconds);
    this.seed = seed;
    this.http = http != null ? http : HttpClient.newBuilder()
        .connectTimeout(timeout)
        .version(HttpClient.Version.HTTP_1_1)
        .followRedirects(HttpClient.Redirect.NORMAL)
        .proxy(HubSettings.environmentProxies())
        .build();
  }

  public URI endpoint() {
    return endpoint;
  }

  /** The rubric, as the reference's chapter 7 asks Ollama (its format_input is the Alpaca instruction part). */
  public static String rubric(Record r, String answer) {
    return "Given the input `" + Prompts.instructionPart(PromptStyle.ALPACA, r) + "` and correct output `"
        + r.output() + "`, score the model response `" + answer + "` on a scale from 0 to 100, where 100 is the"
        + " best score. Respond with the integer number only.";
  }

  /** Asks the judge for one answer's score. */
  public Score score(Record record, String answer) {
    ObjectNode body = JSON.createObjectNode();
    body.put("model", model);
    ArrayNode messages = body.putArray("messages");
    messages.addObject().put("role", "user").put("content", rubric(record, answer));
    body.put("temperature", 0);
    body.put("seed", seed);
    body.put("stream", false);
    HttpRequest.Builder req = HttpRequest.newBuilder(endpoint)
        .timeout(timeout)
        .header("Content-Type", "application/json")
        .header("Accept", "application/json")
        .POST(HttpRequest.BodyPublishers.ofString(body.toString()));
    if (apiKey != null) {
      req.header("Authorization", "Bearer " + apiKey);
    }
    HttpResponse<String> rsp;
    try {
      rsp = http.send(req.build(), HttpResponse.BodyHandlers.ofString());
    } catch (HttpConnectTimeoutException e) {
      return new Score(null, "cannot connect to " + endpoint + " within " + timeout.toSeconds() + " s");
    } catch (HttpTimeoutException e) {
      return new Score(null, "timed out after " + timeout.toSeconds() + " s waiting for " + endpoint);
    } catch (ConnectException e) {
      return new Score(null, "cannot connect to " + endpoint + ": " + (e.getMessage() == null ? e : e.getMessage()));
    } catch (IOException e) {
      return new Score(null, "request to " + endpoint + " failed: " + e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return new Score(null, "interrupted");
    }
    if (rsp.statusCode() / 100 != 2) {
      return new Score(null, "HTTP " + rsp.statusCode() + " from " + endpoint + ": " + shorten(rsp.body()));
    }
    String content;
    try {
      JsonNode c = JSON.readTree(rsp.body()).path("choices").path(0).path("message").path("content");
      if (!c.isTextual()) {
        return new Score(null, "the reply has no choices[0].message.content: " + shorten(rsp.body()));
      }
      content = c.asText();
    } catch (IOException e) {
      return new Score(null, "the reply is not JSON: " + shorten(rsp.body()));
    }
    Integer v = parseScore(content);
    return v == null ? new Score(null, "the judge's reply is not a score from 0 to 100: " + shorten(content))
        : new Score(v, null);
  }

  /**
   * The integer score in a judge's reply: the whole reply ("85", "85/100", "85%", "**85**"), else the one
   * number in it ("Score: 85", "85 out of 100"). Null when there is none, more than one, a fraction, or one
   * outside 0-100.
   */
  public static Integer parseScore(String reply) {
    if (reply == null) {
      return null;
    }
    Matcher whole = WHOLE.matcher(reply);
    if (whole.matches()) {
      int v = Integer.parseInt(whole.group(1));
      return v <= 100 ? v : null;
    }
    Matcher m = NUMBER.matcher(reply);
    String found = null;
    while (m.find()) {
      String n = m.group(1);
      String before = reply.substring(0, m.start()).stripTrailing().toLowerCase(java.util.Locale.ROOT);
      if (n.equals("100") && (before.endsWith("/") || before.endsWith("out of"))) {
        continue; // the "/100" of "85/100", "85 out of 100"
      }
      if (found != null) {
        return null;
      }
      found = n;
    }
    if (found == null || found.contains(".")) {
      return null;
    }
    try {
      int v = Integer.parseInt(found);
      return v <= 100 ? v : null;
    } catch (NumberFormatException e) {
      return null;
    }
  }

  static String shorten(String s) {
    if (s == null) {
      return "";
    }
    String one = s.strip().replaceAll("\\s+", " ");
    return one.length() <= 200 ? "'" + one + "'" : "'" + one.substring(0, 200) + "...'";
  }
}
