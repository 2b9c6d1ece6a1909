#!/usr/bin/env bash
# What the trainer's observability costs: step time of a small in-process training run whose steps alternate
# between unobserved and observed (/metrics and /progress fetched every 250 ms), the listener's time a step, and the
# latency of /metrics and /progress (Java HttpClient, then curl).
# Usage: bench/observability-bench.sh [pairs=3] [epochs=4] [scrapes=100]   (OBS_BENCH_AB=1: also whole A/B runs)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/classpath.sh trainer-image
export DJL_OFFLINE=true
log=$(mktemp)
OBS_BENCH_HOLD=60 java -Xmx3g -cp "$CP" dev.finetune.trainer.observe.ObservabilityBench "$@" 2>/dev/null | tee "$log" &
pid=$!
url=""
for _ in $(seq 1 1200); do
  url=$(sed -n 's/^scrape URL for curl: //p' "$log")
  [[ -n "$url" ]] && break
  sleep 1
done
if [[ -n "$url" ]] && command -v curl >/dev/null; then
  n=${3:-100}
  for _ in $(seq 1 "$n"); do curl -s -o /dev/null -w '%{time_total}\n' "$url"; done | sort -n |
    awk '{v[NR]=$1} END {printf "curl /metrics %d scrapes: median %.2f ms, p90 %.2f ms, max %.2f ms\n", NR, v[int((NR+1)/2)]*1000, v[int(NR*0.9)]*1000, v[NR]*1000}'
fi
kill "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
rm -f "$log"
