package dev.finetune.helm;

import com.marcnuri.helm.Helm;
import com.marcnuri.helm.TemplateCommand;
import dev.finetune.api.testing.Repo;
import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.KubernetesList;
import io.fabric8.kubernetes.client.utils.Serialization;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/** The chart rendered with real Helm (helm-java), as Kubernetes objects. */
final class Chart {
  static final Path DIR = Repo.root().resolve("helm/finetune-operator");
  static final String RELEASE = "finetune";
  static final String NAMESPACE = "finetune-system";

  private Chart() {}

  /** helm template with --set values; objects in the order Helm writes them. */
  static List<HasMetadata> render(Map<String, String> values) {
    return renderRelease(RELEASE, values);
  }

  static List<HasMetadata> renderRelease(String release, Map<String, String> values) {
    TemplateCommand template = new Helm(DIR).template().withName(release).withNamespace(NAMESPACE);
    values.forEach(template::set);
    return parse(template.call());
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

  static <T extends HasMetadata> List<T> ofKind(List<HasMetadata> objects, Class<T> type) {
    return objects.stream().filter(type::isInstance).map(type::cast).toList();
  }
}
