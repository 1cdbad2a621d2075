#!/usr/bin/env bash
# End to end with the real binaries, as a lab uses them (CTest: tests/e2e):
#   cellflux-tool synth → cellflux-train prepare → cellflux-tool init-checkpoint (tiny, random)
#   → cellflux-server --controls (control bank from the prepared DMSO sites) on loopback
#   → cellflux-client info / predict (bank ref and a control folder + GCT column) / screen
#   → the Python example client (client/python/examples/cellflux_example.py on the cellflux
#     package of the checkout; tests/python covers the package itself) → SIGTERM: the server
#     drains and exits 0
#   → a second server with TLS (self-signed certificate from openssl) and a bearer token: the
#     client with --tls-ca + --auth-token-file predicts; without the token it is refused
#     (UNAUTHENTICATED); in plaintext it cannot connect.
# Every output a user would open is checked (TIFFs, composites, GCT, report with the control).
#
#   scripts/e2e_check.sh BUILD_DIR        exit 0 pass, 1 fail, 77 skip (binaries not built)
set -euo pipefail
source "$(dirname "$0")/e2e_lib.sh"
e2e_init e2e "${1:?usage: e2e_check.sh BUILD_DIR}" tool train server client

say "synthetic plates + prepare"
"$tool" synth --out "$tmp/synth" --plates 1 --compounds 6 --image-size 96x96 --sites 2 \
  --wells-per-plate 40 --l1000-plates 2 > "$tmp/synth.log" 2>&1 || { cat "$tmp/synth.log"; fail "synth"; }
"$train" prepare --images "$tmp/synth/images" --platemaps "$tmp/synth/platemaps" \
  --l1000 "$tmp/synth/l1000/replicate_level_l1k.csv" --out "$tmp/data" --test-perturbations 1 \
  --val-fraction 0 --seed 0 > "$tmp/prepare.log" 2>&1 || { cat "$tmp/prepare.log"; fail "prepare"; }
"$tool" init-checkpoint --config "$src/configs/tiny.json" --out "$tmp/ckpt" --perturbations 8 \
  > "$tmp/init.log" 2>&1 || { cat "$tmp/init.log"; fail "init-checkpoint"; }
"$tool" inspect "$tmp/ckpt" > "$tmp/inspect.txt" 2>&1 || { cat "$tmp/inspect.txt"; fail "inspect"; }
for want in cellfluxmm-tiny "step" "perturbations" "genes"; do
  grep -q "$want" "$tmp/inspect.txt" || { cat "$tmp/inspect.txt"; fail "inspect output lacks '$want'"; }
done

port=$(free_port)
addr=127.0.0.1:$port
say "cellflux-server on $addr with the control bank"
"$server" --checkpoint "$tmp/ckpt" --listen "$addr" --metrics-listen "" --controls "$tmp/data" \
  --threads 1 --max-batch 8 --drain-grace-s 20 > "$tmp/server.log" 2>&1 &
