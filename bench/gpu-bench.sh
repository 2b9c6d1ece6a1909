#!/usr/bin/env bash
# The GPU figures in one go (issue 15): the trainer in fp32, tf32 and bf16 beside PyTorch (gpu_reference.py) in the
# same modes on GPT-2 124M (8 x 1024) and gpt2-medium (8 x 256); then the chapter-7 job (ch07 data, a randomly
# initialised gpt2-medium in HF layout, batch 8, 2 epochs, evaluation on) in fp32 and bf16: seconds per epoch,
# generation tokens/s, final validation loss. Results: one JSON line per figure in $OUT/gpu-bench.jsonl (OUT
# defaults to bench/gpu-results), logs beside it.
#
# 1. Here (with ../shared):   mvn -B -DskipTests package && bench/gpu-bench.sh --prepare
#    (../shared/gpu/prepare.sh's .gpu-bundle/ plus the ch07 data and the GPT-2 tokenizer)
# 2. On the GPU machine, carrying .gpu-bundle:   bash bench/gpu-bench.sh
#    It runs itself under .gpu-bundle/on-gpu.sh (Java runtime, DJL's JNI built against that machine's PyTorch),
#    builds trainer-image/native against the same PyTorch, checks the native kernels against DJL's operations,
#    then measures. About 8 minutes on an H200.
# Smaller runs: SHAPES="256 4 4 128 8" (n_embd layers heads seq batch; ';' between shapes), CH07_EMBD/CH07_LAYERS/
# CH07_HEADS for the chapter-7 model, CH07_RECORDS to cut the data, MODES="fp32 bf16", STEPS=10; LLAMA and
# LLAMA_MODES for the Llama LoRA figure.
# bench/gpu-bench.sh --cpu runs the same sequence on this machine's CPU with tiny shapes (no PyTorch peer unless
# python3 has torch with CUDA), to test the script.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bundle=$root/.gpu-bundle

if [ "${1:-}" = --prepare ]; then
  set -e
  bash ../shared/gpu/prepare.sh
  mkdir -p "$bundle/fixtures"
  cp ../shared/fixtures/ch07/instruction-data.json ../shared/fixtures/gpt2-tokenizer/tokenizer.json "$bundle/fixtures/"
  cp ../shared/bench/gpu_reference.py "$bundle/"
  du -sh "$bundle"
  exit 0
fi

cpu=false
if [ "${1:-}" = --cpu ]; then
  cpu=true
  export APP_CP="$root/trainer-image/target/finetune-trainer.jar:$root/trainer-image/target/lib/*" DJL_OFFLINE=true
  SHAPES=${SHAPES:-"64 2 2 32 2"}
  CH07_EMBD=${CH07_EMBD:-32} CH07_LAYERS=${CH07_LAYERS:-1} CH07_HEADS=${CH07_HEADS:-2} CH07_RECORDS=${CH07_RECORDS:-60}
  CH07_NEW_TOKENS=${CH07_NEW_TOKENS:-8} STEPS=${STEPS:-2} WARMUP=${WARMUP:-1} LLAMA=${LLAMA:-"8000 64 2 4 2 172 32 2"}
  fixtures=${FIXTURES:-$root/../shared/fixtures}
  data=$fixtures/ch07/instruction-data.json tokenizer=$fixtures/gpt2-tokenizer/tokenizer.json
elif [ -z "${APP_CP:-}" ]; then
  [ -f "$bundle/on-gpu.sh" ] || { echo "no .gpu-bundle: run bench/gpu-bench.sh --prepare here first" >&2; exit 1; }
  exec bash "$bundle/on-gpu.sh" bash "$0" "$@"
else
  data=$bundle/fixtures/instruction-data.json tokenizer=$bundle/fixtures/tokenizer.json
fi

out=${OUT:-$root/bench/gpu-results}
mkdir -p "$out"
results=$out/gpu-bench.jsonl
: > "$results"
SHAPES=${SHAPES:-"768 12 12 1024 8;1024 24 16 256 8"}
MODES=${MODES:-"fp32 tf32 bf16"}
STEPS=${STEPS:-10} WARMUP=${WARMUP:-3}
java=(java -Xmx24g -XX:+ExitOnOutOfMemoryError -cp "$APP_CP")
$cpu && java=(java -Xmx4g -cp "$APP_CP")
note() { echo "gpu-bench: $*" >&2; }
record() { grep -h '^{' "$@" >> "$results" || true; }

# The trainer's native library, against the PyTorch DJL runs here (with --cpu: whatever FINETUNE_NATIVE_LIB and
# PYTORCH_LIBRARY_PATH the caller set, e.g. the Debian build of .ci/run).
if ! $cpu; then
  torch_dir=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')
  if bash trainer-image/native/build.sh /tmp/finetune-native "$torch_dir" > "$out/native-build.log" 2>&1; then
    export FINETUNE_NATIVE_LIB=/tmp/finetune-native/libfinetune_native.so
  else
    note "the native library did not build (see native-build.log): bf16 runs will fail, fp32 runs go on"
  fi
