package dev.finetune.trainer.data;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.airlift.compress.Decompressor;
import io.airlift.compress.lz4.Lz4Decompressor;
import io.airlift.compress.snappy.SnappyDecompressor;
import io.airlift.compress.zstd.ZstdDecompressor;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.lang.reflect.Constructor;
import java.lang.reflect.InvocationTargetException;
import java.math.BigDecimal;
import java.math.BigInteger;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.SeekableByteChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.time.Instant;
import java.time.LocalDate;
import java.time.LocalDateTime;
import java.time.LocalTime;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.EnumSet;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.UUID;
import java.util.zip.GZIPInputStream;
import org.apache.parquet.ParquetReadOptions;
import org.apache.parquet.bytes.ByteBufferAllocator;
import org.apache.parquet.bytes.BytesInput;
import org.apache.parquet.bytes.HeapByteBufferAllocator;
import org.apache.parquet.column.page.PageReadStore;
import org.apache.parquet.compression.CompressionCodecFactory;
import org.apache.parquet.conf.ParquetConfiguration;
import org.apache.parquet.conf.PlainParquetConfiguration;
import org.apache.parquet.crypto.FileDecryptionProperties;
import org.apache.parquet.example.data.Group;
import org.apache.parquet.example.data.simple.convert.GroupRecordConverter;
import org.apache.parquet.filter2.compat.FilterCompat;
import org.apache.parquet.format.converter.ParquetMetadataConverter;
import org.apache.parquet.hadoop.ParquetFileReader;
import org.apache.parquet.hadoop.ParquetMetricsCallback;
import org.apache.parquet.hadoop.metadata.BlockMetaData;
import org.apache.parquet.hadoop.metadata.ColumnChunkMetaData;
import org.apache.parquet.hadoop.metadata.CompressionCodecName;
import org.apache.parquet.io.ColumnIOFactory;
import org.apache.parquet.io.LocalInputFile;
import org.apache.parquet.io.MessageColumnIO;
import org.apache.parquet.io.RecordReader;
import org.apache.parquet.io.api.Binary;
import org.apache.parquet.schema.GroupType;
import org.apache.parquet.schema.LogicalTypeAnnotation;
import org.apache.parquet.schema.MessageType;
import org.apache.parquet.schema.PrimitiveType;
import org.apache.parquet.schema.Type;

/**
 * Reads a Parquet file (the format of every Hugging Face hub dataset, under {@code refs/convert/parquet}) into one
 * Jackson object per row.
 *
 * <p>The library is Apache parquet-java (parquet-hadoop), the format's reference implementation, released several
 * times a year. Its public read-options builder needs Hadoop on the class path (hadoop-common and
 * hadoop-mapreduce-client-core, 6.5 MB; or the shaded hadoop-client-api, 19.6 MB) and its codecs bring about 9 MB of
 * native libraries (snappy-java, zstd-jni). This class needs none of them: it builds the read options itself (see
 * {@link #options}) and decompresses pages with aircompressor (pure Java, 0.26 MB), so Parquet costs the trainer about
 * 10.7 MB of jars. Hardwood, a small reader of its own, needs Java 21.
 *
 * <p>Values: strings (the STRING, ENUM and JSON types) as text, integers as numbers (unsigned 64-bit beyond
 * {@code long} as big integers), FLOAT and DOUBLE as numbers, booleans, DECIMAL as exact decimals, DATE, TIME and
 * TIMESTAMP as ISO-8601 text (an instant, ending in Z, when the timestamp is UTC-adjusted, as is INT96), UUID as text,
 * other binary as base64 text. A LIST (the standard 3-level encoding and the legacy 2-level ones) and a repeated field
 * without one are arrays, a MAP is an object keyed by the key's text, any other group (a struct) is an object. A null
 * is {@link com.fasterxml.jackson.databind.node.NullNode}: every row has every column.
 *
 * <p>Codecs: UNCOMPRESSED, SNAPPY, GZIP, ZSTD and LZ4_RAW (what pyarrow, DuckDB and Spark write); a file with another
 * one, or an encrypted file, is an {@link IOException} naming the file, as is a file that is not Parquet or is corrupt.
 */
