package dev.finetune.api.testing;

import io.fabric8.kubernetes.api.model.apiextensions.v1.CustomResourceDefinition;
import io.fabric8.kubernetes.client.KubernetesClient;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.util.zip.GZIPInputStream;

/**
 * JobSet's own CRD (kubernetes-sigs/jobset v0.9.1, {@code src/test/resources/jobset/}), for tests of the operator on a
 * cluster that has JobSet. Created, not applied: at 750 KB it is too large for kubectl's last-applied annotation.
 */
public final class JobSetCrd {
  private JobSetCrd() {}

  public static final String NAME = "jobsets.jobset.x-k8s.io";

  /** Creates the CRD and waits until the server serves JobSets. */
  public static void install(RealKubeApiServer server) {
    KubernetesClient client = server.client();
    try (InputStream in = new GZIPInputStream(
        JobSetCrd.class.getResourceAsStream("/jobset/jobset.x-k8s.io_jobsets.yaml.gz"))) {
      client.resource(client.getKubernetesSerialization().unmarshal(in, CustomResourceDefinition.class)).create();
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    server.awaitEstablished(NAME);
  }
}
