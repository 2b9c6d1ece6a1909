package dev.finetune.helm;

import io.fabric8.kubernetes.api.model.Capabilities;
import io.fabric8.kubernetes.api.model.Container;
import io.fabric8.kubernetes.api.model.PodSecurityContext;
import io.fabric8.kubernetes.api.model.PodSpec;
import io.fabric8.kubernetes.api.model.SeccompProfile;
import io.fabric8.kubernetes.api.model.SecurityContext;
import io.fabric8.kubernetes.api.model.Volume;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.stream.Stream;

/**
 * The Pod Security Standards "restricted" profile (Kubernetes 1.25+), as checks on a Pod spec, plus this
 * project's own rule: a read-only root filesystem. Returns what is violated, empty when compliant.
 */
final class RestrictedPodSecurity {
  private static final List<String> ALLOWED_VOLUME_TYPES =
      List.of("configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret");

  private RestrictedPodSecurity() {}

  static List<String> violations(PodSpec pod) {
    List<String> out = new ArrayList<>();
    PodSecurityContext psc = Optional.ofNullable(pod.getSecurityContext()).orElse(new PodSecurityContext());
    if (Boolean.TRUE.equals(pod.getHostNetwork()) || Boolean.TRUE.equals(pod.getHostPID()) || Boolean.TRUE.equals(pod.getHostIPC())) {
      out.add("host namespaces must not be shared");
    }
    if (Long.valueOf(0).equals(psc.getRunAsUser())) {
      out.add("pod runAsUser must not be 0");
    }
    for (Volume v : Optional.ofNullable(pod.getVolumes()).orElse(List.of())) {
      String type = volumeType(v);
      if (!ALLOWED_VOLUME_TYPES.contains(type)) {
        out.add("volume " + v.getName() + " has restricted type " + type);
      }
    }
    List<Container> containers = Stream.concat(
        Optional.ofNullable(pod.getInitContainers()).orElse(List.of()).stream(),
        Optional.ofNullable(pod.getContainers()).orElse(List.of()).stream()).toList();
    for (Container c : containers) {
      SecurityContext sc = Optional.ofNullable(c.getSecurityContext()).orElse(new SecurityContext());
      String name = "container " + c.getName() + ": ";
      if (Boolean.TRUE.equals(sc.getPrivileged())) {
        out.add(name + "privileged");
      }
      if (!Boolean.FALSE.equals(sc.getAllowPrivilegeEscalation())) {
        out.add(name + "allowPrivilegeEscalation must be false");
      }
      boolean nonRoot = Boolean.TRUE.equals(sc.getRunAsNonRoot())
          || (sc.getRunAsNonRoot() == null && Boolean.TRUE.equals(psc.getRunAsNonRoot()));
      if (!nonRoot) {
        out.add(name + "runAsNonRoot must be true");
      }
      if (Long.valueOf(0).equals(sc.getRunAsUser())) {
        out.add(name + "runAsUser must not be 0");
      }
      SeccompProfile seccomp = sc.getSeccompProfile() != null ? sc.getSeccompProfile() : psc.getSeccompProfile();
      if (seccomp == null || !List.of("RuntimeDefault", "Localhost").contains(seccomp.getType())) {
        out.add(name + "seccompProfile must be RuntimeDefault or Localhost");
      }
      Capabilities caps = sc.getCapabilities();
      if (caps == null || caps.getDrop() == null || !caps.getDrop().contains("ALL")) {
        out.add(name + "capabilities must drop ALL");
      }
      if (caps != null && caps.getAdd() != null && caps.getAdd().stream().anyMatch(a -> !a.equals("NET_BIND_SERVICE"))) {
        out.add(name + "may add only NET_BIND_SERVICE");
      }
      if (!Boolean.TRUE.equals(sc.getReadOnlyRootFilesystem())) {
        out.add(name + "readOnlyRootFilesystem must be true");
      }
    }
    return out;
  }

  private static String volumeType(Volume v) {
    if (v.getConfigMap() != null) return "configMap";
    if (v.getCsi() != null) return "csi";
    if (v.getDownwardAPI() != null) return "downwardAPI";
    if (v.getEmptyDir() != null) return "emptyDir";
    if (v.getEphemeral() != null) return "ephemeral";
    if (v.getPersistentVolumeClaim() != null) return "persistentVolumeClaim";
    if (v.getProjected() != null) return "projected";
    if (v.getSecret() != null) return "secret";
    if (v.getHostPath() != null) return "hostPath";
    return "other";
  }
}
