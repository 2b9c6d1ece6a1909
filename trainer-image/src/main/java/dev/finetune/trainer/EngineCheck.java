package dev.finetune.trainer;

import ai.djl.engine.Engine;
import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.Shape;
import ai.djl.training.GradientCollector;
import dev.finetune.api.ScratchModelSpec;
import dev.finetune.trainer.model.Gpt2;
import dev.finetune.trainer.model.Model;
import dev.finetune.trainer.train.AdamW;
import java.io.ByteArrayInputStream;
import java.nio.charset.StandardCharsets;
import java.util.Map;

/**
 * {@code --check-engine}: loads libtorch and the tokenizers library (extracting or, without DJL_OFFLINE,
 * downloading them into DJL_CACHE_DIR: images run it at build time) and trains one step of a tiny GPT-2, so a
 * broken engine fails the image build instead of the first job.
 */
final class EngineCheck {
  private static final String WORD_LEVEL_TOKENIZER = "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,"
      + "\"added_tokens\":[],\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"Whitespace\"},\"post_processor\":null,"
      + "\"decoder\":null,\"model\":{\"type\":\"WordLevel\",\"vocab\":{\"[UNK]\":0,\"engine\":1,\"ok\":2},"
      + "\"unk_token\":\"[UNK]\"}}";

  private EngineCheck() {}

  static int run() throws Exception {
    Engine engine = Engine.getEngine("PyTorch");
    System.out.printf("engine %s %s, DJL %s, GPUs %d, default device %s%n", engine.getEngineName(),
        engine.getVersion(), Engine.getDjlVersion(), engine.getGpuCount(), engine.defaultDevice());
    try (HuggingFaceTokenizer tok = HuggingFaceTokenizer.newInstance(
        new ByteArrayInputStream(WORD_LEVEL_TOKENIZER.getBytes(StandardCharsets.UTF_8)),
        Map.of("truncation", "false", "padding", "false"))) {
      long[] ids = tok.encode("engine ok", false, false).getIds();
      if (ids.length != 2 || ids[0] != 1 || ids[1] != 2) {
        throw new IllegalStateException("tokenizers library encodes 'engine ok' as " + java.util.Arrays.toString(ids));
      }
    }
    ScratchModelSpec shape = new ScratchModelSpec();
    shape.layers = 1;
    shape.embeddingDim = 16;
    shape.heads = 2;
    shape.contextLength = 16;
    try (NDManager base = NDManager.newBaseManager(); Model model = Model.scratch(shape, base);
        AdamW opt = new AdamW(model.net().parameters(), base, 0.9, 0.999, 1e-8, 0.0)) {
      model.net().requireGradients();
      long[][] ids = {model.tokenizer().encode("engine check")};
      long[][] targets = {java.util.Arrays.copyOfRange(model.tokenizer().encode("ngine check!"), 0, ids[0].length)};
      float before;
      try (NDManager step = base.newSubManager(); NDScope scope = new NDScope();
          GradientCollector gc = Engine.getInstance().newGradientCollector()) {
        Gpt2.Consts k = new Gpt2.Consts(step);
        NDArray loss = Gpt2.loss(model.net().forward(step.create(ids[0], new Shape(1, ids[0].length)), k, true), targets, k);
        before = loss.getFloat();
        gc.backward(loss);
      }
      opt.step(model.net().parameters(), 1e-2);
      if (!Float.isFinite(before)) {
        throw new IllegalStateException("a training step of a tiny GPT-2 gave loss " + before);
      }
      System.out.printf("engine ok: one training step of a tiny GPT-2 (loss %.4f)%n", before);
    }
    return 0;
  }
}