public final class ParquetRows {
  private static final JsonNodeFactory NODES = JsonNodeFactory.withExactBigDecimals(true);
  private static final byte[] MAGIC = "PAR1".getBytes(StandardCharsets.US_ASCII);
  private static final byte[] ENCRYPTED_MAGIC = "PARE".getBytes(StandardCharsets.US_ASCII);
  /** Magic, footer length, magic: the shortest a Parquet file can be. */
  private static final int MIN_LENGTH = 12;
  private static final Set<CompressionCodecName> CODECS = EnumSet.of(CompressionCodecName.UNCOMPRESSED,
      CompressionCodecName.SNAPPY, CompressionCodecName.GZIP, CompressionCodecName.ZSTD, CompressionCodecName.LZ4_RAW);
  /** The read buffer limit of parquet's own options builder (parquet.read.allocation.size). */
  private static final int MAX_ALLOCATION = 8 << 20;

  private ParquetRows() {}

  /** The rows of {@code file}, in order, as objects keyed by column name. */
  public static List<ObjectNode> read(Path file) throws IOException {
    checkMagic(file);
    ParquetReadOptions options = options(); // outside the try: its failure is no fault of the file's
    try (ParquetFileReader reader = new ParquetFileReader(new LocalInputFile(file), options)) {
      checkCodecs(file, reader.getRowGroups());
      MessageType schema = reader.getFooter().getFileMetaData().getSchema();
      MessageColumnIO columns = new ColumnIOFactory().getColumnIO(schema);
      List<ObjectNode> rows = new ArrayList<>(Math.toIntExact(Math.min(reader.getRecordCount(), 1 << 20)));
      PageReadStore rowGroup;
      while ((rowGroup = reader.readNextRowGroup()) != null) {
        RecordReader<Group> records = columns.getRecordReader(rowGroup, new GroupRecordConverter(schema));
        for (long i = 0, n = rowGroup.getRowCount(); i < n; i++) {
          rows.add(object(records.read(), schema));
        }
      }
      return rows;
    } catch (NotReadable e) {
      throw e;
    } catch (IOException | RuntimeException e) {
      throw corrupt(file, e);
    }
  }

  /** The top-level column names of {@code file}, in order (from its footer alone). */
  public static List<String> columns(Path file) throws IOException {
    checkMagic(file);
    ParquetReadOptions options = options();
    try (ParquetFileReader reader = new ParquetFileReader(new LocalInputFile(file), options)) {
      return reader.getFooter().getFileMetaData().getSchema().getFields().stream().map(Type::getName).toList();
    } catch (IOException | RuntimeException e) {
      throw corrupt(file, e);
    }
  }

  /** An error this class diagnosed, passed on as it is. */
  private static final class NotReadable extends IOException {
    NotReadable(Path file, String problem) {
      super(file + ": " + problem);
    }
  }

  private static IOException corrupt(Path file, Exception e) {
    String detail = e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage();
    return new IOException(file + ": corrupt Parquet file (" + detail + ")", e);
  }

  /** Existence, size and the PAR1 magic at both ends, so that a JSON or CSV file gets a plain message. */
  private static void checkMagic(Path file) throws IOException {
    if (!Files.exists(file)) {
      throw new NoSuchFileException(file.toString(), null, "does not exist");
    }
    if (!Files.isRegularFile(file)) {
      throw new NotReadable(file, "not a Parquet file (not a regular file)");
    }
    byte[] head = new byte[4];
    byte[] tail = new byte[4];
    long length;
    try (SeekableByteChannel channel = Files.newByteChannel(file)) {
      length = channel.size();
      if (length < MIN_LENGTH) {
        throw new NotReadable(file, "not a Parquet file (" + (length == 0 ? "empty" : "only " + length + " bytes") + ")");
      }
      channel.read(ByteBuffer.wrap(head));
      channel.position(length - 4).read(ByteBuffer.wrap(tail));
    }
    if (Arrays.equals(tail, ENCRYPTED_MAGIC)) {
      throw new NotReadable(file, "encrypted Parquet files are not supported");
    }
    if (!Arrays.equals(head, MAGIC) || !Arrays.equals(tail, MAGIC)) {
      throw new NotReadable(file, "not a Parquet file (it does not begin and end with the Parquet magic bytes PAR1)");
    }
  }

  private static void checkCodecs(Path file, List<BlockMetaData> rowGroups) throws NotReadable {
    for (BlockMetaData rowGroup : rowGroups) {
      for (ColumnChunkMetaData column : rowGroup.getColumns()) {
        if (!CODECS.contains(column.getCodec())) {
          throw new NotReadable(file, "column " + column.getPath().toDotString() + " is compressed with "
              + column.getCodec() + ", which this reader does not support (it reads " + CODECS + ")");
        }
      }
    }
  }

