package dev.finetune.trainer.model;

import static org.assertj.core.api.Assertions.assertThat;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.finetune.api.ScratchModelSpec;
import dev.finetune.trainer.BadJobException;
import dev.finetune.trainer.Fixtures;
import java.io.DataInputStream;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** best/ and checkpoints are HF-layout model directories that load again (here and in HF tools). */
class ModelIoTest {

  static JsonNode safetensorsHeader(Path file) throws Exception {
    try (InputStream in = Files.newInputStream(file)) {
      byte[] len = in.readNBytes(8);
      long n = ByteBuffer.wrap(len).order(ByteOrder.LITTLE_ENDIAN).getLong();
      return new ObjectMapper().readTree(new String(in.readNBytes((int) n), StandardCharsets.UTF_8));
    }
  }

  static float[] logits(Model m, NDManager base, long[] ids) {
    try (NDManager step = base.newSubManager()) {
      NDArray x = step.create(ids, new ai.djl.ndarray.types.Shape(1, ids.length));
      return m.net().forward(x, new Gpt2.Consts(step), false).toFloatArray();
    }
  }

  @Test
  void gpt2SavesInHuggingFaceLayoutAndReloads(@TempDir Path dir) throws Exception {
    try (NDManager base = NDManager.newBaseManager(); Model m = Model.load(Fixtures.tinyGpt2(), base)) {
      m.save(dir);
      JsonNode header = safetensorsHeader(dir.resolve("model.safetensors"));
      JsonNode original = safetensorsHeader(Fixtures.tinyGpt2().resolve("model.safetensors"));
      assertThat(header.get("__metadata__").get("format").asText()).isEqualTo("pt");
      assertThat(header.get("transformer.h.0.attn.c_attn.weight").get("shape").toString()).isEqualTo("[32,96]");
      assertThat(header.get("transformer.h.1.mlp.c_proj.weight").get("shape").toString()).isEqualTo("[128,32]");
      original.fieldNames().forEachRemaining(name -> {
        if (!name.equals("__metadata__")) {
          assertThat(header.has(name)).as(name).isTrue();
          assertThat(header.get(name).get("shape")).as(name).isEqualTo(original.get(name).get("shape"));
        }
      });
      JsonNode config = new ObjectMapper().readTree(dir.resolve("config.json").toFile());
      assertThat(config.get("n_layer").asInt()).isEqualTo(2);
      assertThat(config.get("n_embd").asInt()).isEqualTo(32);
      assertThat(config.get("model_type").asText()).isEqualTo("gpt2");
      assertThat(Files.mismatch(dir.resolve("tokenizer.json"), Fixtures.tinyGpt2().resolve("tokenizer.json"))).isEqualTo(-1);
      try (Model again = Model.load(dir, base)) {
        long[] ids = m.tokenizer().encode("Hello, world!");
        assertThat(logits(again, base, ids)).containsExactly(logits(m, base, ids));
      }
    }
  }

  @Test
  void scratchModelSavesItsByteTokenizerAndReloads(@TempDir Path dir) throws Exception {
    ScratchModelSpec s = new ScratchModelSpec();
    s.layers = 1;
    s.embeddingDim = 16;
    s.heads = 2;
    s.contextLength = 32;
    try (NDManager base = NDManager.newBaseManager(); Model m = Model.scratch(s, base)) {
      m.save(dir);
      try (Model again = Model.load(dir, base)) {
        assertThat(again.tokenizer()).isInstanceOf(ByteTokenizer.class);
        assertThat(((Gpt2) again.net()).config()).isEqualTo(((Gpt2) m.net()).config());
        long[] ids = again.tokenizer().encode("héllo");
        assertThat(ids).hasSize(6);
        assertThat(again.tokenizer().decode(ids)).isEqualTo("héllo");
        assertThat(logits(again, base, ids)).containsExactly(logits(m, base, ids));
        // greedy generation is deterministic and stays within the context window
        Generator generator = new Generator(again);
        String a = generator.generate("abc", 40);
        assertThat(generator.generate("abc", 40)).isEqualTo(a);
        assertThat(generator.generate("abc", 40, 1.0, 5, 9)).isEqualTo(generator.generate("abc", 40, 1.0, 5, 9));
      }
      try (Model same = Model.scratch(s, base)) {
        assertThat(logits(same, base, new long[] {1, 2, 3})).containsExactly(logits(m, base, new long[] {1, 2, 3}));
      }
    }
  }

  @Test
  void gpt2IsADjlBlockWithHuggingFaceParameterNames() throws Exception {
    try (NDManager base = NDManager.newBaseManager(); Model m = Model.load(Fixtures.tinyGpt2(), base);
        NDManager step = base.newSubManager()) {
      ai.djl.nn.Block block = (Gpt2) m.net();
      assertThat(block.getParameters().keys()).hasSize(2 + 2 * 12 + 2).contains("wte.weight", "h.1.attn.c_attn.weight");
      assertThat(block.isInitialized()).isTrue();
      long[] ids = m.tokenizer().encode("Hello, world!");
      NDArray x = step.create(ids, new ai.djl.ndarray.types.Shape(1, ids.length));
      float[] viaBlock = block.forward(new ai.djl.training.ParameterStore(step, false), new ai.djl.ndarray.NDList(x), false)
          .singletonOrThrow().toFloatArray();
      assertThat(viaBlock).containsExactly(logits(m, base, ids));
      assertThat(block.getOutputShapes(new ai.djl.ndarray.types.Shape[] {x.getShape()})[0])
          .isEqualTo(new ai.djl.ndarray.types.Shape(1, ids.length, 50257));
    }
  }

  @Test
  void missingFilesAreReportedClearly(@TempDir Path dir) throws Exception {
    Files.copy(Fixtures.tinyGpt2().resolve("config.json"), dir.resolve("config.json"));
    try (NDManager base = NDManager.newBaseManager()) {
      org.assertj.core.api.Assertions.assertThatThrownBy(() -> Model.load(dir, base))
          .isInstanceOf(BadJobException.class).hasMessageContaining("has no model.safetensors");
    }
  }
}
