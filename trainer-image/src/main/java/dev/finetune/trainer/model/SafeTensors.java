package dev.finetune.trainer.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.finetune.trainer.nativelib.TorchNative;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Map;

/**
 * Writes float32 tensors as safetensors the way PyTorch's {@code save_file} does: names in the given order,
 * {@code "__metadata__": {"format": "pt"}} (some transformers versions refuse a file without it), the header
 * padded to 8 bytes, then each tensor's little-endian data, streamed (no 2 GB single-buffer limit).
 */
public final class SafeTensors {
  private SafeTensors() {}

  public static void write(Path file, Map<String, NDArray> tensors) throws IOException {
    ObjectMapper json = new ObjectMapper();
    ObjectNode header = json.createObjectNode();
    header.putObject("__metadata__").put("format", "pt");
    long offset = 0;
    for (Map.Entry<String, NDArray> e : tensors.entrySet()) {
      NDArray a = e.getValue();
      if (a.getDataType() != DataType.FLOAT32) {
        throw new IllegalArgumentException(e.getKey() + " is " + a.getDataType() + "; only float32 is written");
      }
      long bytes = a.getShape().size() * 4;
      ObjectNode t = header.putObject(e.getKey());
      t.put("dtype", "F32");
      var shape = t.putArray("shape");
      for (long d : a.getShape().getShape()) {
        shape.add(d);
      }
      t.putArray("data_offsets").add(offset).add(offset + bytes);
      offset += bytes;
    }
    byte[] h = json.writeValueAsString(header).getBytes(StandardCharsets.UTF_8);
    int padded = (h.length + 7) / 8 * 8;
    ByteBuffer head = ByteBuffer.allocate(8 + padded).order(ByteOrder.LITTLE_ENDIAN);
    head.putLong(padded).put(h);
    while (head.hasRemaining()) {
      head.put((byte) ' ');
    }
    head.flip();
    try (FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.TRUNCATE_EXISTING,
        StandardOpenOption.WRITE)) {
      writeFully(ch, head);
      for (NDArray a : tensors.values()) {
        ByteBuffer data = a.toByteBuffer().order(ByteOrder.nativeOrder());
        if (ByteOrder.nativeOrder() != ByteOrder.LITTLE_ENDIAN) {
          ByteBuffer le = ByteBuffer.allocate(data.remaining()).order(ByteOrder.LITTLE_ENDIAN);
          le.asFloatBuffer().put(data.asFloatBuffer());
          data = le;
        }
        writeFully(ch, data);
      }
      ch.force(true);
    }
  }

  /** {@link #read(Path, ai.djl.ndarray.NDManager, WeightStorage)} into float32. */
  public static java.util.LinkedHashMap<String, NDArray> read(Path file, ai.djl.ndarray.NDManager manager) throws IOException {
    return read(file, manager, WeightStorage.FP32);
  }

  /**
   * Reads every tensor of a safetensors file (F32, F16 or BF16) straight into the dtype {@code storage} gives it,
   * tensor by tensor: each is read from the file into one reused host buffer, the size of the largest, then copied
   * where it lives. So a model's load needs host memory for its largest tensor, not a second copy of the model, and
   * files above 2 GB load too. Names are kept, in the file's order.
   */
  public static java.util.LinkedHashMap<String, NDArray> read(Path file, ai.djl.ndarray.NDManager manager,
      WeightStorage storage) throws IOException {
    java.util.LinkedHashMap<String, NDArray> out = new java.util.LinkedHashMap<>();
    try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
      ByteBuffer len = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
      while (len.hasRemaining() && ch.read(len) >= 0) {
        // read the header length
      }
      len.flip();
      long n = len.getLong();
      if (n <= 0 || n > 100_000_000 || n + 8 > ch.size()) {
        throw new IOException(file + " is not a safetensors file (header length " + n + ")");
      }
      ByteBuffer h = ByteBuffer.allocate((int) n);
      while (h.hasRemaining() && ch.read(h, 8 + h.position()) >= 0) {
        // read the header
      }
      var header = new ObjectMapper().readTree(new String(h.array(), StandardCharsets.UTF_8));
      long base = 8 + n;
      ByteBuffer buffer = null;
      // 16 MB, or the whole file when smaller (an adapter, an optimizer state)
      ByteBuffer chunk = ByteBuffer.allocateDirect((int) Math.min(1 << 24, Math.max(8, ch.size())))
          .order(ByteOrder.LITTLE_ENDIAN);
      var names = header.fieldNames();
      while (names.hasNext()) {
        String name = names.next();
        if (name.equals("__metadata__")) {
          continue;
        }
        var t = header.get(name);
        String dtype = t.get("dtype").asText();
        long[] shape = new long[t.get("shape").size()];
        for (int i = 0; i < shape.length; i++) {
          shape[i] = t.get("shape").get(i).asLong();
        }
        long start = t.get("data_offsets").get(0).asLong();
        long end = t.get("data_offsets").get(1).asLong();
        DataType type = switch (dtype) {
          case "F32" -> DataType.FLOAT32;
          case "F16" -> DataType.FLOAT16;
          case "BF16" -> DataType.BFLOAT16;
          default -> throw new IOException(file + ": tensor " + name + " has dtype " + dtype + "; F32, F16 or BF16 expected");
        };
        ai.djl.ndarray.types.Shape s = new ai.djl.ndarray.types.Shape(shape);
        if (end - start != s.size() * type.getNumOfBytes() || base + end > ch.size()) {
          throw new IOException(file + ": tensor " + name + " has inconsistent offsets");
        }
        // bf16 is widened to float32 here, on the host: DJL's stock JNI cannot make a bf16 array (notes/djl.md)
        long bytes = type == DataType.BFLOAT16 ? 2 * (end - start) : end - start;
        if (buffer == null || buffer.capacity() < bytes) {
          buffer = ByteBuffer.allocateDirect((int) bytes).order(ByteOrder.nativeOrder());
        }
        ByteBuffer direct = buffer.clear().limit((int) bytes);
        // read in chunks, not mapped: the file's pages stay page cache and never count as the trainer's memory
        for (long pos = base + start, left = end - start; left > 0; ) {
          chunk.clear().limit((int) Math.min(left, chunk.capacity()));
          while (chunk.hasRemaining()) {
            if (ch.read(chunk, pos + chunk.position()) < 0) {
              throw new IOException(file + " ends inside tensor " + name);
            }
          }
          chunk.flip();
          if (type == DataType.BFLOAT16) {
            java.nio.ShortBuffer b = chunk.asShortBuffer();
            while (b.hasRemaining()) {
              direct.putFloat(Float.intBitsToFloat((b.get() & 0xffff) << 16)); // bf16 is the top half of a float32
            }
          } else if (ByteOrder.nativeOrder() == ByteOrder.LITTLE_ENDIAN || type != DataType.FLOAT32) {
            direct.put(chunk);
          } else {
            java.nio.FloatBuffer f = chunk.asFloatBuffer();
            while (f.hasRemaining()) {
              direct.putFloat(f.get());
            }
          }
          pos += chunk.limit();
          left -= chunk.limit();
        }
        direct.position(0);
        // Copy into memory torch owns before the buffer is reused: the engine may wrap it without copying.
        NDArray wrapped = manager.create(direct, s, type == DataType.BFLOAT16 ? DataType.FLOAT32 : type);
        NDArray a = wrapped.getDataType() == DataType.FLOAT32 ? wrapped.duplicate() : wrapped.toType(DataType.FLOAT32, true);
        wrapped.close();
        if (storage.of(s) == DataType.BFLOAT16) { // a frozen base in bf16 is cast by the native library
          NDArray fp32 = a;
          a = TorchNative.get().orElseThrow(() -> new IllegalStateException("a bf16 base needs the native library"))
              .toBf16(fp32);
          fp32.close();
        }
        a.setName(name);
        out.put(name, a);
      }
    }
    return out;
  }

  private static void writeFully(FileChannel ch, ByteBuffer b) throws IOException {
    while (b.hasRemaining()) {
      ch.write(b);
    }
  }
}