  /**
   * parquet-hadoop's {@code ParquetReadOptions.builder(conf)} creates Hadoop's CodecFactory and looks up a record
   * filter through ParquetInputFormat (a MapReduce class) before {@code withCodecFactory} can replace them, so it needs
   * Hadoop on the class path even when nothing it loads from there is used (apache/parquet-java#3780 removes the
   * MapReduce part only). The options themselves need no Hadoop: this calls their constructor, package-private in
   * 1.18, with this class's codecs, a plain configuration, the filters off (all rows are read) and page checksums
   * checked where a writer wrote them. When a parquet upgrade changes that constructor, ParquetRowsTest fails here: match
   * the new parameters to the builder's {@code build()}.
   */
  private static ParquetReadOptions options() {
    try {
      Constructor<ParquetReadOptions> constructor = ParquetReadOptions.class.getDeclaredConstructor(
          boolean.class, boolean.class, boolean.class, boolean.class, boolean.class, boolean.class, boolean.class,
          boolean.class, boolean.class, FilterCompat.Filter.class, ParquetMetadataConverter.MetadataFilter.class,
          CompressionCodecFactory.class, ByteBufferAllocator.class, int.class, Map.class, FileDecryptionProperties.class,
          ParquetMetricsCallback.class, ParquetConfiguration.class);
      constructor.setAccessible(true);
      return constructor.newInstance(
          false, // useSignedStringMinMax
          false, // useStatsFilter
          false, // useDictionaryFilter
          false, // useRecordFilter
          false, // useColumnIndexFilter
          true, // usePageChecksumVerification: of the pages that carry a CRC (pyarrow's and DuckDB's do not)
          false, // useBloomFilter
          false, // useOffHeapDecryptBuffer
          false, // useHadoopVectoredIo
          FilterCompat.NOOP, ParquetMetadataConverter.NO_FILTER, new Codecs(), new HeapByteBufferAllocator(),
          MAX_ALLOCATION, new HashMap<String, String>(), null, null, new PlainParquetConfiguration());
    } catch (NoSuchMethodException | InstantiationException | IllegalAccessException e) {
      throw new IllegalStateException("parquet-hadoop's ParquetReadOptions constructor is not the one ParquetRows "
          + "calls (a parquet upgrade?): " + e, e);
    } catch (InvocationTargetException e) {
      throw new IllegalStateException("ParquetReadOptions: " + e.getCause(), e.getCause());
    }
  }

  /** Page decompression without Hadoop's codec classes: aircompressor, and the JDK for GZIP. Decompression only. */
  private static final class Codecs implements CompressionCodecFactory {
    @Override
    public BytesInputDecompressor getDecompressor(CompressionCodecName codec) {
      return switch (codec) {
        case UNCOMPRESSED -> new Pages(null);
        case SNAPPY -> new Pages(new SnappyDecompressor());
        case ZSTD -> new Pages(new ZstdDecompressor());
        case LZ4_RAW -> new Pages(new Lz4Decompressor());
        case GZIP -> new Pages(null) {
          @Override
          byte[] decompress(byte[] input, int size) throws IOException {
            try (InputStream in = new GZIPInputStream(new ByteArrayInputStream(input))) {
              return in.readNBytes(size);
            }
          }
        };
        default -> throw new IllegalStateException("no decompressor for " + codec); // checkCodecs comes first
      };
    }

    @Override
    public BytesInputCompressor getCompressor(CompressionCodecName codec) {
      throw new UnsupportedOperationException("ParquetRows only reads");
    }

    @Override
    public void release() {}
  }

  private static class Pages implements CompressionCodecFactory.BytesInputDecompressor {
    private final Decompressor decompressor;

    Pages(Decompressor decompressor) {
      this.decompressor = decompressor;
    }

    byte[] decompress(byte[] input, int size) throws IOException {
      if (decompressor == null) {
        return input;
      }
      byte[] output = new byte[size];
      int length = decompressor.decompress(input, 0, input.length, output, 0, size);
      return length == size ? output : Arrays.copyOf(output, length);
    }

    private byte[] checked(byte[] input, int size) throws IOException {
      byte[] output = decompress(input, size);
      if (output.length != size) {
        throw new IOException("a page decompressed to " + output.length + " bytes where its header says " + size);
      }
      return output;
    }

