#!/usr/bin/env bash
# The README's test command: set-up (if needed), configure, build, then the whole CTest suite.
#   scripts/test.sh                 # everything
#   scripts/test.sh -R Safetensors  # extra arguments go to ctest
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
cd "${CELLFLUX_BUILD_DIR:-build}"
ctest --output-on-failure --timeout 600 -j "${CELLFLUX_TEST_JOBS:-2}" "$@"
