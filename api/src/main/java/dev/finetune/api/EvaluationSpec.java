package dev.finetune.api;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonPropertyDescription;
import io.fabric8.generator.annotation.Max;
import io.fabric8.generator.annotation.Min;
import io.fabric8.generator.annotation.Pattern;
import io.fabric8.generator.annotation.Required;
import io.fabric8.generator.annotation.ValidationRule;

/** After training: the best model answers every test-split prompt; a judge model may score the answers. */
@JsonInclude(JsonInclude.Include.NON_NULL)
public class EvaluationSpec {

  @JsonPropertyDescription("Generate answers for the test split into responses.jsonl.")
  public Boolean enabled = true;

  @Min(1)
  @Max(8192)
  @JsonPropertyDescription("Most tokens generated per answer; generation also stops at end-of-text.")
  public Integer maxNewTokens = 256;

  @Min(0)
  @Max(10)
  @ValidationRule(value = Float32.RULE, messageExpression = Float32.SMALL + "0 (greedy) or 0.7" + Float32.LARGE + "0 (greedy) or 0.7" + Float32.END)
  @JsonPropertyDescription("Sampling temperature; 0 is greedy decoding (the reference's default).")
  public Double temperature = 0.0;

  @Min(0)
  @JsonPropertyDescription("Sample only among the k most likely tokens; 0: all tokens. Used with temperature above 0.")
  public Integer topK = 0;

  @JsonPropertyDescription("Seed of sampling.")
  public Long seed = 123L;

  @JsonPropertyDescription("Score each answer 0-100 against the expected output with a judge model behind an OpenAI-compatible chat API (an Ollama server, say).")
  public JudgeSpec judge;

  /** An OpenAI-compatible chat-completions endpoint and model. */
  @JsonInclude(JsonInclude.Include.NON_NULL)
  public static class JudgeSpec {
    @Required
    @Pattern("^https?://\\S+$")
    @JsonPropertyDescription("Base URL of the API, e.g. http://ollama.ai.svc:11434/v1 (POST {url}/chat/completions).")
    public String url;

    @Required
    @JsonPropertyDescription("Model name the endpoint serves, e.g. llama3.")
    public String model;

    @JsonPropertyDescription("Secret key that holds a bearer token for the endpoint (optional).")
    public SecretKeyRef apiKeySecret;

    @Min(1)
    @Max(3600)
    @JsonPropertyDescription("Timeout of one scoring request; a timed-out answer is counted as unscored, never fatal.")
    public Integer timeoutSeconds = 60;
  }

  /** A key in a Secret of the job's namespace. */
  @JsonInclude(JsonInclude.Include.NON_NULL)
  public static class SecretKeyRef {
    @Required
    @JsonPropertyDescription("Secret name.")
    public String name;

    @Required
    @JsonPropertyDescription("Key in the Secret.")
    public String key;
  }
}
