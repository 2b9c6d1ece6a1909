#!/usr/bin/env bash
# Chat templates: the time to render and tokenize N conversations (examples/smollm2-chats.jsonl, cycled) with
# SmolLM2-135M-Instruct's template and tokenizer, and to make their training examples (the assistant's turns found and
# labelled), beside transformers.js 4.3.2 on the same conversations in the same run. transformers.js is installed from
# the npm registry into a folder outside the repository (CHAT_BENCH_DEPS, default /tmp/chat-bench-deps).
# Usage: bench/chat-bench.sh [conversations=10000]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-10000}"
FIXTURE=trainer-image/src/test/resources/chat/smollm2
DEPS="${CHAT_BENCH_DEPS:-/tmp/chat-bench-deps}"
. bench/classpath.sh trainer-image
DJL_OFFLINE=true java -cp "$CP" dev.finetune.trainer.data.ChatBench "$N" examples/smollm2-chats.jsonl "$FIXTURE" 2>/dev/null |
  grep '^java'
if [ ! -d "$DEPS/node_modules/@huggingface/transformers" ]; then
  mkdir -p "$DEPS"
  (cd "$DEPS" && npm init -y >/dev/null && npm install --ignore-scripts --no-audit --no-fund --silent \
    @huggingface/transformers@4.3.2 @huggingface/jinja@0.5.13 >/dev/null)
fi
node bench/chat-bench.mjs "$N" examples/smollm2-chats.jsonl "$FIXTURE" "$DEPS"
