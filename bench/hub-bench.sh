#!/usr/bin/env bash
# Hub downloads against a fake hub on loopback: bytes sent for a file whose first transfer drops halfway (against its
# size: the resume saves the re-download), and the time a job takes to start training on a model it downloads against
# one already in the shared cache (HF_HUB_CACHE).
# Usage: bench/hub-bench.sh [megabytes=200]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/classpath.sh trainer-image
export DJL_OFFLINE=true FINETUNE_PORT=0
java -Xmx3g -Dfinetune.shared="$PWD/../shared" -cp "$CP" dev.finetune.trainer.hub.HubBench "$@" 2>/dev/null |
  grep -E '^(dropped|first|second|third)'
