#!/usr/bin/env bash
# Stages what the runtime image needs from a build dir, and nothing else:
#   STAGE/root/usr/local/bin/{cellflux-server,cellflux-client,cellflux-tool,cellflux-train}
#   STAGE/root/usr/local/bin/cellflux-healthcheck       (grpc_health_check.py)
#   STAGE/runtime-packages.txt   Debian packages owning the shared libraries the binaries load
# Libraries under a --not-packaged DIR (the CUDA LibTorch) are not looked up in dpkg: the image
# copies that DIR itself. Any other library that no package owns is an error (it would be missing
# at run time). CI runs this against its own build (tests/deploy), the image against its build.
#   scripts/docker/stage.sh BUILD_DIR STAGE_DIR [--not-packaged DIR]...
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
build=${1:?usage: stage.sh BUILD_DIR STAGE_DIR [--not-packaged DIR]...}
stage=${2:?}
shift 2
skip=()
while [ $# -gt 0 ]; do
  case "$1" in
    --not-packaged) skip+=("$(readlink -f "$2")"); shift 2 ;;
    *) die "unknown argument $1" ;;
  esac
done
if [ "${CELLFLUX_DOCKER_DRY_RUN:-0}" = 1 ]; then
  log "dry run: would stage binaries from $build into $stage"
  exit 0
fi
bins=(server/cellflux-server client/cellflux-client common/tools/cellflux-tool trainer/cellflux-train)
mkdir -p "$stage/root/usr/local/bin"
found=0
for b in "${bins[@]}"; do
  if [ -x "$build/$b" ]; then
    install -m 0755 "$build/$b" "$stage/root/usr/local/bin/"
    found=$((found + 1))
  elif [ "${CELLFLUX_STAGE_ALLOW_MISSING:-0}" = 1 ]; then
    log "warning: $build/$b not built; skipped"
  else
    die "$build/$b not built"
  fi
done
[ "$found" -gt 0 ] || die "no binary in $build"
install -m 0755 "$here/grpc_health_check.py" "$stage/root/usr/local/bin/cellflux-healthcheck"

# Shared libraries → owning Debian packages. The LD_LIBRARY_PATH of the build (CUDA LibTorch)
# must be set by the caller so ldd resolves them; unresolved libraries fail the stage.
# One `dpkg -S` per library took ~1 s each here (>300 s for the four binaries), so the owners are
# found in one pass: every form of every path (as ldd prints it, resolved, without /usr under
# merged /usr) is matched against dpkg's file lists at once.
declare -A libs=()   # ldd path -> resolved path
missing=0
for f in "$stage"/root/usr/local/bin/cellflux-*; do
  [ "$(head -c 4 "$f" | od -An -c | tr -d ' ')" = 177ELF ] || continue
  while read -r name arrow path _; do
    [ "$arrow" = "=>" ] || continue
    if [ "$path" = "not" ]; then
      log "$(basename "$f"): $name not found"; missing=1; continue
    fi
    real=$(readlink -f "$path")
    skipped=0
    for s in "${skip[@]}"; do case "$real" in "$s"/*) skipped=1 ;; esac; done
    [ "$skipped" = 1 ] || libs["$path"]=$real
  done < <(ldd "$f")
done
forms=$(mktemp); owners=$(mktemp)
trap 'rm -f "$forms" "$owners"' EXIT
for path in "${!libs[@]}"; do
  real=${libs[$path]}
  printf '%s\n' "$path" "$real" "${real#/usr}" "${path#/usr}" "/usr$path"
done | sort -u > "$forms"
# "/var/lib/dpkg/info/PKG[:ARCH].list:/a/path" for every listed form.
grep -F -x -f "$forms" /var/lib/dpkg/info/*.list > "$owners" || true
declare -A owner_of=() pkgs=()
while IFS= read -r line; do
  file=${line%%.list:*}; pkg=$(basename "$file"); pkg=${pkg%%:*}
  owner_of["${line#*.list:}"]=$pkg
done < "$owners"
for path in "${!libs[@]}"; do
  real=${libs[$path]}
  owner=""
  for form in "$path" "$real" "${real#/usr}" "${path#/usr}" "/usr$path"; do
    [ -n "${owner_of[$form]:-}" ] && { owner=${owner_of[$form]}; break; }
  done
  if [ -z "$owner" ]; then
    log "$real belongs to no Debian package"; missing=1; continue
  fi
  pkgs["$owner"]=1
done
[ "$missing" = 0 ] || die "unresolved shared libraries (see above)"
printf '%s\n' "${!pkgs[@]}" | sort > "$stage/runtime-packages.txt"
log "staged $found binaries; $(wc -l < "$stage/runtime-packages.txt") runtime packages"
