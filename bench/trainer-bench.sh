#!/usr/bin/env bash
# Training-step benchmark of the DJL trainer, same shape and JSON fields as shared/bench/pytorch_reference.py.
# Usage: bench/trainer-bench.sh [--n-embd 256 --n-layer 4 --n-head 4 --seq 128 --batch 8 --steps 6 --warmup 2 --threads 0]
# Builds the trainer jar when it is missing (mvn -pl trainer-image package -DskipTests).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
jar="$root/trainer-image/target/finetune-trainer.jar"
if [[ ! -f "$jar" ]]; then
  (cd "$root" && mvn -q -B -pl trainer-image package -DskipTests)
fi
export DJL_OFFLINE=true
exec java -Xmx4g -cp "$jar" dev.finetune.trainer.Bench "$@" 2> >(grep -v -E "CudaUtils|^\[W" >&2)
