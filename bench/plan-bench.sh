#!/usr/bin/env bash
# The memory plan against the measured peak, on this CPU: three shapes (a Llama with grouped queries, a wider one on
# longer sequences, a GPT-2), each with and without gradient checkpointing, the loss in chunks of 1,024 tokens (the
# default). Bench trains a few steps of a random model of the shape and prints the plan less its runtime allowance
# beside the peak resident memory the steps took above the loaded engine. glibc's malloc keeps freed blocks of up to
# 32 MB mapped once large blocks have come and gone (its dynamic mmap threshold), so the resident peak would count
# memory that is free; MALLOC_MMAP_THRESHOLD_ fixes the threshold, so that the peak is what was in use.
# Usage: bench/plan-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/classpath.sh trainer-image
for shape in "llama 256 6 4 256 8 2" "llama 384 4 6 512 4 2" "gpt2 192 4 4 256 8 0"; do
  set -- $shape
  for checkpointing in 0 1; do
    MALLOC_MMAP_THRESHOLD_=131072 DJL_OFFLINE=true java -cp "$CP" dev.finetune.trainer.Bench --arch "$1" --n-embd "$2" \
      --n-layer "$3" --n-head "$4" --seq "$5" --batch "$6" --n-kv-head "$7" --steps 2 --warmup 1 \
      --checkpointing "$checkpointing" --loss-chunk 1024 2>/dev/null |
      python3 -c 'import json, sys; d = json.loads(sys.stdin.read()); print("%s d %s x %s layers, batch %s x %s, checkpointing %-5s: plan %7.1f MB, measured %7.1f MB, plan/measured %.3f, step %.2f s" % (d["arch"], sys.argv[1], sys.argv[2], d["batch"], d["seq"], d["checkpointing"], d["plan_mb"], d["measured_over_runtime_mb"], d["plan_over_measured"], d["median_step_s"]))' "$2" "$3"
  done
done