fi
"${java[@]}" dev.finetune.trainer.nativelib.NativeCheck > "$out/native-check.log" 2>&1
note "native kernels: $(tail -1 "$out/native-check.log")"
record "$out/native-check.log"

has_cuda_torch=$(python3 -c 'import torch;print(int(torch.cuda.is_available()))' 2>/dev/null || echo 0)
IFS=';' read -ra shapes <<< "$SHAPES"
for shape in "${shapes[@]}"; do
  read -r d l h t b <<< "$shape"
  args=(--n-embd "$d" --n-layer "$l" --n-head "$h" --seq "$t" --batch "$b" --steps "$STEPS" --warmup "$WARMUP")
  name=d$d-l$l-t$t-b$b
  if [ "$has_cuda_torch" = 1 ]; then
    note "PyTorch $name: $MODES"
    python3 "$bundle/gpu_reference.py" "${args[@]}" --modes "$(echo "$MODES" | tr ' ' ',')" > "$out/pytorch-$name.log" 2>&1
    record "$out/pytorch-$name.log"
  fi
  for mode in $MODES; do
    note "trainer $name $mode"
    "${java[@]}" dev.finetune.trainer.Bench "${args[@]}" --precision "$mode" > "$out/trainer-$name-$mode.log" 2>&1
    record "$out/trainer-$name-$mode.log"
  done
done

# LoRA on the Llama family (issue 13): a random Llama 3.2 1B shape, rank 16 on every projection, base frozen:
# tokens/s and device memory. LLAMA="vocab n_embd layers heads kv_heads intermediate seq batch".
read -r lv ld ll lh lkv lff lt lb <<< "${LLAMA:-128256 2048 16 32 8 8192 512 8}"
for mode in ${LLAMA_MODES:-bf16 tf32}; do
  note "trainer llama d$ld-l$ll LoRA r16 $mode"
  "${java[@]}" dev.finetune.trainer.Bench --arch llama --vocab "$lv" --n-embd "$ld" --n-layer "$ll" --n-head "$lh" \
    --n-kv-head "$lkv" --intermediate "$lff" --seq "$lt" --batch "$lb" --lora 16 --steps "$STEPS" --warmup "$WARMUP" \
    --precision "$mode" > "$out/trainer-llama-lora-$mode.log" 2>&1
  record "$out/trainer-llama-lora-$mode.log"
done

# Chapter 7: a random gpt2-medium in HF layout with the GPT-2 tokenizer, the chapter's data and settings.
ch07=/tmp/finetune-ch07
rm -rf "$ch07" && mkdir -p "$ch07"
"${java[@]}" dev.finetune.trainer.Bench --random-model "$ch07/gpt2-medium" --tokenizer "$tokenizer" \
  --n-embd "${CH07_EMBD:-1024}" --n-layer "${CH07_LAYERS:-24}" --n-head "${CH07_HEADS:-16}" --seq 1024 > "$out/ch07-model.log" 2>&1 \
  || note "could not write the chapter-7 model (see ch07-model.log)"
python3 - "$data" "$ch07/instruction-data.json" "${CH07_RECORDS:-0}" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
n = int(sys.argv[3])
json.dump(d[:n] if n else d, open(sys.argv[2], "w"))
EOF
for mode in ${CH07_MODES:-fp32 bf16}; do
  cat > "$ch07/job-$mode.yaml" <<EOF
apiVersion: finetune.dev/v1alpha1
kind: FineTuneJob
metadata:
  name: ch07-$mode
spec:
  model:
    path: gpt2-medium
  dataset:
    path: instruction-data.json
    promptStyle: alpaca
    maxLength: 1024
  training:
    epochs: 2
    batchSize: 8
    learningRate: 5.0e-5
    weightDecay: 0.1
    precision: $mode
  evaluation:
    maxNewTokens: ${CH07_NEW_TOKENS:-256}
EOF
  note "chapter 7 in $mode"
  start=$(date +%s)
  "${java[@]}" dev.finetune.trainer.Main "$ch07/job-$mode.yaml" --output "$ch07/run-$mode" > "$out/ch07-$mode.log" 2>&1
  rc=$?
  python3 - "$ch07/run-$mode" "$out/ch07-$mode.log" "$mode" "$rc" "$(( $(date +%s) - start ))" >> "$results" <<'EOF'
import json, os, re, sys
run, log, mode, rc, wall = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
r = {"impl": "trainer-ch07-" + mode, "exit_code": rc, "wall_s": wall}
try:
    s = json.load(open(os.path.join(run, "summary.json")))
    r.update({k: s.get(k) for k in ("precision", "device", "validationLoss", "bestValidationLoss")})
    r["seconds_per_epoch"] = [round(h.get("seconds", 0), 1) for h in s.get("history", [])]
except Exception as e:
    r["error"] = "no summary.json: %s" % e
m = re.findall(r"generated (\d+) new tokens in ([0-9.]+) s \(([0-9.]+) tokens/s\)", open(log).read())
if m:
    r.update({"generated_tokens": int(m[-1][0]), "generation_s": float(m[-1][1]), "generation_tokens_per_s": float(m[-1][2])})
print(json.dumps(r))
EOF
done
note "results in $results:"
cat "$results"
