package dev.finetune.trainer.data;

import dev.finetune.api.DatasetSpec;
import dev.finetune.api.PromptStyle;
import dev.finetune.trainer.BadDataException;
import dev.finetune.trainer.model.TextTokenizer;
import dev.finetune.trainer.model.TokenizerConfig;

/**
 * How a record becomes what the model reads, as spec.dataset.promptStyle says: the tokens of a training record
 * with the ones the loss trains, and the prompt a test record is answered from.
 */
public interface PromptFormat {

  /** A training or validation record's tokens, and what the loss trains. */
  Collator.Example example(Record r);

  /** The text a test record is answered from. */
  String prompt(Record r);

  /** {@link #prompt}'s token ids, as the model reads them. */
  long[] promptIds(Record r);

  /**
   * The job's format for a model's tokenizer: alpaca or phi3 (the reference's templates), or the chat template of
   * {@code config} (the model's own, or the one the job gave through {@link ChatFormat#jobTemplate}).
   */
  static PromptFormat of(DatasetSpec ds, TextTokenizer tokenizer, TokenizerConfig config) {
    if (ds.promptStyle == PromptStyle.CHAT) {
      return ChatFormat.of(ds, tokenizer, config);
    }
    return new Instructions(ds.promptStyle, tokenizer);
  }

  /** alpaca or phi3: the prompt then the response; the prompt part's length is what maskPrompt hides. */
  record Instructions(PromptStyle style, TextTokenizer tokenizer) implements PromptFormat {
    @Override
    public Collator.Example example(Record r) {
      conversationsNeedChat(r);
      int prompt = tokenizer.encode(Prompts.instructionPart(style, r)).length;
      return new Collator.Example(tokenizer.encode(Prompts.full(style, r)), prompt);
    }

    @Override
    public String prompt(Record r) {
      conversationsNeedChat(r);
      return Prompts.prompt(style, r);
    }

    @Override
    public long[] promptIds(Record r) {
      return tokenizer.encode(prompt(r));
    }

    private void conversationsNeedChat(Record r) {
      if (r.isConversation()) {
        throw new BadDataException(r.where() + " is a conversation (messages), which promptStyle "
            + style.toString().toLowerCase() + " cannot write; set spec.dataset.promptStyle: chat to render it with the"
            + " model's chat template, or give instruction, input and output records");
      }
    }
  }
}
