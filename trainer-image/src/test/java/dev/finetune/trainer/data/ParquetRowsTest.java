package dev.finetune.trainer.data;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Parquet files as the trainer reads them. The fixtures in src/test/resources/parquet come from other writers
 * (DuckDB, hyparquet-writer, parquetjs-lite: make-fixtures.mjs there, which holds the same rows).
 */
class ParquetRowsTest {
  private static final ObjectMapper JSON = new ObjectMapper();

  private static final String ALPACA = """
      [
        {"instruction": "Translate to French.", "input": "Good morning", "output": "Bonjour"},
        {"instruction": "Name a colour.", "input": "", "output": "Blue"},
        {"instruction": "Résume « Ça va ? » en un mot.", "input": "Ünïcödé façade — naïve café", "output": "Bien 🙂"},
        {"instruction": "日本語に翻訳してください。", "input": "Thank you", "output": "ありがとうございます"},
        {"instruction": "Write two lines.", "input": "مرحبا", "output": "line one\\nline two\\twith a tab, and 'quotes'"}
      ]""";

  private static Path fixture(String name) throws Exception {
    return Path.of(ParquetRowsTest.class.getResource("/parquet/" + name).toURI());
  }

  private static List<ObjectNode> rows(String json) throws IOException {
    List<ObjectNode> rows = new ArrayList<>();
    JSON.readTree(json).forEach(row -> rows.add((ObjectNode) row));
    return rows;
  }

  /** The rows as JSON text, one a line: exact about number formats (19.90, 1.0E300) as well as values. */
  private static String lines(List<ObjectNode> rows) {
    StringBuilder text = new StringBuilder();
    rows.forEach(row -> text.append(row).append('\n'));
    return text.toString();
  }

  @Test
  void readsWithoutHadoopOnTheClassPath() {
    // What these tests prove holds for the image, whose lib/ has no Hadoop either.
    assertThatThrownBy(() -> Class.forName("org.apache.hadoop.conf.Configuration"))
        .isInstanceOf(ClassNotFoundException.class);
  }

  @Test
  void readsAlpacaStringsAndColumnNames() throws Exception {
    Path file = fixture("alpaca.parquet"); // SNAPPY, as the hub's parquet conversion writes
    assertThat(ParquetRows.columns(file)).containsExactly("instruction", "input", "output");
    assertThat(ParquetRows.read(file)).containsExactlyElementsOf(rows(ALPACA));
  }

  @ParameterizedTest
  @ValueSource(strings = {"alpaca-zstd.parquet", "alpaca-gzip.parquet", "alpaca-lz4raw.parquet"})
  void readsTheOtherCodecs(String name) throws Exception {
    assertThat(ParquetRows.read(fixture(name))).containsExactlyElementsOf(rows(ALPACA));
  }

  @Test
  void readsMessagesAsArraysOfObjects() throws Exception {
    Path file = fixture("messages.parquet"); // list<struct<role, content>>, ZSTD
    assertThat(ParquetRows.columns(file)).containsExactly("messages");
    assertThat(ParquetRows.read(file)).containsExactlyElementsOf(rows("""
        [
          {"messages": [{"role": "system", "content": "You are terse."},
                        {"role": "user", "content": "What is 2+2?"},
                        {"role": "assistant", "content": "4"}]},
          {"messages": [{"role": "user", "content": "Hi"},
                        {"role": "assistant", "content": "Hello! How can I help?"},
                        {"role": "user", "content": "Say « thank you » in Japanese."},
                        {"role": "assistant", "content": "ありがとう 🙏"}]},
          {"messages": [{"role": "user", "content": "Ping"}, {"role": "assistant", "content": "Pong"}]}
        ]"""));
  }

  @Test
  void readsDictionaryEncodedStrings() throws Exception {
    List<ObjectNode> rows = ParquetRows.read(fixture("dictionary.parquet")); // split and role: dictionary pages
    assertThat(rows).hasSize(40);
    for (int i = 0; i < rows.size(); i++) {
      assertThat(rows.get(i)).isEqualTo(JSON.readTree("{\"split\": \"" + (i % 4 == 0 ? "test" : "train") + "\", "
          + "\"messages\": [{\"role\": \"user\", \"content\": \"question " + i + "\"}, "
          + "{\"role\": \"assistant\", \"content\": \"answer " + i % 3 + "\"}]}"));
    }
  }

