#!/usr/bin/env bash
# Checkpoint promotion against the real server (CTest deploy_promote):
#   1. cellflux-tool promote A → MODELS_DIR; cellflux-server --checkpoint MODELS_DIR/current
#      --watch-checkpoint-s 1
#   2. three clients send predictions back to back (no retries) while B is promoted: the server
#      reports B's model id, and not one request failed
#   3. a corrupt checkpoint (truncated weights) is refused: exit 2, `current` and the served model
#      unchanged, nothing added under versions/
#   4. promote --rollback: the server serves A again
# Exit 0 pass, 1 fail, 77 skip (binaries not built).
set -euo pipefail
build=$(cd "${1:?usage: promote_check.sh BUILD_DIR}" && pwd)
src=$(cd "$(dirname "$0")/.." && pwd)
py=/usr/bin/python3
tool=$build/common/tools/cellflux-tool
server=$build/server/cellflux-server
client=$build/client/cellflux-client
fixtures=$src/tests/fixtures

say() { echo "[promote] $*"; }
fail() { say "FAIL: $*"; exit 1; }
for b in "$tool" "$server" "$client"; do
  [ -x "$b" ] || { say "SKIP: $b not built"; exit 77; }
done

tmp=$(mktemp -d -t cellflux-promote.XXXXXX)
server_pid=""
cleanup() {
  local rc=$?
  touch "$tmp/stop" 2>/dev/null || true
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then kill -9 "$server_pid" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  if [ "$rc" != 0 ] && [ -f "$tmp/server.log" ]; then say "--- server.log (last 40 lines)"; tail -n 40 "$tmp/server.log"; fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT

model_id() { sed -n 's/^model_id: //p' "$1"; }
for run in a b; do
  "$tool" init-checkpoint --config "$src/configs/tiny.json" --out "$tmp/run-$run/step-1" \
    --perturbations 4 --seed "$([ $run = a ] && echo 1 || echo 2)" > "$tmp/init-$run.log" 2>&1 \
    || { cat "$tmp/init-$run.log"; fail "init-checkpoint $run"; }
  "$tool" inspect "$tmp/run-$run/step-1" > "$tmp/inspect-$run.txt"
done
id_a=$(model_id "$tmp/inspect-a.txt"); id_b=$(model_id "$tmp/inspect-b.txt")
[ -n "$id_a" ] && [ "$id_a" != "$id_b" ] || fail "expected two different model ids, got '$id_a' '$id_b'"
models=$tmp/models
"$tool" promote "$tmp/run-a/step-1" "$models" || fail "promote A"
[ "$(readlink "$models/current")" = "versions/$id_a" ] || fail "current -> $(readlink "$models/current")"

port=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
addr=127.0.0.1:$port
say "cellflux-server on $addr serving $models/current (A = $id_a)"
"$server" --checkpoint "$models/current" --watch-checkpoint-s 1 --listen "$addr" --metrics-listen "" \
  --threads 1 --max-batch 8 > "$tmp/server.log" 2>&1 &
server_pid=$!
served() { "$client" info --server "$addr" 2>/dev/null | sed -n 's/^model: *\([^ ]*\).*/\1/p'; }
wait_for_model() {  # $1 = model id, $2 = seconds
  for _ in $(seq 1 $(($2 * 2))); do
    [ "$(served)" = "$1" ] && return 0
    kill -0 "$server_pid" 2>/dev/null || fail "server exited"
    sleep 0.5
  done
  fail "server did not serve $1 within $2 s (serves '$(served)')"
}
wait_for_model "$id_a" 120

mkdir -p "$tmp/site"
cp "$fixtures"/bbbc047-site/*.tif "$tmp/site/"
pert=BRD-K00000001-001-01-1
load() {  # $1 = client number; one line per request: exit code
  local i=0
  while [ ! -e "$tmp/stop" ]; do
    i=$((i + 1))
    if "$client" predict --server "$addr" --perturbation "$pert" --control-dir "$tmp/site" \
        --control-expression "$fixtures/l1000/test_l1000.gct:LJP005_A375_24H_X1_B19:A03" \
        --samples 1 --steps 2 --seed "$i" --retries 0 --out "$tmp/out-$1" > "$tmp/load-$1.log" 2>&1; then
      echo 0 >> "$tmp/codes-$1"
    else
      echo 1 >> "$tmp/codes-$1"; cp "$tmp/load-$1.log" "$tmp/failed-$1-$i.log"
    fi
  done
}
count() { cat "$tmp"/codes-* 2>/dev/null | wc -l; }
for c in 1 2 3; do load $c & done
until [ "$(count)" -ge 3 ]; do sleep 0.5; done
say "under load ($(count) requests so far): promote B = $id_b"
echo step-1 > "$tmp/run-b/latest"  # a training root: promote follows `latest` like the server
"$tool" promote "$tmp/run-b" "$models" 2>&1 | tee "$tmp/promote-b.log" || fail "promote B"
[ "$(readlink "$models/previous")" = "versions/$id_a" ] || fail "previous -> $(readlink "$models/previous")"
wait_for_model "$id_b" 120
before=$(count)
until [ "$(count)" -ge $((before + 6)) ]; do sleep 0.5; done
touch "$tmp/stop"
wait $(jobs -p | grep -v "^$server_pid$") 2>/dev/null || true
total=$(count); failed=$(cat "$tmp"/codes-* | grep -c 1 || true)
say "$total requests across the promotion, $failed failed"
if [ "$failed" != 0 ]; then cat "$tmp"/failed-*.log | tail -n 20; fail "$failed requests failed during the promotion"; fi
grep -q "checkpoint changed" "$tmp/server.log" || fail "server log does not mention the change"

say "a corrupt checkpoint is refused and nothing changes"
cp -r "$tmp/run-b/step-1" "$tmp/corrupt"
truncate -s 1000 "$tmp/corrupt/model.safetensors"
ls "$models/versions" > "$tmp/versions-before"
set +e
"$tool" promote "$tmp/corrupt" "$models" > "$tmp/promote-corrupt.log" 2>&1
rc=$?
set -e
cat "$tmp/promote-corrupt.log"
[ "$rc" = 2 ] || fail "promote of a corrupt checkpoint exited $rc, expected 2"
grep -q "model.safetensors" "$tmp/promote-corrupt.log" || fail "the refusal does not name model.safetensors"
[ "$(readlink "$models/current")" = "versions/$id_b" ] || fail "current changed to $(readlink "$models/current")"
[ "$(readlink "$models/previous")" = "versions/$id_a" ] || fail "previous changed"
ls "$models/versions" | diff - "$tmp/versions-before" || fail "versions/ changed"
ls -a "$models/versions" | grep -q '\.tmp-' && fail "a temp copy was left in versions/"
[ "$(served)" = "$id_b" ] || fail "server no longer serves B"

say "rollback"
"$tool" promote --rollback "$models" || fail "rollback"
wait_for_model "$id_a" 120
kill -TERM "$server_pid"; wait "$server_pid" || true; server_pid=""
say "ok: promotion under load with 0 failed of $total requests; corrupt refused; rollback served A"
