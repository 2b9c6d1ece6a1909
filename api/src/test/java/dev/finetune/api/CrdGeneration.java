package dev.finetune.api;

import io.fabric8.crd.generator.annotation.AdditionalPrinterColumn;
import io.fabric8.crdv2.generator.CRDGenerator;
import io.fabric8.crdv2.generator.CRDPostProcessor;
import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.apiextensions.v1.CustomResourceColumnDefinition;
import io.fabric8.kubernetes.api.model.apiextensions.v1.CustomResourceDefinition;
import java.io.IOException;
import java.io.UncheckedIOException;
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
              return orderPrinterColumns((CustomResourceDefinition) crd);
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

  /** The generator sorts printer columns by JSON path; kubectl shows them in the order declared on FineTuneJob. */
  private static CustomResourceDefinition orderPrinterColumns(CustomResourceDefinition crd) {
    List<String> declared = Arrays.stream(FineTuneJob.class.getAnnotationsByType(AdditionalPrinterColumn.class))
        .map(AdditionalPrinterColumn::name).toList();
    crd.getSpec().getVersions().forEach(v -> v.getAdditionalPrinterColumns()
        .sort(Comparator.comparingInt((CustomResourceColumnDefinition c) -> declared.indexOf(c.getName()))));
    return crd;
  }
}