  @Test
  void readsShareGptConversations() throws Exception {
    // data page v2, dictionary-encoded conversations, a row group per row
    List<ObjectNode> rows = ParquetRows.read(fixture("sharegpt.parquet"));
    assertThat(lines(rows)).isEqualTo("""
        {"id":"c1","conversations":[{"from":"human","value":"Hello"},{"from":"gpt","value":"Hi! 👋"}],\
        "meta":{"source":"sharegpt","turns":2}}
        {"id":"c2","conversations":[{"from":"system","value":"Be brief."},{"from":"human","value":"2+2?"},\
        {"from":"gpt","value":"4"}],"meta":{"source":null,"turns":3}}
        """);
    assertThat(rows.get(1).at("/meta/source").isNull()).isTrue();
    assertThat(rows.get(1).at("/meta/turns").isInt()).isTrue();
  }

  @Test
  void readsScalarTypes() throws Exception {
    Path file = fixture("mixed.parquet"); // uncompressed
    List<ObjectNode> rows = ParquetRows.read(file);
    assertThat(lines(rows)).isEqualTo("""
        {"id":1,"n":7,"score":0.5,"ratio":0.25,"ok":true,"note":"first","blob":"AP8Q","day":"2024-02-29",\
        "ts":"2024-02-29T12:34:56.789","tstz":"2024-02-29T12:34:56.789Z","price":19.90,\
        "uuid":"0f8fad5b-d9cb-469f-a165-70867728950e"}
        {"id":9007199254740993,"n":-2,"score":-1.25,"ratio":-0.5,"ok":false,"note":null,"blob":null,\
        "day":"1970-01-01","ts":"1970-01-01T00:00:00","tstz":null,"price":-0.05,"uuid":null}
        {"id":-42,"n":2147483647,"score":1.0E300,"ratio":1.5,"ok":true,"note":"","blob":"","day":null,"ts":null,\
        "tstz":null,"price":null,"uuid":null}
        """);
    ObjectNode first = rows.get(0);
    assertThat(first.get("id").isLong()).as("int64").isTrue();
    assertThat(first.get("n").isInt()).as("int32").isTrue();
    assertThat(first.get("score").isDouble()).as("double").isTrue();
    assertThat(first.get("ratio").isFloat()).as("float").isTrue();
    assertThat(first.get("ok").isBoolean()).isTrue();
    assertThat(first.get("price").isBigDecimal()).as("decimal").isTrue();
    assertThat(rows.get(1).get("id").longValue()).isEqualTo(9007199254740993L);
    assertThat(rows.get(1).get("note").isNull()).as("a null is NullNode").isTrue();
    assertThat(ParquetRows.columns(file))
        .containsExactly("id", "n", "score", "ratio", "ok", "note", "blob", "day", "ts", "tstz", "price", "uuid");
  }

  @Test
  void readsNestedListsStructsAndMaps() throws Exception {
    assertThat(lines(ParquetRows.read(fixture("nested.parquet")))).isEqualTo("""
        {"tags":["a",null,"c"],"point":{"x":1.5,"y":-2.0},"attrs":{"a":1,"b":2},"matrix":[[1,2],[3]]}
        {"tags":[],"point":null,"attrs":{},"matrix":[[],[4]]}
        {"tags":null,"point":{"x":0.0,"y":null},"attrs":null,"matrix":null}
        """);
  }

  @Test
  void readsLegacyListEncodings() throws Exception {
    // 2-level LIST groups (a repeated primitive; a repeated group of two fields; a repeated group named "array", which
    // is the element) and repeated fields with no LIST group (scores, turns).
    assertThat(lines(ParquetRows.read(fixture("legacy.parquet")))).isEqualTo("""
        {"id":"r1","tags":["x","y"],"scores":[3,1],"turns":[{"from":"human","value":"hi"},{"from":"gpt","value":null}],\
        "pairs":[{"from":"human","value":"Q"}],"notes":[{"text":"n1"},{"text":"n2"}]}
        {"id":"r2","tags":[],"scores":[],"turns":[],"pairs":[],"notes":[]}
        {"id":"r3","tags":null,"scores":[5],"turns":[{"from":"human","value":"solo"}],"pairs":null,\
        "notes":[{"text":"n3"}]}
        """);
  }

