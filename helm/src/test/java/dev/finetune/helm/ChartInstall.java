package dev.finetune.helm;

import dev.finetune.api.testing.RealKubeApiServer;
import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.NamespaceBuilder;
import io.fabric8.kubernetes.api.model.ServiceAccount;
import io.fabric8.kubernetes.api.model.authentication.TokenRequest;
import io.fabric8.kubernetes.api.model.authentication.TokenRequestBuilder;
import io.fabric8.kubernetes.client.Config;
import io.fabric8.kubernetes.client.ConfigBuilder;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientBuilder;
import java.util.List;
import java.util.Map;

/**
 * What {@code helm install} would create for the operator's identity, on a real API server: the chart's
 * ServiceAccount, roles and bindings; and a client that authenticates as that ServiceAccount, as the operator
 * Pod would.
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

  /**
   * A client with a token for the ServiceAccount from the TokenRequest API, as the kubelet projects one into the
   * operator Pod (Kubernetes stopped creating token Secrets in 1.24). Valid for an hour, longer than any test.
   */
  public static KubernetesClient clientFor(RealKubeApiServer server, String serviceAccount) {
    TokenRequest request = new TokenRequestBuilder().withNewSpec().withExpirationSeconds(3600L).endSpec().build();
    String token = server.client().serviceAccounts().inNamespace(Chart.NAMESPACE).withName(serviceAccount)
        .tokenRequest(request).getStatus().getToken();
    Config config = new ConfigBuilder(Config.empty())
        .withMasterUrl(server.url())
        .withCaCertFile(server.caCertificate().toString())
        .withOauthToken(token)
        .withNamespace(Chart.NAMESPACE)
        .build();
    return new KubernetesClientBuilder().withConfig(config).build();
  }
}
