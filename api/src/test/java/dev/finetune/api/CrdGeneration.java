package dev.finetune.api;

import io.fabric8.crd.generator.annotation.AdditionalPrinterColumn;
import io.fabric8.crdv2.generator.CRDGenerator;
import io.fabric8.crdv2.generator.CRDPostProcessor;
import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.apiextensions.v1.CustomResourceColumnDefinition;
import io.fabric8.kubernetes.api.model.apiextensions.v1.CustomResourceDefinition;
import io.fabric8.kubernetes.api.model.apiextensions.v1.JSONSchemaProps;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.reflect.Field;
import java.lang.reflect.Modifier;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;

/**
 * Generates the FineTuneJob CRD from the Java types with fabric8's crd-generator. The checked-in copies
 * (crds/ and the Helm chart's crds/) must equal its output; {@code mvn -pl api test -Dcrd.update=true}
 * rewrites them.
 */
public final class CrdGeneration {
  public static final String FILE_NAME = "finetunejobs.finetune.dev-v1.yml";

  private CrdGeneration() {}

  public static String generate() {
    try {
      Path dir = Files.createTempDirectory("crd");
      new CRDGenerator()
          .customResourceClasses(FineTuneJob.class)
          .forCRDVersions("v1")
          .withPostProcessor(new CRDPostProcessor() {
            @Override
            public HasMetadata process(HasMetadata crd, String version) {
              CustomResourceDefinition c = (CustomResourceDefinition) crd;
              c.getSpec().getVersions().forEach(v -> addDefaults(
                  v.getSchema().getOpenAPIV3Schema().getProperties().get("spec"), FineTuneJobSpec.class));
              return orderPrinterColumns(c);
            }
          })
          .inOutputDir(dir.toFile())
          .generate();
      Path file = dir.resolve(FILE_NAME);
      String yaml = Files.readString(file);
      Files.delete(file);
      Files.delete(dir);
      return yaml;
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /**
   * The CRD's defaults are the Java field initialisers, the one place each default is written: a field whose
   * initial value is not null gets it as its schema default (an object field the object as JSON, with its own
   * defaults), so a real API server fills in what the Java types fill in for the mock server and local runs.
   */
  static void addDefaults(JSONSchemaProps schema, Class<?> type) {
    Object instance;
    try {
      instance = type.getDeclaredConstructor().newInstance();
    } catch (ReflectiveOperationException e) {
      throw new IllegalStateException(type + " needs a public no-argument constructor", e);
    }
    for (Field f : type.getFields()) {
      JSONSchemaProps property = schema.getProperties() == null ? null : schema.getProperties().get(f.getName());
      if (property == null || Modifier.isStatic(f.getModifiers())) {
        continue;
      }
      Object value;
      try {
        value = f.get(instance);
      } catch (IllegalAccessException e) {
        throw new IllegalStateException(e);
      }
      if (value != null) {
        property.setDefault(FineTuneJobs.json().valueToTree(value));
      }
      if (f.getType().getPackageName().equals(type.getPackageName()) && !f.getType().isEnum()) {
        addDefaults(property, f.getType());
      }
    }
  }

  /** The generator sorts printer columns by JSON path; kubectl shows them in the order declared on FineTuneJob. */
  private static CustomResourceDefinition orderPrinterColumns(CustomResourceDefinition crd) {
    List<String> declared = Arrays.stream(FineTuneJob.class.getAnnotationsByType(AdditionalPrinterColumn.class))
        .map(AdditionalPrinterColumn::name).toList();
    crd.getSpec().getVersions().forEach(v -> v.getAdditionalPrinterColumns()
        .sort(Comparator.comparingInt((CustomResourceColumnDefinition c) -> declared.indexOf(c.getName()))));
    return crd;
  }
}
