package dev.finetune.trainer.nativelib;

import static org.assertj.core.api.Assertions.assertThat;

import ai.djl.ndarray.NDManager;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

/**
 * The native library's kernels agree with the pure-DJL operations they replace (see {@link NativeCheck}). Runs where
 * the library is loaded: in CI, .ci/run builds it against Debian's libtorch and Maven runs this on that libtorch.
 */
class KernelsNativeTest {

  @Test
  void nativeKernelsAgreeWithDjlOperations() {
    Assumptions.assumeTrue(TorchNative.get().isPresent(), () -> "skipped: " + TorchNative.unavailableReason());
    try (NDManager base = NDManager.newBaseManager()) {
      NativeCheck.Report r = NativeCheck.run(TorchNative.get().get(), base);
      System.out.println(r.json());
      assertThat(r.diffs()).containsKeys("gelu", "cross_entropy", "bf16_cast_gradient_relative");
      assertThat(r.agrees()).as(r.json()).isTrue();
      assertThat(r.diffs().keySet()).as("attention and AdamW are checked where libtorch has them")
          .contains(TorchNative.get().get().attention() ? "attention" : "gelu")
          .contains(TorchNative.get().get().fusedAdamW() ? "adamw" : "gelu");
    }
  }
}
