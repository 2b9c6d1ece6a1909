package dev.finetune.trainer.model;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.finetune.trainer.BadJobException;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** What config.json implies about a checkpoint's tensors, for GPT-2 and the Llama family alike. */
class ModelShapeTest {

  @Test
  void aCheckpointMustHoldEveryWeightInItsShapeAndNothingElseUnlessIgnored() {
    GptConfig shape = new GptConfig(16, 8, 8, 1, 2, 32, 1e-5, 15);
    try (NDManager m = NDManager.newBaseManager()) {
      Map<String, NDArray> read = new LinkedHashMap<>();
      shape.weights().forEach((name, s) -> read.put(name, m.zeros(s)));
      read.put("h.0.attn.bias", m.zeros(new Shape(1)));
      assertThat(shape.match(read, k -> k.endsWith(".attn.bias"), "here").keySet())
          .containsExactlyElementsOf(shape.weights().keySet());

      read.remove("ln_f.bias");
      read.put("wpe.weight", m.zeros(new Shape(9, 8)));
      read.put("score.weight", m.zeros(new Shape(2, 8)));
      assertThatThrownBy(() -> shape.match(read, k -> k.endsWith(".attn.bias"), Path.of("model.safetensors")))
          .isInstanceOf(BadJobException.class)
          .hasMessage("model.safetensors: the weights do not match config.json: wpe.weight has shape (9, 8), config.json"
              + " implies (8, 8); missing ln_f.bias; unexpected tensors [score.weight]");
    }
  }
}
