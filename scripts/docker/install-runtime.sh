#!/usr/bin/env bash
# Dockerfile step (targets cpu / gpu): installs exactly the Debian packages listed by stage.sh
# (the owners of the libraries the binaries load), python3-grpcio for the HEALTHCHECK, and
# creates the unprivileged user `cellflux` (uid/gid 10001) that the image runs as.
#   scripts/docker/install-runtime.sh RUNTIME_PACKAGES_TXT
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
list=${1:?usage: install-runtime.sh RUNTIME_PACKAGES_TXT}
mapfile -t pkgs < <(grep -v '^\s*\(#\|$\)' "$list")
# The runtime never needs the -dev packages; a library listed from one would be a staging bug.
for p in "${pkgs[@]}"; do
  case "$p" in *-dev) die "$list lists a -dev package ($p)" ;; esac
done
pkgs+=(python3-grpcio ca-certificates tini)
log "installing ${#pkgs[@]} packages: ${pkgs[*]}"
export DEBIAN_FRONTEND=noninteractive
run apt-get update -q
run apt-get install -y -q --no-install-recommends "${pkgs[@]}"
run rm -rf /var/lib/apt/lists/*
if ! getent passwd cellflux >/dev/null; then
  run groupadd --gid 10001 cellflux
  run useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin cellflux
fi
run install -d -o 10001 -g 10001 /models /data
