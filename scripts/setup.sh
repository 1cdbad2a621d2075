#!/usr/bin/env bash
# Installs every Debian package cellflux needs to build, test and run. Idempotent: packages that
# are already installed are skipped, so re-running costs a dpkg query.
# Used by the README, .ci/run (through scripts/test.sh) and the Dockerfile's CPU target.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git
  libtorch-dev libopenblas0-openmp libboost-dev librdkit-dev python3-rdkit
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libopencv-dev prometheus-cpp-dev libmicrohttpd-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  nlohmann-json3-dev libhdf5-dev libyaml-cpp-dev libcli11-dev zlib1g-dev
  python3 python3-torch python3-numpy python3-scipy python3-grpcio python3-protobuf
  prometheus clang clang-format libclang-rt-14-dev
  docker-compose python3-yaml libgloo-dev openssl
  python3-venv python3-pip python3-setuptools python3-pandas python3-anndata
)
# The headless browser for scripts/check_report.sh is optional (large): CELLFLUX_SETUP_BROWSER=1.
if [ "${CELLFLUX_SETUP_BROWSER:-0}" = 1 ]; then PACKAGES+=(chromium); fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages present"
  exit 0
fi

echo "setup: installing ${#missing[@]} packages: ${missing[*]}"
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "setup: done"
