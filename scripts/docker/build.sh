#!/usr/bin/env bash
# Dockerfile step (stages build-cpu / build-gpu): configures and builds the four binaries with
# scripts/build.sh (the README's build), tests and benchmarks off, then stages them (stage.sh).
#   scripts/docker/build.sh cpu  SRC_DIR BUILD_DIR STAGE_DIR
#   scripts/docker/build.sh cuda SRC_DIR BUILD_DIR STAGE_DIR TORCH_EXPORT_DIR
# cuda: LibTorch from TORCH_EXPORT_DIR (export-libtorch.sh), CUDA toolkit from TORCH_EXPORT_DIR/cuda.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
variant=${1:?usage: build.sh cpu|cuda SRC BUILD STAGE [TORCH_EXPORT]}
src=${2:?} build=${3:?} stage=${4:?}
args=(-DCELLFLUX_BUILD_TESTS=OFF -DCELLFLUX_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=Release)
case "$variant" in
  cpu) ;;
  cuda)
    torch=${5:?build.sh cuda needs TORCH_EXPORT_DIR}
    args+=(-DTorch_DIR="$torch/site/torch/share/cmake/Torch" -DCUDAToolkit_ROOT="$torch/cuda"
           -DCMAKE_PREFIX_PATH="$torch/site/torch/share/cmake")
    export PATH="$torch/cuda/bin:$PATH"
    ;;
  *) die "variant must be cpu or cuda, got $variant" ;;
esac
export CELLFLUX_BUILD_DIR=$build
export CELLFLUX_JOBS=${CELLFLUX_JOBS:-$(nproc)}
export CCACHE_DISABLE=1  # a one-shot image build gains nothing from a cache it throws away
run bash "$src/scripts/build.sh" "${args[@]}"
lib_dirs=()
[ "$variant" = cuda ] && lib_dirs+=(--not-packaged "$torch/site")
run bash "$here/stage.sh" "$build" "$stage" "${lib_dirs[@]}"