  @Test
  void anUnsupportedCodecNamesFileColumnAndCodec() throws Exception {
    Path file = fixture("alpaca-brotli.parquet");
    assertThatThrownBy(() -> ParquetRows.read(file)).isInstanceOf(IOException.class)
        .hasMessageStartingWith(file + ": column instruction is compressed with BROTLI, which this reader does not "
            + "support (it reads [UNCOMPRESSED, SNAPPY, GZIP, ZSTD, LZ4_RAW])");
  }

  @Test
  void aFileThatIsNotParquetNamesTheFile(@TempDir Path dir) throws Exception {
    Path json = dir.resolve("train.parquet");
    Files.writeString(json, "{\"instruction\": \"i\", \"input\": \"\", \"output\": \"o\"}\n");
    assertThatThrownBy(() -> ParquetRows.read(json)).isInstanceOf(IOException.class).hasMessage(json
        + ": not a Parquet file (it does not begin and end with the Parquet magic bytes PAR1)");
    assertThatThrownBy(() -> ParquetRows.columns(json)).isInstanceOf(IOException.class)
        .hasMessageStartingWith(json + ": not a Parquet file");

    Path empty = Files.createFile(dir.resolve("empty.parquet"));
    assertThatThrownBy(() -> ParquetRows.read(empty)).isInstanceOf(IOException.class)
        .hasMessage(empty + ": not a Parquet file (empty)");
    Path tiny = Files.write(dir.resolve("tiny.parquet"), "PAR1PAR1".getBytes());
    assertThatThrownBy(() -> ParquetRows.read(tiny)).isInstanceOf(IOException.class)
        .hasMessage(tiny + ": not a Parquet file (only 8 bytes)");
    Path missing = dir.resolve("missing.parquet");
    assertThatThrownBy(() -> ParquetRows.read(missing)).isInstanceOf(NoSuchFileException.class)
        .hasMessage(missing + ": does not exist");
    assertThatThrownBy(() -> ParquetRows.read(dir)).isInstanceOf(IOException.class)
        .hasMessage(dir + ": not a Parquet file (not a regular file)");
  }

  @Test
  void aCorruptFileNamesTheFile(@TempDir Path dir) throws Exception {
    byte[] good = Files.readAllBytes(fixture("alpaca.parquet"));

    byte[] badFooterLength = good.clone(); // the footer's length, before the closing magic, beyond the file
    ByteBuffer.wrap(badFooterLength).order(ByteOrder.LITTLE_ENDIAN).putInt(good.length - 8, good.length * 2);
    Path footer = Files.write(dir.resolve("footer.parquet"), badFooterLength);
    assertThatThrownBy(() -> ParquetRows.read(footer)).isInstanceOf(IOException.class)
        .hasMessageStartingWith(footer + ": corrupt Parquet file (");
    assertThatThrownBy(() -> ParquetRows.columns(footer)).isInstanceOf(IOException.class)
        .hasMessageStartingWith(footer + ": corrupt Parquet file (");

    byte[] badPages = good.clone(); // the column chunks, between the leading magic and the footer, overwritten
    for (int i = 4; i < 200; i++) {
      badPages[i] = (byte) 0xA5;
    }
    Path pages = Files.write(dir.resolve("pages.parquet"), badPages);
    assertThatThrownBy(() -> ParquetRows.read(pages)).isInstanceOf(IOException.class)
        .hasMessageStartingWith(pages + ": corrupt Parquet file (");
    assertThat(ParquetRows.columns(pages)).as("the footer is intact").containsExactly("instruction", "input", "output");

    Path truncated = Files.write(dir.resolve("truncated.parquet"), Arrays.copyOf(good, good.length / 2));
    assertThatThrownBy(() -> ParquetRows.read(truncated)).isInstanceOf(IOException.class)
        .hasMessageStartingWith(truncated + ": not a Parquet file");
  }
}
