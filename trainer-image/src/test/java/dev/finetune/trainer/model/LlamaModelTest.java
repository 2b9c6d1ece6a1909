package dev.finetune.trainer.model;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.finetune.trainer.BadJobException;
import dev.finetune.trainer.Fixtures;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** HF model directories of the Llama family through {@link Model}: model_type, shards, special tokens, saving. */
class LlamaModelTest {
  static NDManager base;
  static final ObjectMapper JSON = new ObjectMapper();

  @BeforeAll
  static void setUp() {
    base = NDManager.newBaseManager();
  }

  @AfterAll
  static void tearDown() {
    base.close();
  }

  static Path tinyLlama() {
    return Fixtures.tinyLlama();
  }

  static long[][] inputs() throws Exception {
    return Fixtures.longs2(Fixtures.json(tinyLlama().resolve("golden.json")).get("inputs"));
  }

  /** A copy of tiny-llama's directory with config.json edited. */
  static Path copyWithConfig(Path dir, java.util.function.Consumer<ObjectNode> edit) throws Exception {
    Files.createDirectories(dir);
    for (String f : new String[] {"model.safetensors", "tokenizer.json"}) {
      Files.copy(tinyLlama().resolve(f), dir.resolve(f));
    }
    ObjectNode c = (ObjectNode) JSON.readTree(tinyLlama().resolve("config.json").toFile());
    edit.accept(c);
    Files.writeString(dir.resolve("config.json"), c.toString());
    return dir;
  }

  @Test
  void modelTypePicksTheNetworkAndAnUnknownOneIsABadJobNamingTheSupportedOnes(@TempDir Path tmp) throws Exception {
    try (Model m = Model.load(tinyLlama(), base)) {
      assertThat(m.net()).isInstanceOf(Llama.class);
      assertThat(m.net().contextLength()).isEqualTo(128);
      assertThat(m.tokenizer().endOfText()).isEqualTo(50256);
    }
    try (Model m = Model.load(Fixtures.fixture("tiny-qwen2"), base)) {
      assertThat(((Llama) m.net()).config().tiedEmbeddings()).isTrue();
      assertThat(m.net().parameters()).doesNotContainKey("lm_head.weight");
    }
    Path phi = copyWithConfig(tmp.resolve("phi"), c -> c.put("model_type", "phi3"));
    assertThatThrownBy(() -> Model.load(phi, base)).isInstanceOf(BadJobException.class)
        .hasMessageContaining("model_type is 'phi3'").hasMessageContaining("gpt2").hasMessageContaining("llama")
        .hasMessageContaining("qwen2").hasMessageContaining("mistral");
    Path yarn = copyWithConfig(tmp.resolve("yarn"), c -> c.putObject("rope_parameters").put("rope_type", "yarn"));
    assertThatThrownBy(() -> Model.load(yarn, base)).isInstanceOf(BadJobException.class)
        .hasMessageContaining("rope type 'yarn'");
    Path wrong = copyWithConfig(tmp.resolve("wrong"), c -> c.put("intermediate_size", 64));
    assertThatThrownBy(() -> Model.load(wrong, base)).isInstanceOf(BadJobException.class)
        .hasMessageContaining("model.layers.0.mlp.gate_proj.weight has shape (88, 32), config.json implies (64, 32)");
  }

