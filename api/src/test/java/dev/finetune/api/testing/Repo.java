package dev.finetune.api.testing;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Optional;

/** Paths in this repository and beside it, for tests in any module. */
public final class Repo {
  private Repo() {}

  /** The repository root: the system property finetune.root (set by the parent pom), else the first parent with crds/. */
  public static Path root() {
    String prop = System.getProperty("finetune.root");
    if (prop != null) {
      return Path.of(prop).toAbsolutePath().normalize();
    }
    for (Path p = Path.of("").toAbsolutePath(); p != null; p = p.getParent()) {
      if (Files.isDirectory(p.resolve("crds")) && Files.isRegularFile(p.resolve("pom.xml"))) {
        return p;
      }
    }
    throw new IllegalStateException("cannot find the repository root from " + Path.of("").toAbsolutePath());
  }

  public static Path crd() {
    return root().resolve("crds/finetunejobs.finetune.dev-v1.yml");
  }

  public static Path examples() {
    return root().resolve("examples");
  }

  /** ../shared (fixtures, k8s scripts), if present. */
  public static Optional<Path> shared() {
    String prop = System.getProperty("finetune.shared");
    Path p = prop != null ? Path.of(prop) : root().resolve("../shared");
    return Files.isDirectory(p) ? Optional.of(p.toAbsolutePath().normalize()) : Optional.empty();
  }
}