server_pid=$!
await_server "$addr"
cat "$tmp/info.txt"
dmso_sites=$("$py" -c 'import csv,sys; print(sum(len(r["site_ids"].split(";")) for r in csv.DictReader(open(sys.argv[1]))))' "$tmp/data/controls_cp.csv")
grep -q "control bank:   $dmso_sites DMSO sites" "$tmp/info.txt" || fail "info does not report $dmso_sites bank sites"
pert=$("$py" -c '
import csv, sys
print(next(csv.DictReader(open(sys.argv[1]), delimiter="\t"))["broad_id"])' "$tmp/ckpt/perturbations.tsv")
ref=$("$py" -c 'import csv,sys; r=next(csv.DictReader(open(sys.argv[1]))); print(r["plate"]+":"+r["well"])' "$tmp/data/controls_cp.csv")

say "predict from the bank ($ref) and from a control folder + GCT column"
"$client" predict --server "$addr" --perturbation "$pert" --control-ref "$ref" --samples 2 --steps 3 \
  --seed 11 --out "$tmp/pred_ref" > "$tmp/pred_ref.log" 2>&1 || { cat "$tmp/pred_ref.log"; fail "predict --control-ref"; }
for f in s0_DNA.tif s0_Mito.tif s1_composite.png; do
  [ -s "$(find "$tmp/pred_ref" -name "$f" | head -1)" ] || fail "predict --control-ref wrote no $f"
done
mkdir -p "$tmp/site"
cp "$fixtures"/bbbc047-site/*.tif "$tmp/site/"
"$client" predict --server "$addr" --perturbation "$pert" --control-dir "$tmp/site" \
  --control-expression "$fixtures/l1000/test_l1000.gct:LJP005_A375_24H_X1_B19:A03" --samples 1 --steps 3 --seed 3 \
  --out "$tmp/pred_dir" > "$tmp/pred_dir.log" 2>&1 || { cat "$tmp/pred_dir.log"; fail "predict --control-dir"; }
[ -s "$(find "$tmp/pred_dir" -name 'predictions.gct' | head -1)" ] || fail "predict --control-dir wrote no GCT"

say "screen: 6 bank rows + 1 unknown perturbation"
"$py" - "$tmp/data/controls_cp.csv" "$tmp/ckpt/perturbations.tsv" > "$tmp/plan.csv" <<'PY'
import csv, sys
wells = [r["plate"] + ":" + r["well"] for r in csv.DictReader(open(sys.argv[1]))]
perts = [r["broad_id"] for r in csv.DictReader(open(sys.argv[2]), delimiter="\t")]
print("perturbation_id,control_ref,note")
for i in range(6):
    print(f"{perts[i % len(perts)]},{wells[i % len(wells)]},row {i}")
print("BRD-NOTINVOCAB-000-00-0," + wells[0] + ",bad")
PY
set +e
"$client" screen --server "$addr" --plan "$tmp/plan.csv" --out "$tmp/screen" --steps 3 --samples 1 \
  --seed 5 --concurrency 4 --no-progress > "$tmp/screen.log" 2>&1
screen_rc=$?
set -e
[ "$screen_rc" != 0 ] || fail "screen with a bad row exited 0"
grep -q "6/7 rows done" "$tmp/screen.log" || { cat "$tmp/screen.log"; fail "screen did not finish 6 of 7 rows"; }
"$py" - "$tmp/screen" <<'PY' || fail "screen outputs"
import sys, re, os
out = sys.argv[1]
gct = open(os.path.join(out, "predictions.gct")).read().splitlines()
assert gct[0] == "#1.3", gct[0]
rows, cols = map(int, gct[1].split("\t")[:2])
assert cols == 6 and rows == 978, (rows, cols)
report = open(os.path.join(out, "report.html")).read()
controls = report.count("alt='control'")
assert controls == 6, f"report shows {controls} control panels, expected 6 (bank controls sent back)"
assert "BRD-NOTINVOCAB-000-00-0" in report and "Failures (1)" in report
print("screen outputs ok: GCT 978x6, report with 6 control panels and 1 failure")
PY

say "Python example client (the cellflux package from client/python)"
plate=${ref%%:*}; well=${ref#*:}
PYTHONPATH="$src/client/python" "$py" "$src/client/python/examples/cellflux_example.py" \
  --server "$addr" \
  --perturbation "$pert" --plate "$plate" --well "$well" --steps 3 --samples 2 --seed 9 \
  --out "$tmp/py_out" > "$tmp/py.log" 2>&1 || { cat "$tmp/py.log"; fail "python example client"; }
n_tifs=$(find "$tmp/py_out" -name '*.tif' | wc -l)
[ "$n_tifs" = 10 ] || { cat "$tmp/py.log"; fail "python client wrote $n_tifs TIFFs, expected 10 (2 samples × 5 channels)"; }

say "SIGTERM: drain and exit 0"
kill -TERM "$server_pid"
for _ in $(seq 1 60); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.5; done
kill -0 "$server_pid" 2>/dev/null && fail "server still running 30 s after SIGTERM"
wait "$server_pid" && rc=0 || rc=$?
server_pid=""
[ "$rc" = 0 ] || fail "server exited $rc after SIGTERM"

say "TLS + bearer token"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/key.pem" -out "$tmp/cert.pem" -days 2 \
  -subj /CN=localhost -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" > "$tmp/openssl.log" 2>&1 \
  || { cat "$tmp/openssl.log"; fail "openssl could not make a test certificate"; }
echo "e2e-secret-token" > "$tmp/token"
port=$(free_port)
addr=127.0.0.1:$port
"$server" --checkpoint "$tmp/ckpt" --listen "$addr" --metrics-listen "" --threads 1 \
  --tls-cert "$tmp/cert.pem" --tls-key "$tmp/key.pem" --auth-token-file "$tmp/token" \
  > "$tmp/server.log" 2>&1 &
server_pid=$!
secure=(--server "$addr" --tls-ca "$tmp/cert.pem" --auth-token-file "$tmp/token")
for _ in $(seq 1 240); do
  "$client" info "${secure[@]}" > "$tmp/info_tls.txt" 2>&1 && break
  kill -0 "$server_pid" 2>/dev/null || fail "TLS server exited during start-up"
  sleep 0.5
done
grep -q "control bank:   0" "$tmp/info_tls.txt" || { cat "$tmp/info_tls.txt"; fail "info over TLS"; }
"$client" predict "${secure[@]}" --perturbation "$pert" --control-dir "$tmp/site" \
  --control-expression "$fixtures/l1000/test_l1000.gct:LJP005_A375_24H_X1_B19:A03" --steps 2 \
  --out "$tmp/pred_tls" > "$tmp/pred_tls.log" 2>&1 || { cat "$tmp/pred_tls.log"; fail "predict over TLS with token"; }
if "$client" info --server "$addr" --tls-ca "$tmp/cert.pem" --retries 0 --deadline 10 > "$tmp/no_token.log" 2>&1; then
  fail "info without the token succeeded"
fi
grep -q "UNAUTHENTICATED" "$tmp/no_token.log" || { cat "$tmp/no_token.log"; fail "no token: expected UNAUTHENTICATED"; }
if "$client" info --server "$addr" --auth-token-file "$tmp/token" --retries 0 --deadline 10 > "$tmp/plain.log" 2>&1; then
  fail "plaintext info against the TLS server succeeded"
fi
kill -TERM "$server_pid"
wait "$server_pid" && rc=0 || rc=$?
server_pid=""
[ "$rc" = 0 ] || fail "TLS server exited $rc after SIGTERM"
say "ok"
