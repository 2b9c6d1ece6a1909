package dev.finetune.helm;

import static org.awaitility.Awaitility.await;

import dev.finetune.api.testing.RealKubeApiServer;
import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.NamespaceBuilder;
import io.fabric8.kubernetes.api.model.Secret;
import io.fabric8.kubernetes.api.model.ServiceAccount;
import io.fabric8.kubernetes.client.Config;
import io.fabric8.kubernetes.client.ConfigBuilder;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientBuilder;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Base64;
import java.util.List;
import java.util.Map;

/**
 * What {@code helm install} would create for the operator's identity, on a real API server: the chart's
 * ServiceAccount, roles and bindings; and a client that authenticates as that ServiceAccount, as the operator
 * Pod would. (The server needs kube-controller-manager: it issues the ServiceAccount tokens.)
 */
public final class ChartInstall {
  private static final List<String> RBAC_KINDS = List.of("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding");

  private ChartInstall() {}

  /** Creates the release namespace if needed and the chart's RBAC objects; returns the ServiceAccount's name. */
  public static String installRbac(RealKubeApiServer server, String release, Map<String, String> values) {
    if (server.client().namespaces().withName(Chart.NAMESPACE).get() == null) {
      server.client().namespaces().resource(new NamespaceBuilder().withNewMetadata().withName(Chart.NAMESPACE).endMetadata().build()).create();
    }
    List<HasMetadata> objects = Chart.renderRelease(release, values).stream()
        .filter(o -> RBAC_KINDS.contains(o.getKind())).toList();
    objects.forEach(o -> server.client().resource(o).create());
    return Chart.ofKind(objects, ServiceAccount.class).get(0).getMetadata().getName();
  }

  /** A client with the ServiceAccount's token, once the controller manager has issued it. */
  public static KubernetesClient clientFor(RealKubeApiServer server, String serviceAccount) {
    String token = await().atMost(Duration.ofSeconds(30)).until(() -> {
      ServiceAccount sa = server.client().serviceAccounts().inNamespace(Chart.NAMESPACE).withName(serviceAccount).get();
      if (sa == null || sa.getSecrets() == null || sa.getSecrets().isEmpty()) {
        return null;
      }
      Secret secret = server.client().secrets().inNamespace(Chart.NAMESPACE).withName(sa.getSecrets().get(0).getName()).get();
      return secret == null || secret.getData() == null ? null
          : new String(Base64.getDecoder().decode(secret.getData().get("token")), StandardCharsets.UTF_8);
    }, t -> t != null);
    Config config = new ConfigBuilder(Config.empty())
        .withMasterUrl(server.url())
        .withCaCertFile(server.caCertificate().toString())
        .withOauthToken(token)
        .withNamespace(Chart.NAMESPACE)
        .build();
    return new KubernetesClientBuilder().withConfig(config).build();
  }
}
