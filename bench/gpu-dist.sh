#!/usr/bin/env bash
# Data-parallel figures on one GPU (issue 20): the trainer's c10d path with NCCL at world size 1 (the all-reduce's
# per-step cost against no process group, and its bandwidth), then 2 ranks on the one GPU (NCCL refuses two ranks on
# one device, so Gloo on CUDA tensors: bandwidth, per-step cost, and a tiny job's losses against 1 rank). One JSON
# line per figure in $OUT/gpu-dist.jsonl (OUT defaults to bench/gpu-results), logs beside it.
#
# 1. Here (with ../shared):   mvn -B -DskipTests package && bench/gpu-bench.sh --prepare
# 2. On the GPU machine, carrying .gpu-bundle:   bash bench/gpu-dist.sh      (about 2 minutes on an H200)
# bench/gpu-dist.sh --cpu runs the same on this machine's CPU (Gloo only; the native library from .ci/run) to test it.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bundle=$root/.gpu-bundle
cpu=false
if [ "${1:-}" = --cpu ]; then
  cpu=true
  n=$root/trainer-image/target/native-debian
  export APP_CP="$root/trainer-image/target/finetune-trainer.jar:$root/trainer-image/target/lib/*" DJL_OFFLINE=true \
    PYTORCH_LIBRARY_PATH=$n PYTORCH_VERSION=1.13.1 PYTORCH_FLAVOR=cpu DJL_CACHE_DIR=$n/cache FINETUNE_NATIVE_LIB=$n/libfinetune_native.so
  SHAPE=${SHAPE:-"64 2 2 32 2"} MB=${MB:-8}
elif [ -z "${APP_CP:-}" ]; then
  [ -f "$bundle/on-gpu.sh" ] || { echo "no .gpu-bundle: run bench/gpu-bench.sh --prepare here first" >&2; exit 1; }
  exec bash "$bundle/on-gpu.sh" bash "$0" "$@"
fi
out=${OUT:-$root/bench/gpu-results}
mkdir -p "$out"
results=$out/gpu-dist.jsonl
: > "$results"
note() { echo "gpu-dist: $*" >&2; }
record() { grep -h '^{' "$@" >> "$results" || true; }
java=(java -Xmx16g -cp "$APP_CP")
if ! $cpu; then
  torch_dir=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')
  bash trainer-image/native/build.sh /tmp/finetune-native "$torch_dir" > "$out/native-build.log" 2>&1 \
    || note "the native library did not build (see native-build.log)"
  export FINETUNE_NATIVE_LIB=/tmp/finetune-native/libfinetune_native.so
  grep -o -- '-DUSE_C10D_[A-Z]*' "$out/native-build.log" | sort -u | tr '\n' ' ' >&2; echo >&2
fi
read -r d l h t b <<< "${SHAPE:-768 12 12 1024 8}"
shape=(--n-embd "$d" --n-layer "$l" --n-head "$h" --seq "$t" --batch "$b" --steps "${STEPS:-10}" --warmup "${WARMUP:-3}")
MB=${MB:-256}
port=29611
# torchrun's environment for rank R of W
ranks() { local w=$1 r=$2; shift 2; env WORLD_SIZE="$w" RANK="$r" LOCAL_RANK="$r" LOCAL_WORLD_SIZE="$w" \
  MASTER_ADDR=127.0.0.1 MASTER_PORT=$port "$@"; }

mode=${MODE:-bf16}
$cpu && mode=fp32
note "one process, no group ($mode)"
"${java[@]}" dev.finetune.trainer.Bench "${shape[@]}" --precision "$mode" > "$out/step-single.log" 2>&1; record "$out/step-single.log"
backend1=nccl
$cpu && backend1=gloo
note "world size 1, $backend1: a training step and the all-reduce"
port=$((port + 1)); ranks 1 0 env FINETUNE_DIST_BACKEND=$backend1 "${java[@]}" dev.finetune.trainer.Bench "${shape[@]}" --precision "$mode" \
  > "$out/step-w1.log" 2>&1; record "$out/step-w1.log"
port=$((port + 1)); ranks 1 0 env FINETUNE_DIST_BACKEND=$backend1 "${java[@]}" dev.finetune.trainer.Bench --allreduce-mb "$MB" --steps 10 --warmup 3 \
  > "$out/allreduce-w1.log" 2>&1; record "$out/allreduce-w1.log"

