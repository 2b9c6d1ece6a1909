#!/bin/bash
# Builds the trainer's native library (finetune_native.cc -> libfinetune_native.so) against a libtorch with
# headers. It must be the libtorch DJL loads at run time (same version and C++ ABI): the trainer checks the
# version and otherwise runs without it.
#   build.sh OUT_DIR              Debian's libtorch-dev (/usr/include/torch, /usr/lib/x86_64-linux-gnu; CPU)
#   build.sh OUT_DIR TORCH_DIR    a libtorch or pip torch folder (TORCH_DIR/include, TORCH_DIR/lib); with
#                                 libtorch_cuda.so there it is built with CUDA (needs CUDA headers: CUDA_HOME,
#                                 /usr/local/cuda or the nvidia pip packages)
# FT_CXX11_ABI=0|1 overrides the C++ ABI (default: what the pip torch says, else 1).
# Then point the trainer at it: FINETUNE_NATIVE_LIB=OUT_DIR/libfinetune_native.so (or put it in the folder
# PYTORCH_LIBRARY_PATH names).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(realpath -m "${1:?usage: build.sh OUT_DIR [TORCH_DIR]}")
torch=${2:-}
jh=${JAVA_HOME:-$(dirname "$(dirname "$(readlink -f "$(command -v javac || command -v java)")")")}
[ -f "$jh/include/jni.h" ] || jh=/usr/lib/jvm/java-17-openjdk-amd64
mkdir -p "$out"
flags=(-O2 -fPIC -std=c++17 -w -I"$jh/include" -I"$jh/include/linux")
if [ -z "$torch" ]; then
  [ -f /usr/include/torch/csrc/api/include/torch/torch.h ] || { echo "no Debian libtorch-dev: apt-get install libtorch-dev" >&2; exit 1; }
  flags+=(-I/usr/include/torch/csrc/api/include -D_GLIBCXX_USE_CXX11_ABI="${FT_CXX11_ABI:-1}")
  libs=(-L/usr/lib/x86_64-linux-gnu -ltorch -ltorch_cpu -lc10)
else
  torch=$(realpath "$torch")
  abi=${FT_CXX11_ABI:-$(python3 -c 'import torch;print(int(torch._C._GLIBCXX_USE_CXX11_ABI))' 2>/dev/null || echo 1)}
  flags+=(-I"$torch/include" -I"$torch/include/torch/csrc/api/include" -D_GLIBCXX_USE_CXX11_ABI="$abi")
  libs=(-L"$torch/lib" -Wl,-rpath,"$torch/lib" -ltorch -ltorch_cpu -lc10)
  if [ -f "$torch/lib/libtorch_cuda.so" ]; then
    flags+=(-DFINETUNE_CUDA -DUSE_CUDA)
    for d in "${CUDA_HOME:-/usr/local/cuda}/include" $(python3 -c 'import nvidia,os;p=list(nvidia.__path__)[0];print(" ".join(os.path.join(p,d,"include") for d in os.listdir(p)))' 2>/dev/null); do
      [ -d "$d" ] && flags+=(-I"$d")
    done
    libs+=(-ltorch_cuda -lc10_cuda)
  fi
fi
# c10d (data-parallel training): Gloo where its headers are (Debian: libgloo-dev), NCCL with a CUDA libtorch that has
# ProcessGroupNCCL and nccl.h. Without either the library has no c10d and a job runs as one process.
inc=${torch:+$torch/include}
inc=${inc:-/usr/include}
if [ -f "$inc/gloo/algorithm.h" ] || [ -f /usr/include/gloo/algorithm.h ]; then
  flags+=(-DFT_C10D -DUSE_C10D_GLOO)
  [ -z "$torch" ] && [ -e /usr/lib/x86_64-linux-gnu/libgloo.so ] && libs+=(-lgloo)
fi
if [ -n "$torch" ] && [ -f "$torch/lib/libtorch_cuda.so" ] && [ -f "$inc/torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp" ]; then
  for d in "${flags[@]}" -I/usr/include; do
    case $d in -I*) if [ -f "${d#-I}/nccl.h" ]; then flags+=(-DFT_C10D -DUSE_C10D_NCCL -I"${d#-I}"); break; fi;; esac
  done
fi
case " ${flags[*]} " in *" -DFT_C10D "*) ;; *) echo "note: neither gloo headers (Debian: libgloo-dev) nor NCCL: built without c10d" >&2;; esac
# -z now: a library that does not match the loaded libtorch fails to load (UnsatisfiedLinkError) instead of
# crashing at the first call.
g++ "${flags[@]}" -shared -Wl,-z,now -o "$out/libfinetune_native.so" "$here/finetune_native.cc" "${libs[@]}"
echo "built $out/libfinetune_native.so; run the trainer with FINETUNE_NATIVE_LIB=$out/libfinetune_native.so"
