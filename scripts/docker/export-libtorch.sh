#!/usr/bin/env bash
# Dockerfile step (stage torch, FROM an official pytorch/pytorch:*-devel image): exports the CUDA
# LibTorch of that image (its torch/ package with the CMake config, and the nvidia/* wheels that
# hold cuDNN, cuBLAS, NCCL, ... at the relative paths torch's RPATH expects) and the CUDA toolkit
# (nvcc, headers: FindCUDAToolkit needs them to configure), so the Debian 12 build stage can link
# against them. Fails when that torch cannot be linked from Debian's C++ libraries:
#   - the pre-C++11 std::string ABI (PyTorch wheels before 2.7),
#   - no CUDA or no NCCL (cellflux-train's multi-GPU path).
#   scripts/docker/export-libtorch.sh OUT   → OUT/site/{torch,nvidia}, OUT/cuda, OUT/torch-info.txt
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
out=${1:?usage: export-libtorch.sh OUT}
py=${PYTHON:-python}
if [ "${CELLFLUX_DOCKER_DRY_RUN:-0}" = 1 ]; then
  log "dry run: would export torch, nvidia/* and the CUDA toolkit from this image to $out"
  exit 0
fi
info=$("$py" - <<'PY'
import os, sys, torch, torch.distributed as dist
abi = torch.compiled_with_cxx11_abi()
print("torch", torch.__version__)
print("cuda", torch.version.cuda)
print("cxx11_abi", int(abi))
print("nccl", int(dist.is_available() and dist.is_nccl_available()))
print("site", os.path.dirname(os.path.dirname(torch.__file__)))
print("cmake_prefix", torch.utils.cmake_prefix_path)
PY
)
echo "$info"
val() { echo "$info" | awk -v k="$1" '$1 == k {print $2}'; }
[ "$(val cxx11_abi)" = 1 ] || die "torch $(val torch) uses the pre-C++11 ABI; Debian's gRPC/absl need the C++11 ABI (use PyTorch >= 2.7)"
[ "$(val cuda)" != None ] || die "torch $(val torch) is a CPU build; use a CUDA image"
[ "$(val nccl)" = 1 ] || die "torch $(val torch) has no NCCL"
site=$(val site)
cuda=$(readlink -f "${CUDA_HOME:-/usr/local/cuda}")
[ -x "$cuda/bin/nvcc" ] || die "no nvcc under $cuda (use a -devel image)"
mkdir -p "$out/site"
cp -a "$site/torch" "$out/site/"
if [ -d "$site/nvidia" ]; then cp -a "$site/nvidia" "$out/site/"; else mkdir -p "$out/site/nvidia"; fi
# A conda-installed torch finds some libraries in the env's lib/ instead: copy those next to it.
prefix=$("$py" -c 'import sys; print(sys.prefix)')
for so in "$out"/site/torch/lib/libtorch*.so "$out"/site/torch/lib/libc10*.so; do
  while read -r name arrow path _; do
    [ "$arrow" = "=>" ] && [ "$path" = not ] || continue
    case "$name" in libcuda.so*|libnvidia-ml.so*) continue ;; esac  # the driver: from the host
    if [ -e "$prefix/lib/$name" ]; then
      cp -aL "$prefix/lib/$name" "$out/site/torch/lib/"
    else
      die "$(basename "$so") needs $name, found neither in the image's system paths nor in $prefix/lib"
    fi
  done < <(LD_LIBRARY_PATH="$out/site/torch/lib" ldd "$so")
done
[ -d /opt/conda/bin ] || log "warning: no /opt/conda in this image: the gpu-train target copies it for torchrun"
# Only what configuring and linking need from the toolkit: nvcc, headers, the target libs.
mkdir -p "$out/cuda"
for d in bin include lib64 nvvm targets version.json version.txt; do
  [ -e "$cuda/$d" ] && cp -a "$cuda/$d" "$out/cuda/"
done
# Python-only parts are useless to the C++ build; drop the big ones.
rm -rf "$out/site/torch/test" "$out/site/torch/_inductor" "$out/site/torch/testing"
echo "$info" > "$out/torch-info.txt"
log "exported $(val torch) (CUDA $(val cuda)) to $out"
