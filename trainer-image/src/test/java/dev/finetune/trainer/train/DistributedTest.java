package dev.finetune.trainer.train;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.finetune.trainer.BadJobException;
import java.util.HashMap;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** torchrun's environment as the trainer reads it: one process without it, each bad value named (exit 3, no retry). */
class DistributedTest {
  static Map<String, String> torchrun(String... extra) {
    Map<String, String> env = new HashMap<>(Map.of("WORLD_SIZE", "2", "RANK", "1", "MASTER_ADDR", "10.0.0.4",
        "MASTER_PORT", "29500"));
    for (int i = 0; i < extra.length; i += 2) {
      env.put(extra[i], extra[i + 1]);
    }
    return env;
  }

  @Test
  void withoutWorldSizeTheRunIsOneProcess() {
    Distributed d = Distributed.fromEnv(Map.of("RANK", "3"));
    assertThat(d.isDistributed()).isFalse();
    assertThat(d.size()).isEqualTo(1);
    assertThat(d.isMain()).isTrue();
    assertThat(d.describe()).isEmpty();
  }

  @Test
  void torchrunsVariablesPlaceTheRank() {
    Distributed d = Distributed.fromEnv(torchrun("LOCAL_RANK", "1", "LOCAL_WORLD_SIZE", "2"));
    assertThat(d.isDistributed()).isTrue();
    assertThat(d.isMain()).isFalse();
    assertThat(d.describe()).isEqualTo("rank 1 of 2 (local 1 of 2, rendezvous at 10.0.0.4:29500); ");
  }

  @Test
  void badValuesAreNamedWithTheirFix() {
    Map<String, String> noAddr = torchrun();
    noAddr.remove("MASTER_ADDR");
    assertThatThrownBy(() -> Distributed.fromEnv(noAddr)).isInstanceOf(BadJobException.class)
        .hasMessageContaining("MASTER_ADDR is not set");
    assertThatThrownBy(() -> Distributed.fromEnv(torchrun("RANK", "2"))).isInstanceOf(BadJobException.class)
        .hasMessage("RANK is 2; it must be from 0 to 1");
    assertThatThrownBy(() -> Distributed.fromEnv(torchrun(Distributed.ENV_BACKEND, "mpi")))
        .isInstanceOf(BadJobException.class).hasMessageContaining("it must be gloo or nccl");
    for (String mb : new String[] {"0", "-1", "lots"}) {
      assertThatThrownBy(() -> Distributed.fromEnv(torchrun(Distributed.ENV_BUCKET_MB, mb)))
          .isInstanceOf(BadJobException.class)
          .hasMessage(Distributed.ENV_BUCKET_MB + " is '" + mb + "'; it must be a size in MB above 0 (e.g. 25, DDP's"
              + " bucket_cap_mb default)");
    }
    assertThat(Distributed.fromEnv(torchrun(Distributed.ENV_BUCKET_MB, "0.5")).isDistributed()).isTrue();
  }

  @Test
  void zeroOneSharesTheOptimizerStateAsEvenlyAsTheTensorsAllow() {
    Map<String, Long> sizes = new java.util.LinkedHashMap<>();
    sizes.put("a", 100L);
    sizes.put("b", 60L);
    sizes.put("c", 50L);
    sizes.put("d", 10L);
    // largest first to the emptier rank: a -> 0, b -> 1, c -> 1 (60 < 100), d -> 0 (100 < 110): 110 and 110
    assertThat(AdamW.owners(sizes, 2)).containsExactly(Map.entry("a", 0), Map.entry("b", 1), Map.entry("c", 1),
        Map.entry("d", 0));
    // more ranks than tensors: some ranks keep none
    assertThat(AdamW.owners(Map.of("w", 5L), 3)).containsExactly(Map.entry("w", 0));
  }
}
