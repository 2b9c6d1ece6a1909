package dev.finetune.operator.resources;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import dev.finetune.api.FineTuneJobSpec;
import dev.finetune.api.FineTuneJobs;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.Map;

/**
 * A stable hash of everything in the spec that shapes the training Job: the spec without {@code suspend}
 * (the one field that may change after the Job exists). Map keys are sorted so that the order in which
 * the API server returns labels or node selectors does not matter.
 */
public final class SpecHash {
  private static final ObjectMapper CANONICAL = FineTuneJobs.json().copy()
      .enable(SerializationFeature.ORDER_MAP_ENTRIES_BY_KEYS);

  private SpecHash() {}

  @SuppressWarnings("unchecked")
  public static String of(FineTuneJobSpec spec) {
    try {
      Map<String, Object> tree = CANONICAL.convertValue(spec, Map.class);
      tree.remove("suspend");
      byte[] json = CANONICAL.writeValueAsBytes(tree);
      byte[] digest = MessageDigest.getInstance("SHA-256").digest(json);
      return HexFormat.of().formatHex(digest, 0, 16);
    } catch (NoSuchAlgorithmException | com.fasterxml.jackson.core.JsonProcessingException e) {
      throw new IllegalStateException("cannot hash the spec", e);
    }
  }

  static String utf8(byte[] b) {
    return new String(b, StandardCharsets.UTF_8);
  }
}
