package dev.finetune.trainer.train;

import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.finetune.api.EpochRecord;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * A run can diverge while its losses stay finite (lr 10 without clipping: losses in the thousands); it stops as
 * Diverged (exit 4) instead of completing and shipping an early epoch as best.
 */
class DivergenceTest {
  @Test
  void aRunThatDivergesWhileFiniteIsStopped() {
    List<EpochRecord> history = List.of(new EpochRecord(1, 2.0, 1.5));
    Trainer.checkNotDiverging(1.2, 2, history, 257);
    Trainer.checkNotDiverging(3.0, 2, history, 257); // worse, not diverged
    assertThatThrownBy(() -> Trainer.checkNotDiverging(9000, 2, history, 257)).isInstanceOf(DivergedException.class)
        .hasMessageContaining("the validation loss after epoch 2 is 9000, above 5.549, the loss of guessing every token"
            + " uniformly (ln 257)");
    assertThatThrownBy(() -> Trainer.checkNotDiverging(4.6, 3, history, 257)).isInstanceOf(DivergedException.class)
        .hasMessageContaining("more than 3 times the first epoch's (1.500)");
    Trainer.checkNotDiverging(6.0, 1, List.of(), 257); // a fresh model starts near ln 257
  }
}
