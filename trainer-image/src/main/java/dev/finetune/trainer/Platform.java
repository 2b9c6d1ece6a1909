package dev.finetune.trainer;

import java.util.Locale;
import java.util.Map;

/**
 * Where the trainer runs: Linux on x86-64 only. The jar carries DJL's libtorch for {@code linux-x86_64} alone (the
 * pom pins pytorch-native-cpu's classifier, and DJL runs offline so it fetches no other), and the trainer's native
 * library is a Linux x86-64 build. Elsewhere the engine would fail with an UnsatisfiedLinkError or a stack trace
 * deep in DJL; this check says so in words first.
 */
final class Platform {
  private Platform() {}

  /**
   * Null where the trainer runs; else the message: the platform, why not, and what to do instead.
   *
   * @param osName the {@code os.name} system property, e.g. "Linux", "Mac OS X", "Windows 11"
   * @param osArch the {@code os.arch} system property, e.g. "amd64", "aarch64", "x86_64"
   * @param env PYTORCH_LIBRARY_PATH set means a libtorch of one's own (with DJL's JNI built for it, as CI builds
   *     them): then the platform is that libtorch's business, not this check's
   */
  static String unsupported(String osName, String osArch, Map<String, String> env) {
    String os = osName == null ? "" : osName.toLowerCase(Locale.ROOT);
    String arch = osArch == null ? "" : osArch.toLowerCase(Locale.ROOT);
    boolean linux = os.startsWith("linux");
    boolean x86 = arch.equals("amd64") || arch.equals("x86_64");
    String ownTorch = env.get("PYTORCH_LIBRARY_PATH");
    if (linux && x86 || ownTorch != null && !ownTorch.isBlank()) {
      return null;
    }
    String platform = (os.startsWith("mac") ? "macOS" : linux ? "Linux" : os.startsWith("windows") ? "Windows"
        : osName) + " " + osArch;
    return "this trainer runs on Linux x86-64 only, and this is " + platform + " (os.name '" + osName + "', os.arch '"
        + osArch + "'): the libtorch in the jar (DJL's pytorch-native-cpu for linux-x86_64) and the trainer's native"
        + " library are built for Linux x86-64 alone. Run it in the CPU container image instead (docker run --platform"
        + " linux/amd64, emulated: see README.md, \"Quick start: a local run\") or on a Linux x86-64 machine"
        + (os.startsWith("windows") ? " (WSL 2 on an x86-64 PC is one)" : "");
  }

  /** Whether the command loads libtorch: all but --help, --version and --plan (which reads config.json alone). */
  static boolean needsEngine(String[] args) {
    for (String a : args) {
      if (a.equals("--help") || a.equals("-h") || a.equals("--version") || a.equals("--plan")) {
        return false;
      }
    }
    return true;
  }
}
