package dev.finetune.helm;

import com.marcnuri.helm.Helm;
import com.marcnuri.helm.TemplateCommand;
import dev.finetune.api.testing.Repo;
import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.KubernetesList;
import io.fabric8.kubernetes.client.utils.Serialization;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

/** The chart rendered with real Helm (helm-java), as Kubernetes objects. */
final class Chart {
  static final Path DIR = Repo.root().resolve("helm/finetune-operator");
  static final String RELEASE = "finetune";
  static final String NAMESPACE = "finetune-system";
  private static Path renderable;

  private Chart() {}

  /** helm template with --set values; objects in the order Helm writes them. */
  static List<HasMetadata> render(Map<String, String> values) {
    return renderRelease(RELEASE, values);
  }

  static List<HasMetadata> renderRelease(String release, Map<String, String> values) {
    TemplateCommand template = new Helm(renderable()).template().withName(release).withNamespace(NAMESPACE);
    values.forEach(template::set);
    return parse(template.call());
  }

  /**
   * The chart, as {@code helm template} renders it for a cluster of a supported version. helm-java's embedded Helm
   * is built without a Kubernetes version and takes its fallback, v1.20, for {@code .Capabilities.KubeVersion}, which
   * the chart's {@code kubeVersion} refuses; so templates are rendered from a copy without that line. (RbacTest
   * installs the chart as it is into a real v1.34 API server, whose version Helm checks.)
   */
  private static synchronized Path renderable() {
    if (renderable == null) {
      try {
        Path copy = Files.createTempDirectory("chart").resolve(DIR.getFileName());
        try (Stream<Path> files = Files.walk(DIR)) {
          for (Path p : (Iterable<Path>) files::iterator) {
            Files.copy(p, copy.resolve(DIR.relativize(p).toString()));
          }
        }
        Path chartYaml = copy.resolve("Chart.yaml");
        Files.writeString(chartYaml, Files.readString(chartYaml).replaceAll("(?m)^kubeVersion:.*\\n", ""));
        renderable = copy;
      } catch (IOException e) {
        throw new UncheckedIOException(e);
      }
    }
    return renderable;
  }

  static List<HasMetadata> parse(String yaml) {
    List<HasMetadata> objects = new ArrayList<>();
    for (String doc : yaml.split("(?m)^---\\s*$")) {
      if (doc.lines().allMatch(l -> l.isBlank() || l.startsWith("#"))) {
        continue;
      }
      Object parsed = Serialization.unmarshal(doc);
      if (parsed instanceof KubernetesList list) {
        objects.addAll(list.getItems());
      } else {
        objects.add((HasMetadata) parsed);
      }
    }
    return objects;
  }

  /** The project's version: the root pom.xml's, where every module inherits it from. */
  static String projectVersion() {
    try {
      var pom = javax.xml.parsers.DocumentBuilderFactory.newInstance().newDocumentBuilder()
          .parse(Repo.root().resolve("pom.xml").toFile()).getDocumentElement();
      for (var n = pom.getFirstChild(); n != null; n = n.getNextSibling()) {
        if (n.getNodeName().equals("version")) {
          return n.getTextContent().strip();
        }
      }
      throw new IllegalStateException("pom.xml has no <version>");
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    } catch (javax.xml.parsers.ParserConfigurationException | org.xml.sax.SAXException e) {
      throw new IllegalStateException(e);
    }
  }

  static <T extends HasMetadata> List<T> ofKind(List<HasMetadata> objects, Class<T> type) {
    return objects.stream().filter(type::isInstance).map(type::cast).toList();
  }
}