    @Override
    public BytesInput decompress(BytesInput bytes, int size) throws IOException {
      return BytesInput.from(checked(bytes.toByteArray(), size));
    }

    @Override
    public void decompress(ByteBuffer input, int compressedSize, ByteBuffer output, int size) throws IOException {
      byte[] compressed = new byte[compressedSize];
      input.get(compressed);
      output.put(checked(compressed, size));
    }

    @Override
    public void release() {}
  }

  private static ObjectNode object(Group group, GroupType type) {
    ObjectNode object = NODES.objectNode();
    for (int i = 0; i < type.getFieldCount(); i++) {
      object.set(type.getFieldName(i), field(group, type.getType(i), i));
    }
    return object;
  }

  /** Field {@code i} of {@code group}: a repeated field (a list without a LIST group) is an array. */
  private static JsonNode field(Group group, Type type, int i) {
    int count = group.getFieldRepetitionCount(i);
    if (type.isRepetition(Type.Repetition.REPEATED)) {
      ArrayNode array = NODES.arrayNode(count);
      for (int j = 0; j < count; j++) {
        array.add(value(group, type, i, j));
      }
      return array;
    }
    return count == 0 ? NODES.nullNode() : value(group, type, i, 0);
  }

  private static JsonNode value(Group group, Type type, int i, int j) {
    if (type.isPrimitive()) {
      return primitive(group, type.asPrimitiveType(), i, j);
    }
    GroupType groupType = type.asGroupType();
    Group value = group.getGroup(i, j);
    LogicalTypeAnnotation annotation = groupType.getLogicalTypeAnnotation();
    boolean wrapsRepeated = groupType.getFieldCount() == 1 && groupType.getType(0).isRepetition(Type.Repetition.REPEATED);
    if (annotation instanceof LogicalTypeAnnotation.ListLogicalTypeAnnotation && wrapsRepeated) {
      return list(value, groupType);
    }
    if ((annotation instanceof LogicalTypeAnnotation.MapLogicalTypeAnnotation
        || annotation instanceof LogicalTypeAnnotation.MapKeyValueTypeAnnotation)
        && wrapsRepeated && !groupType.getType(0).isPrimitive()) {
      return map(value, groupType.getType(0).asGroupType());
    }
    return object(value, groupType);
  }

  /**
   * A LIST group: its repeated field is the element itself in the legacy 2-level encodings, else (the standard
   * 3-level one) a wrapper around the element; the rules are the format's backward-compatibility rules.
   */
  private static ArrayNode list(Group list, GroupType listType) {
    Type repeated = listType.getType(0);
    boolean twoLevel = repeated.isPrimitive()
        || repeated.asGroupType().getFieldCount() != 1
        || repeated.getName().equals("array")
        || repeated.getName().equals(listType.getName() + "_tuple")
        || repeated.asGroupType().getType(0).isRepetition(Type.Repetition.REPEATED);
    int count = list.getFieldRepetitionCount(0);
    ArrayNode array = NODES.arrayNode(count);
    for (int j = 0; j < count; j++) {
      array.add(twoLevel
          ? value(list, repeated, 0, j)
          : field(list.getGroup(0, j), repeated.asGroupType().getType(0), 0));
    }
    return array;
  }

  /** A MAP group's repeated key_value group: an object keyed by the key's text. */
  private static ObjectNode map(Group map, GroupType keyValue) {
    ObjectNode object = NODES.objectNode();
    for (int j = 0, count = map.getFieldRepetitionCount(0); j < count; j++) {
      Group entry = map.getGroup(0, j);
      JsonNode key = field(entry, keyValue.getType(0), 0);
      JsonNode value = keyValue.getFieldCount() > 1 ? field(entry, keyValue.getType(1), 1) : NODES.nullNode();
      object.set(key.isTextual() ? key.textValue() : key.toString(), value);
    }
    return object;
  }

