#!/bin/bash
# Syntax-checks finetune_native.cc on the paths CI's own build never compiles: CI builds it against Debian
# bookworm's libtorch 1.13 (CPU), where attention (libtorch 2.0+), fused AdamW (2.1+), the CUDA-only code
# (FINETUNE_CUDA) and c10d (FT_C10D with USE_C10D_GLOO / USE_C10D_NCCL, as build.sh defines them) are all
# preprocessed away. Here it is parsed (g++ -fsyntax-only: nothing is linked or run, so no GPU is needed) against
# Debian trixie's libtorch 2.6 headers, and for the CUDA passes trixie's CUDA 12.4 and NCCL headers (non-free,
# contrib). The .debs come from apt-get download with a private apt state and are only unpacked into the cache:
# nothing from trixie is installed.
#   check-gpu-paths.sh [CACHE_DIR]    default trainer-image/target/gpu-headers, reused once complete
# Cold, it downloads about 1.05 GB (nvidia-cuda-dev is 934 MB: the only Debian package with cuda_runtime_api.h,
# cublas_v2.h, ...) and keeps about 120 MB of headers. FT_DEBIAN_MIRROR overrides the mirror (default: the one the
# system's apt sources use for Debian). One line per pass; exits non-zero, naming the pass, on any error.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=$(realpath -m "${1:-$here/../target/gpu-headers}")
jh=${JAVA_HOME:-$(dirname "$(dirname "$(readlink -f "$(command -v javac || command -v java)")")")}
[ -f "$jh/include/jni.h" ] || jh=/usr/lib/jvm/java-17-openjdk-amd64

if [ ! -f "$cache/.complete" ]; then
  mirror=${FT_DEBIAN_MIRROR:-$(grep -hvE '^\s*#' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null |
    grep -oE 'https?://[^ ]+/debian/?(\s|$)' | head -1 | tr -d ' \t' || true)}
  mirror=${mirror:-http://deb.debian.org/debian}
  rm -rf "$cache"/{apt,debs,cpu,cuda} && mkdir -p "$cache"/{apt/lists/partial,apt/cache/archives/partial,debs,cpu,cuda}
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main contrib non-free" \
    > "$cache/apt/sources.list"
  # A private apt state: the system's sources, lists, pins and dpkg status are neither read nor touched.
  apt=(apt-get -qq -o Dir::Etc::SourceList="$cache/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null -o Dir::State::status=/dev/null
    -o Dir::State::Lists="$cache/apt/lists" -o Dir::Cache="$cache/apt/cache" -o APT::Sandbox::User="$(id -un)")
  # CI must run these checks, so an unreachable mirror is an error, never a skip.
  { "${apt[@]}" -o APT::Update::Error-Mode=any update && (cd "$cache/debs" &&
      "${apt[@]}" download libtorch-dev libtorch-cuda-dev libgloo-dev libcu++-dev nvidia-cuda-dev libnccl-dev); } ||
    { echo "check-gpu-paths: FAILED to download Debian trixie's libtorch/CUDA headers from $mirror" >&2; exit 1; }
  # libtorch-cuda-dev is libtorch-dev plus the CUDA build's config headers (c10/cuda/impl/cuda_cmake_macros.h):
  # the CPU passes use the CPU package, as a CPU libtorch would be. libcu++-dev has <nv/target> for cuda_fp16.h.
  unpack() { local root=$cache/$1 p; shift; for p; do
    dpkg-deb --fsys-tarfile "$cache"/debs/"${p}"_*.deb | tar -x -C "$root" --wildcards './usr/include/*'; done; }
  unpack cpu libtorch-dev libgloo-dev
  unpack cuda libtorch-cuda-dev libgloo-dev libcu++-dev nvidia-cuda-dev libnccl-dev
  ls "$cache/debs" > "$cache/.complete" && rm -rf "$cache/debs" "$cache/apt"
fi

# check NAME ROOT FLAGS...: parses finetune_native.cc, then fails unless the guarded code was really compiled in.
check() {
  local name=$1 inc=$cache/$2/usr/include start=$SECONDS; shift 2
  if ! g++ -std=c++17 -fsyntax-only -w -I"$jh/include" -I"$jh/include/linux" -I"$inc" \
      -I"$inc/torch/csrc/api/include" -D_GLIBCXX_USE_CXX11_ABI=1 "$@" -MD -MF "$cache/$name.d" -MT x -x c++ - \
      > "$cache/$name.log" 2>&1 <<EOF
#include "$here/finetune_native.cc"
static_assert(FT_HAS_SDPA && FT_HAS_FUSED_ADAMW, "attention / fused AdamW are not compiled in");
#if defined(FINETUNE_CUDA) && !defined(CUDART_VERSION)
#error "FINETUNE_CUDA without the CUDA runtime headers"
#endif
// The c10d headers the library uses must parse, and their classes exist, in these passes.
#ifdef FT_C10D
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif
#ifdef USE_C10D_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
static_assert(sizeof(c10d::ProcessGroupGloo) > 0, "");
#endif
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
static_assert(sizeof(c10d::ProcessGroupNCCL) > 0, "");
#endif
EOF
  then
    echo "check-gpu-paths: FAILED $name ($*):" >&2
    grep -m 20 -E 'error|required from' "$cache/$name.log" >&2 || tail -20 "$cache/$name.log" >&2
    return 1
  fi
  # A header trixie's packages lack would silently come from the system (bookworm's libtorch 1.13 in /usr/include).
  local f t leaks=()
  for f in $(sed 's/\\$//' "$cache/$name.d" | tr ' ' '\n' | grep '^/usr/include/'); do
    t=${f#/usr/include/}; [ -e "$inc/${t%%/*}" ] && leaks+=("$f")
  done
  [ ${#leaks[@]} -eq 0 ] || { echo "check-gpu-paths: FAILED $name: system headers used: ${leaks[*]}" >&2; return 1; }
  echo "check-gpu-paths: ok $name ($*) $((SECONDS - start))s"
}

# The passes run in parallel (each about 20 s of CPU and 1.2 GB of memory); all are reported, then any failure fails.
pids=()
check cpu cpu & pids+=($!)
check c10d-gloo cpu -DFT_C10D -DUSE_C10D_GLOO & pids+=($!)
check cuda cuda -DFINETUNE_CUDA -DUSE_CUDA & pids+=($!)
check cuda-c10d-nccl cuda -DFINETUNE_CUDA -DUSE_CUDA -DFT_C10D -DUSE_C10D_GLOO -DUSE_C10D_NCCL & pids+=($!)
rc=0; for p in "${pids[@]}"; do wait "$p" || rc=1; done
[ $rc -eq 0 ] && echo "check-gpu-paths: all passes ok against" \
  "$(grep -o '^libtorch-dev_[^_]*' "$cache/.complete"), $(grep -o '^nvidia-cuda-dev_[^_]*' "$cache/.complete")"
exit $rc