  @Test
  void shardedWeightsLoadAsOneFile(@TempDir Path tmp) throws Exception {
    Path dir = tmp.resolve("sharded");
    Files.createDirectories(dir);
    for (String f : new String[] {"config.json", "tokenizer.json"}) {
      Files.copy(tinyLlama().resolve(f), dir.resolve(f));
    }
    try (NDManager m = base.newSubManager()) {
      Map<String, NDArray> all = SafeTensors.read(tinyLlama().resolve("model.safetensors"), m);
      Map<String, NDArray> first = new LinkedHashMap<>();
      Map<String, NDArray> second = new LinkedHashMap<>();
      ObjectNode index = JSON.createObjectNode();
      index.putObject("metadata").put("total_size", 0);
      ObjectNode map = index.putObject("weight_map");
      all.forEach((k, v) -> {
        boolean one = k.startsWith("model.layers.0.") || k.startsWith("model.embed");
        (one ? first : second).put(k, v);
        map.put(k, one ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors");
      });
      SafeTensors.write(dir.resolve("model-00001-of-00002.safetensors"), first);
      SafeTensors.write(dir.resolve("model-00002-of-00002.safetensors"), second);
      Files.writeString(dir.resolve(HfWeights.INDEX), index.toString());
    }
    try (Model whole = Model.load(tinyLlama(), base); Model sharded = Model.load(dir, base)) {
      assertThat(LlamaParityTest.maxAbsDiff(LlamaParityTest.logits(sharded.net(), inputs()),
          LlamaParityTest.logits(whole.net(), inputs()))).isZero();
    }
    Files.delete(dir.resolve("model-00002-of-00002.safetensors"));
    assertThatThrownBy(() -> Model.load(dir, base)).isInstanceOf(BadJobException.class)
        .hasMessageContaining("model-00002-of-00002.safetensors");
  }

  @Test
  void endOfTextComesFromTokenizerConfigThenConfig(@TempDir Path tmp) throws Exception {
    Path dir = copyWithConfig(tmp.resolve("eos"), c -> c.put("eos_token_id", 50256));
    Files.writeString(dir.resolve("tokenizer_config.json"), "{\"eos_token\": \"!\"}");
    try (Model m = Model.load(dir, base)) {
      assertThat(m.tokenizer().endOfText()).as("tokenizer_config.json's eos_token, by its id in tokenizer.json").isEqualTo(0);
    }
    Files.writeString(dir.resolve("tokenizer_config.json"), "{\"eos_token\": {\"content\": \"<|endoftext|>\"}}");
    try (Model m = Model.load(dir, base)) {
      assertThat(m.tokenizer().endOfText()).isEqualTo(50256);
    }
    Files.writeString(dir.resolve("tokenizer_config.json"), "{\"eos_token\": \"<|im_end|>\"}");
    assertThatThrownBy(() -> Model.load(dir, base)).isInstanceOf(BadJobException.class)
        .hasMessageContaining("eos_token '<|im_end|>' is not a token of tokenizer.json");
    Files.delete(dir.resolve("tokenizer_config.json"));
    Path listed = copyWithConfig(tmp.resolve("listed"), c -> c.putArray("eos_token_id").add(7).add(50256));
    try (Model m = Model.load(listed, base)) {
      assertThat(m.tokenizer().endOfText()).as("the first of config.json's eos_token_id list").isEqualTo(7);
    }
  }

  @Test
  void savedDirectoryHasHfNamesConfigAndSidecarsAndLoadsBack(@TempDir Path tmp) throws Exception {
    Path src = copyWithConfig(tmp.resolve("src"), c -> { });
    Files.copy(tinyLlama().resolve("generation_config.json"), src.resolve("generation_config.json"));
    Path out = tmp.resolve("out");
    try (Model m = Model.load(src, base)) {
      m.save(out);
      JsonNode written = JSON.readTree(out.resolve("config.json").toFile());
      assertThat(written).isEqualTo(JSON.readTree(src.resolve("config.json").toFile()));
      assertThat(Files.mismatch(out.resolve("generation_config.json"), src.resolve("generation_config.json"))).isEqualTo(-1);
      assertThat(Files.mismatch(out.resolve("tokenizer.json"), src.resolve("tokenizer.json"))).isEqualTo(-1);
      try (Model again = Model.load(out, base)) {
        assertThat(LlamaParityTest.maxAbsDiff(LlamaParityTest.logits(again.net(), inputs()),
            LlamaParityTest.logits(m.net(), inputs()))).isZero();
      }
    }
  }
}
