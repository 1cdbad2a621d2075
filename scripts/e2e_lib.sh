# Shared by the end-to-end checks (scripts/e2e_check.sh, scripts/e2e_smiles_check.sh); sourced,
# not run. e2e_init TAG BUILD_DIR BINARY...: sets build, src, py, tool, train, server, client,
# fixtures; say/fail print "[TAG] ..."; exits 77 (CTest skip) when a named binary is not built;
# makes $tmp and a trap that kills $server_pid, prints the server log's tail on failure and
# removes $tmp.
e2e_init() {
  E2E_TAG=$1
  build=$(cd "$2" && pwd)
  shift 2
  src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  py=/usr/bin/python3
  tool=$build/common/tools/cellflux-tool
  train=$build/trainer/cellflux-train
  server=$build/server/cellflux-server
  client=$build/client/cellflux-client
  fixtures=$src/tests/fixtures
  for b in "$@"; do
    [ -x "${!b}" ] || { say "SKIP: ${!b} not built"; exit 77; }
  done
  tmp=$(mktemp -d -t "cellflux-$E2E_TAG.XXXXXX")
  server_pid=""
  trap e2e_cleanup EXIT
}
say() { echo "[$E2E_TAG] $*"; }
fail() { say "FAIL: $*"; exit 1; }
e2e_cleanup() {
  local rc=$?
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then kill -9 "$server_pid" 2>/dev/null || true; fi
  if [ "$rc" != 0 ] && [ -f "$tmp/server.log" ]; then say "--- server.log (last 30 lines)"; tail -n 30 "$tmp/server.log"; fi
  rm -rf "$tmp"
  exit "$rc"
}
free_port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# await_server ADDR: until `cellflux-client info` answers (its output in $tmp/info.txt); fails when
# $server_pid exits first.
await_server() {
  for _ in $(seq 1 240); do
    "$client" info --server "$1" > "$tmp/info.txt" 2>/dev/null && return 0
    kill -0 "$server_pid" 2>/dev/null || fail "server exited during start-up"
    sleep 0.5
  done
  fail "server did not answer on $1 in 120 s"
}
