package dev.finetune.trainer.eval;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import dev.finetune.api.EvaluationSpec;
import dev.finetune.api.EvaluationStatus;
import dev.finetune.api.PromptStyle;
import dev.finetune.api.trainer.TrainerContract;
import dev.finetune.trainer.data.PromptFormat;
import dev.finetune.trainer.data.Prompts;
import dev.finetune.trainer.data.Record;
import dev.finetune.trainer.model.ByteTokenizer;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The judge against a local HTTP server that speaks OpenAI's chat-completions shape. What the server answers
 * depends on the model's answer it is asked to score: a number, an HTTP 500, a sleep past the timeout, words
 * without a score, a body that is not JSON. Scores are parsed; every failure is counted, none is fatal.
 */
class JudgeClientTest {
  static final ObjectMapper JSON = new ObjectMapper();

  @TempDir
  Path dir;
  HttpServer server;
  final List<JsonNode> requests = Collections.synchronizedList(new ArrayList<>());
  final List<String> authorizations = Collections.synchronizedList(new ArrayList<>());
  final AtomicInteger calls = new AtomicInteger();

  @BeforeEach
  void startJudge() throws IOException {
    server = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 16);
    server.setExecutor(Executors.newCachedThreadPool(r -> {
      Thread t = new Thread(r, "fake-judge");
      t.setDaemon(true);
      return t;
    }));
    server.createContext("/v1/chat/completions", this::chat);
    server.start();
  }

  @AfterEach
  void stopJudge() {
    server.stop(0);
  }

  String url() {
    return "http://127.0.0.1:" + server.getAddress().getPort() + "/v1";
  }

  private void chat(HttpExchange ex) throws IOException {
    try (ex) {
      calls.incrementAndGet();
      JsonNode req = JSON.readTree(ex.getRequestBody());
      requests.add(req);
      authorizations.add(ex.getRequestHeaders().getFirst("Authorization"));
      if (!ex.getRequestMethod().equals("POST") || !req.path("model").asText().equals("judge-model")) {
        send(ex, 400, "{\"error\":\"bad request\"}");
        return;
      }
      String prompt = req.path("messages").path(0).path("content").asText();
      String answer = prompt.replaceAll("(?s).*score the model response `(.*?)` on a scale.*", "$1");
      switch (answer) {
        case "server-error" -> send(ex, 500, "{\"error\":\"model crashed\"}");
        case "slow" -> {
          sleep(2500);
          send(ex, 200, reply("90"));
        }
        case "garbage" -> send(ex, 200, reply("I would rather not say."));
        case "two-numbers" -> send(ex, 200, reply("Between 40 and 60."));
        case "not-json" -> send(ex, 200, "<html>gateway</html>");
        case "no-choices" -> send(ex, 200, "{\"object\":\"chat.completion\",\"choices\":[]}");
        default -> send(ex, 200, reply(answer.startsWith("score ") ? answer.substring(6) : "0"));
      }
    }
  }

  static String reply(String content) throws IOException {
    var root = JSON.createObjectNode();
    root.put("id", "chatcmpl-1").put("object", "chat.completion").put("model", "judge-model");
    var choice = root.putArray("choices").addObject();
    choice.put("index", 0).put("finish_reason", "stop");
    choice.putObject("message").put("role", "assistant").put("content", content);
    return JSON.writeValueAsString(root);
  }

  static void send(HttpExchange ex, int status, String body) throws IOException {
    byte[] b = body.getBytes(StandardCharsets.UTF_8);
    ex.getResponseHeaders().set("Content-Type", "application/json");
    ex.sendResponseHeaders(status, b.length);
    try (OutputStream os = ex.getResponseBody()) {
      os.write(b);
    }
  }

  static void sleep(long ms) {
    try {
      Thread.sleep(ms);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  EvaluationSpec spec(String url, int timeoutSeconds) {
    EvaluationSpec spec = new EvaluationSpec();
    spec.maxNewTokens = 16;
    spec.judge = new EvaluationSpec.JudgeSpec();
    spec.judge.url = url;
    spec.judge.model = "judge-model";
    spec.judge.timeoutSeconds = timeoutSeconds;
    return spec;
  }

  @Test
  void exactMatchesAreCountedWithOrWithoutAJudge() throws Exception {
    List<Record> test = List.of(new Record("Add.", "1 + 2", "3"), new Record("Add.", "2 + 2", "4"),
        new Record("Say hi.", "", " hi "));
    List<String> answers = List.of("3\n", "5", "hi");
    EvaluationStatus s = Evaluation.run(new EvaluationSpec(), new PromptFormat.Instructions(PromptStyle.PHI3, new ByteTokenizer()), (p, i) -> answers.get(i), test, dir, null);
    assertThat(s.exactMatches).isEqualTo(2);
    assertThat(s.exactMatchRate).isEqualTo(2.0 / 3);
  }

  @Test
  void scoresAreParsedAndFailuresCountedNotFatal() throws Exception {
    List<Record> test = new ArrayList<>();
    List<String> answers = List.of("score 85", "server-error", "score 100", "slow", "garbage", "not-json",
        "score 40/100", "no-choices", "two-numbers", "score **7**", "score 101");
    for (int i = 0; i < answers.size(); i++) {
      test.add(new Record("Reverse the word " + i + ".", i % 2 == 0 ? "" : "word" + i, "drow" + i));
    }
    EvaluationSpec spec = spec(url() + "/", 1);
    List<String> prompts = new ArrayList<>();
    Evaluation.Answerer scripted = (prompt, index) -> {
      prompts.add(prompt);
      return "  " + answers.get(index) + "\n";
    };
    EvaluationStatus s = Evaluation.run(spec, new PromptFormat.Instructions(PromptStyle.ALPACA, new ByteTokenizer()), scripted, test, dir,
        Evaluation.judge(spec, "sk-test-123"));

    assertThat(s.responses).isEqualTo(11);
    assertThat(s.responsesPath).isEqualTo(TrainerContract.RESPONSES_FILE);
    assertThat(s.scored).isEqualTo(4);
    assertThat(s.scoreFailures).isEqualTo(7);
    assertThat(s.meanScore).isEqualTo((85 + 100 + 40 + 7) / 4.0);

    List<JsonNode> lines = new ArrayList<>();
    for (String l : Files.readAllLines(dir.resolve(TrainerContract.RESPONSES_FILE))) {
      lines.add(JSON.readTree(l));
    }
    assertThat(lines).hasSize(11);
    for (int i = 0; i < lines.size(); i++) {
      JsonNode l = lines.get(i);
      assertThat(l.path("instruction").asText()).isEqualTo(test.get(i).instruction());
      assertThat(l.path("input").asText()).isEqualTo(test.get(i).input());
      assertThat(l.path("output").asText()).isEqualTo(test.get(i).output());
      assertThat(l.path("model_response").asText()).as("answers are stripped").isEqualTo(answers.get(i));
      assertThat(l.has("score") ^ l.has("score_error")).as("line %d has a score or an error", i).isTrue();
      assertThat(prompts.get(i)).isEqualTo(Prompts.prompt(PromptStyle.ALPACA, test.get(i)));
    }
    assertThat(lines.get(0).path("score").asInt()).isEqualTo(85);
    assertThat(lines.get(1).path("score_error").asText()).startsWith("HTTP 500").contains("model crashed");
    assertThat(lines.get(3).path("score_error").asText()).startsWith("timed out after 1 s");
    assertThat(lines.get(4).path("score_error").asText()).contains("not a score").contains("rather not say");
    assertThat(lines.get(5).path("score_error").asText()).contains("not JSON");
    assertThat(lines.get(7).path("score_error").asText()).contains("choices[0].message.content");
    assertThat(lines.get(8).path("score_error").asText()).contains("not a score");
    assertThat(lines.get(10).path("score_error").asText()).as("101 is out of range").contains("not a score");

    // The requests: OpenAI shape, the fixed rubric with input, expected output and answer, bearer token.
    assertThat(requests).hasSize(11);
    JsonNode first = requests.get(0);
    assertThat(first.path("temperature").asDouble()).isZero();
    assertThat(first.path("messages").path(0).path("role").asText()).isEqualTo("user");
    assertThat(first.path("messages").path(0).path("content").asText())
        .isEqualTo(JudgeClient.rubric(test.get(0), "score 85"))
        .contains("### Instruction:\nReverse the word 0.").contains("correct output `drow0`")
        .endsWith("Respond with the integer number only.");
    assertThat(authorizations).containsOnly("Bearer sk-test-123");
  }

  @Test
  void noApiKeyNoAuthorizationHeader() {
    JudgeClient judge = Evaluation.judge(spec(url(), 5), null);
    JudgeClient.Score s = judge.score(new Record("Add.", "1 + 2", "3"), "score 77");
    assertThat(s.value()).isEqualTo(77);
    assertThat(authorizations).containsExactly((String) null);
  }

  @Test
  void anUnreachableJudgeIsGivenUpAfterThreeTriesAndTheRestCounted() throws Exception {
    int closedPort;
    try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
      closedPort = s.getLocalPort();
    }
    EvaluationSpec spec = spec("http://127.0.0.1:" + closedPort + "/v1", 2);
    List<Record> test = new ArrayList<>();
    for (int i = 0; i < 8; i++) {
      test.add(new Record("Say " + i, "", Integer.toString(i)));
    }
    long start = System.nanoTime();
    EvaluationStatus s = Evaluation.run(spec, new PromptFormat.Instructions(PromptStyle.PHI3, new ByteTokenizer()), (p, i) -> "answer " + i, test, dir,
        Evaluation.judge(spec, null));
    assertThat((System.nanoTime() - start) / 1e9).isLessThan(10.0);
    assertThat(s.responses).isEqualTo(8);
    assertThat(s.scored).isZero();
    assertThat(s.scoreFailures).isEqualTo(8);
    assertThat(s.meanScore).isNull();
    List<String> lines = Files.readAllLines(dir.resolve(TrainerContract.RESPONSES_FILE));
    assertThat(JSON.readTree(lines.get(0)).path("score_error").asText()).startsWith("cannot connect");
    assertThat(JSON.readTree(lines.get(7)).path("score_error").asText()).startsWith("not sent: the judge was unreachable");

    // A judge that times out on every answer is given up after three as well.
    EvaluationSpec slow = spec(url(), 1);
    calls.set(0);
    EvaluationStatus t = Evaluation.run(slow, new PromptFormat.Instructions(PromptStyle.PHI3, new ByteTokenizer()), (p, i) -> "slow", test, dir, Evaluation.judge(slow, null));
    assertThat(t.scoreFailures).isEqualTo(8);
    assertThat(calls.get()).isEqualTo(Evaluation.GIVE_UP_AFTER);
  }

  @Test
  void withoutAJudgeOnlyAnswers() throws Exception {
    EvaluationSpec spec = new EvaluationSpec();
    EvaluationStatus s = Evaluation.run(spec, new PromptFormat.Instructions(PromptStyle.ALPACA, new ByteTokenizer()), (p, i) -> "x", List.of(new Record("a", "", "b")), dir,
        Evaluation.judge(spec, "key"));
    assertThat(s.responses).isEqualTo(1);
    assertThat(s.scored).isNull();
    assertThat(s.scoreFailures).isNull();
    assertThat(JSON.readTree(Files.readString(dir.resolve(TrainerContract.RESPONSES_FILE))).has("score")).isFalse();
  }

  @Test
  void scoreParsing() {
    assertThat(JudgeClient.parseScore("85")).isEqualTo(85);
    assertThat(JudgeClient.parseScore(" 0\n")).isZero();
    assertThat(JudgeClient.parseScore("100.")).isEqualTo(100);
    assertThat(JudgeClient.parseScore("72/100")).isEqualTo(72);
    assertThat(JudgeClient.parseScore("**64**")).isEqualTo(64);
    assertThat(JudgeClient.parseScore("Score: 55")).isEqualTo(55);
    assertThat(JudgeClient.parseScore("I'd give it 30 out of 100.")).isEqualTo(30);
    assertThat(JudgeClient.parseScore("101")).isNull();
    assertThat(JudgeClient.parseScore("7.5")).isNull();
    assertThat(JudgeClient.parseScore("between 40 and 60")).isNull();
    assertThat(JudgeClient.parseScore("no idea")).isNull();
    assertThat(JudgeClient.parseScore("")).isNull();
    assertThat(JudgeClient.parseScore(null)).isNull();
  }
}
