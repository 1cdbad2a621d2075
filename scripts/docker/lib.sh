# Sourced by the scripts in scripts/docker/. CELLFLUX_DOCKER_DRY_RUN=1 makes `run` print each
# command instead of running it, so CI can walk a Dockerfile step on a machine where it must not
# install or build anything (tests/deploy).
run() {
  if [ "${CELLFLUX_DOCKER_DRY_RUN:-0}" = 1 ]; then
    printf 'dry-run:'; printf ' %q' "$@"; printf '\n'
  else
    "$@"
  fi
}
log() { echo "[docker:$(basename "$0" .sh)] $*" >&2; }
die() { log "error: $*"; exit 1; }
