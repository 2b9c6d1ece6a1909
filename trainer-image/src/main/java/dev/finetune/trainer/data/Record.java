package dev.finetune.trainer.data;

/** One instruction example; {@code input} is empty when the task has none. */
public record Record(String instruction, String input, String output) {}
