package dev.finetune.trainer.model;

import static org.assertj.core.api.Assertions.assertThat;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Reading safetensors as the hub ships them: bf16 checkpoints (most Llama-family models) load into float32 exactly. */
class SafeTensorsTest {

  @Test
  void aBf16CheckpointLoadsIntoFloat32ExactlyOnDjlsOwnJni(@TempDir Path dir) throws Exception {
    // bf16 is the top half of a float32: these values are exact in both
    float[] values = {1.0f, -2.5f, 0.15625f, 0x1p34f, -0.0f, 7.0f};
    String header = "{\"w\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,12]},"
        + "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}";
    byte[] h = header.getBytes(StandardCharsets.UTF_8);
    ByteBuffer file = ByteBuffer.allocate(8 + h.length + 20).order(ByteOrder.LITTLE_ENDIAN);
    file.putLong(h.length).put(h);
    for (float v : values) {
      file.putShort((short) (Float.floatToIntBits(v) >>> 16));
    }
    file.putFloat(0.5f).putFloat(-1.0f);
    Path f = dir.resolve("model.safetensors");
    Files.write(f, file.array());
    try (NDManager m = NDManager.newBaseManager()) {
      Map<String, NDArray> read = SafeTensors.read(f, m);
      assertThat(read.keySet()).containsExactly("w", "b");
      assertThat(read.get("w").getDataType()).isEqualTo(DataType.FLOAT32);
      assertThat(read.get("w").getShape().getShape()).containsExactly(2, 3);
      assertThat(read.get("w").toFloatArray()).containsExactly(values);
      assertThat(read.get("b").toFloatArray()).containsExactly(0.5f, -1.0f);
    }
  }
}
