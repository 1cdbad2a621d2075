#!/usr/bin/env bash
# Dockerfile step (stage build-base, Debian 12): the build dependencies, installed by the very
# scripts/setup.sh that the README and CI (scripts/test.sh) run, then the apt lists are dropped.
#   scripts/docker/install-build-deps.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
run bash "$here/../setup.sh"
if [ "${CELLFLUX_IN_DOCKER:-0}" = 1 ]; then
  run rm -rf /var/lib/apt/lists/*
fi
