#!/usr/bin/env bash
# Configures and builds cellflux into ${CELLFLUX_BUILD_DIR:-build} (Ninja, ccache, PCH).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${CELLFLUX_BUILD_DIR:-build}
JOBS=${CELLFLUX_JOBS:-$(nproc)}
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@"
fi
cmake --build "$BUILD_DIR" -j "$JOBS"
