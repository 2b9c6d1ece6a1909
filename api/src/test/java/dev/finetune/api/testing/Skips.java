package dev.finetune.api.testing;

import org.junit.jupiter.api.Assumptions;

/**
 * Skips a test whose environment is missing (../shared, etcd, Prometheus) and says so on the console: an
 * assumption that fails in {@code @BeforeAll} otherwise shows up in Maven's output as "Tests run: 0" with no
 * reason.
 */
public final class Skips {
  private Skips() {}

  /** Skips the calling test (or test class, from {@code @BeforeAll}) unless {@code present}, printing why. */
  public static void unless(boolean present, String whatIsMissing) {
    if (!present) {
      // the test class, past the harnesses (RealKubeApiServer, Fixtures) that called this
      String caller = StackWalker.getInstance(StackWalker.Option.RETAIN_CLASS_REFERENCE).walk(frames -> frames
          .map(StackWalker.StackFrame::getDeclaringClass).map(Class::getSimpleName)
          .filter(n -> n.endsWith("Test")).findFirst().orElse("a test"));
      System.err.println("[SKIPPED] " + caller + ": " + whatIsMissing);
    }
    Assumptions.assumeTrue(present, whatIsMissing);
  }
}