if ! $cpu; then
  note "2 ranks on one GPU with NCCL (expected to be refused)"
  port=$((port + 1))
  for r in 1 0; do ranks 2 $r env FINETUNE_DIST_BACKEND=nccl timeout 45 "${java[@]}" dev.finetune.trainer.Bench --allreduce-mb 16 \
    --steps 3 --warmup 1 > "$out/allreduce-nccl-w2-r$r.log" 2>&1 & done; wait
  python3 - "$out/allreduce-nccl-w2-r0.log" >> "$results" <<'EOF'
import json, sys
text = open(sys.argv[1]).read()
ok = any(l.startswith("{") for l in text.splitlines())
err = [l for l in text.splitlines() if "error" in l.lower() or "nccl" in l.lower()][-3:]
print(json.dumps({"impl": "nccl-two-ranks-one-gpu", "ran": ok, "message": " | ".join(err)[:600]}))
EOF
fi
note "2 ranks on one device with Gloo: all-reduce, a training step"
port=$((port + 1))
for r in 1 0; do ranks 2 $r env FINETUNE_DIST_BACKEND=gloo "${java[@]}" dev.finetune.trainer.Bench --allreduce-mb "$MB" --steps 5 --warmup 2 \
  > "$out/allreduce-gloo-w2-r$r.log" 2>&1 & done; wait; record "$out/allreduce-gloo-w2-r0.log"
port=$((port + 1))
for r in 1 0; do ranks 2 $r env FINETUNE_DIST_BACKEND=gloo "${java[@]}" dev.finetune.trainer.Bench "${shape[@]}" --precision "$mode" \
  > "$out/step-gloo-w2-r$r.log" 2>&1 & done; wait; record "$out/step-gloo-w2-r0.log"
# the same step with the all-reduce after the backward pass instead of during it: what the overlap saves
port=$((port + 1))
for r in 1 0; do ranks 2 $r env FINETUNE_DIST_BACKEND=gloo "${java[@]}" dev.finetune.trainer.Bench "${shape[@]}" --precision "$mode" \
  --overlap 0 > "$out/step-gloo-w2-after-r$r.log" 2>&1 & done; wait; record "$out/step-gloo-w2-after-r0.log"

note "a tiny job, 1 process against 2 ranks (Gloo) on the device"
job=/tmp/finetune-dist-job
rm -rf "$job" && mkdir -p "$job"
cat > "$job/job.yaml" <<EOF
apiVersion: finetune.dev/v1alpha1
kind: FineTuneJob
metadata: {name: dist-check}
spec:
  model:
    scratch: {layers: 2, embeddingDim: 64, heads: 2, contextLength: 96, seed: 5}
  dataset:
    synthetic: {size: 200, seed: 3}
    promptStyle: phi3
    maskPrompt: true
    maxLength: 96
  training: {epochs: 2, batchSize: 8, learningRate: 0.003, precision: fp32, seed: 11}
  evaluation: {enabled: false}
EOF
FINETUNE_PORT=0 "${java[@]}" dev.finetune.trainer.Main "$job/job.yaml" --output "$job/one" > "$out/job-one.log" 2>&1
port=$((port + 1))
for r in 1 0; do ranks 2 $r env FINETUNE_PORT=0 FINETUNE_DIST_BACKEND=gloo "${java[@]}" -Djava.io.tmpdir="$job/tmp$r" \
  dev.finetune.trainer.Main "$job/job.yaml" --output "$job/two" > "$out/job-two-r$r.log" 2>&1 & done; wait
python3 - "$job/one/history.jsonl" "$job/two/history.jsonl" >> "$results" <<'EOF'
import json, sys
try:
    a = [json.loads(l) for l in open(sys.argv[1])]
    b = [json.loads(l) for l in open(sys.argv[2])]
    diff = max(abs(x[k] - y[k]) for x, y in zip(a, b) for k in ("trainLoss", "validationLoss"))
    print(json.dumps({"impl": "job-1-vs-2-ranks-gloo", "epochs": [len(a), len(b)], "max_loss_diff": diff}))
except Exception as e:
    print(json.dumps({"impl": "job-1-vs-2-ranks-gloo", "error": str(e)}))
EOF
note "results in $results:"
cat "$results"
