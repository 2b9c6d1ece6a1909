package dev.finetune.api.testing;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import com.networknt.schema.JsonSchema;
import com.networknt.schema.JsonSchemaFactory;
import com.networknt.schema.SpecVersion;
import com.networknt.schema.ValidationMessage;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.util.List;

/**
 * The checked-in CRD's OpenAPI v3 schema as a JSON Schema, to check documents the way the API server does
 * (types, bounds, enums, patterns, required) without one.
 */
public final class CrdSchema {
  private static final ObjectMapper YAML = new ObjectMapper(new YAMLFactory());
  private final JsonSchema schema;

  private CrdSchema(JsonNode openApi) {
    this.schema = JsonSchemaFactory.getInstance(SpecVersion.VersionFlag.V4).getSchema(openApi);
  }

  public static CrdSchema load(Path crdFile) {
    try {
      JsonNode crd = YAML.readTree(crdFile.toFile());
      return new CrdSchema(crd.at("/spec/versions/0/schema/openAPIV3Schema"));
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** The schema's complaints about a YAML document; empty when it passes. */
  public List<String> check(String yaml) {
    try {
      JsonNode doc = YAML.readTree(yaml);
      return schema.validate(doc).stream().map(ValidationMessage::getMessage).sorted().toList();
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }
}