  private static JsonNode primitive(Group group, PrimitiveType type, int i, int j) {
    LogicalTypeAnnotation annotation = type.getLogicalTypeAnnotation();
    switch (type.getPrimitiveTypeName()) {
      case BOOLEAN:
        return NODES.booleanNode(group.getBoolean(i, j));
      case FLOAT:
        return NODES.numberNode(group.getFloat(i, j));
      case DOUBLE:
        return NODES.numberNode(group.getDouble(i, j));
      case INT32: {
        int value = group.getInteger(i, j);
        if (annotation instanceof LogicalTypeAnnotation.DecimalLogicalTypeAnnotation decimal) {
          return NODES.numberNode(BigDecimal.valueOf(value, decimal.getScale()));
        }
        if (annotation instanceof LogicalTypeAnnotation.DateLogicalTypeAnnotation) {
          return NODES.textNode(LocalDate.ofEpochDay(value).toString());
        }
        if (annotation instanceof LogicalTypeAnnotation.TimeLogicalTypeAnnotation) {
          return NODES.textNode(DateTimeFormatter.ISO_LOCAL_TIME.format(LocalTime.ofNanoOfDay(value * 1_000_000L)));
        }
        if (annotation instanceof LogicalTypeAnnotation.IntLogicalTypeAnnotation integer && !integer.isSigned()) {
          return NODES.numberNode(Integer.toUnsignedLong(value));
        }
        return NODES.numberNode(value);
      }
      case INT64: {
        long value = group.getLong(i, j);
        if (annotation instanceof LogicalTypeAnnotation.DecimalLogicalTypeAnnotation decimal) {
          return NODES.numberNode(BigDecimal.valueOf(value, decimal.getScale()));
        }
        if (annotation instanceof LogicalTypeAnnotation.TimestampLogicalTypeAnnotation timestamp) {
          Instant instant = Instant.EPOCH.plus(value, unit(timestamp.getUnit()));
          return NODES.textNode(timestamp.isAdjustedToUTC()
              ? DateTimeFormatter.ISO_INSTANT.format(instant)
              : DateTimeFormatter.ISO_LOCAL_DATE_TIME.format(LocalDateTime.ofInstant(instant, ZoneOffset.UTC)));
        }
        if (annotation instanceof LogicalTypeAnnotation.TimeLogicalTypeAnnotation time) {
          long nanos = time.getUnit() == LogicalTypeAnnotation.TimeUnit.MICROS ? value * 1_000L : value;
          return NODES.textNode(DateTimeFormatter.ISO_LOCAL_TIME.format(LocalTime.ofNanoOfDay(nanos)));
        }
        if (annotation instanceof LogicalTypeAnnotation.IntLogicalTypeAnnotation integer && !integer.isSigned()
            && value < 0) {
          return NODES.numberNode(new BigInteger(Long.toUnsignedString(value)));
        }
        return NODES.numberNode(value);
      }
      case INT96: {
        // Legacy (Impala, Spark) timestamps: nanoseconds of the day, then the Julian day, both little-endian.
        ByteBuffer bytes = group.getInt96(i, j).toByteBuffer().order(ByteOrder.LITTLE_ENDIAN);
        long nanos = bytes.getLong();
        long epochDay = bytes.getInt() - 2_440_588L;
        return NODES.textNode(DateTimeFormatter.ISO_INSTANT.format(
            Instant.EPOCH.plus(epochDay, ChronoUnit.DAYS).plusNanos(nanos)));
      }
      default: { // BINARY, FIXED_LEN_BYTE_ARRAY
        Binary value = group.getBinary(i, j);
        if (annotation instanceof LogicalTypeAnnotation.StringLogicalTypeAnnotation
            || annotation instanceof LogicalTypeAnnotation.EnumLogicalTypeAnnotation
            || annotation instanceof LogicalTypeAnnotation.JsonLogicalTypeAnnotation) {
          return NODES.textNode(value.toStringUsingUTF8());
        }
        if (annotation instanceof LogicalTypeAnnotation.DecimalLogicalTypeAnnotation decimal) {
          return NODES.numberNode(new BigDecimal(new BigInteger(value.getBytes()), decimal.getScale()));
        }
        if (annotation instanceof LogicalTypeAnnotation.UUIDLogicalTypeAnnotation && value.length() == 16) {
          ByteBuffer bytes = value.toByteBuffer();
          return NODES.textNode(new UUID(bytes.getLong(), bytes.getLong()).toString());
        }
        return NODES.textNode(Base64.getEncoder().encodeToString(value.getBytes()));
      }
    }
  }

  private static ChronoUnit unit(LogicalTypeAnnotation.TimeUnit unit) {
    return switch (unit) {
      case MILLIS -> ChronoUnit.MILLIS;
      case MICROS -> ChronoUnit.MICROS;
      case NANOS -> ChronoUnit.NANOS;
    };
  }
}
