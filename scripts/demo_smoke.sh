#!/usr/bin/env bash
# The README's first command (scripts/demo.sh) on a small setting, so it cannot rot (CTest:
# tests/e2e demo_smoke): 2 synthetic plates, a few training steps per stage, a 4-row screen, into
# a scratch output folder. Checks the summary, the outputs it names, that re-running reuses every
# trained stage, and that no server is left running.
#
#   scripts/demo_smoke.sh BUILD_DIR        exit 0 pass, 1 fail, 77 skip (binaries not built)
set -euo pipefail
build=$(cd "${1:?usage: demo_smoke.sh BUILD_DIR}" && pwd)
src=$(cd "$(dirname "$0")/.." && pwd)
say() { echo "[demo-smoke] $*"; }
fail() { say "FAIL: $*"; exit 1; }
[ -x "$build/server/cellflux-server" ] || { say "SKIP: binaries not built in $build"; exit 77; }
out=$(mktemp -d -t cellflux-demo-smoke.XXXXXX)
trap 'rm -rf "$out"' EXIT
args=(--plates 2 --compounds 32 --screen-rows 4
      --set gene_ae.steps=30 --set vae.steps=10 --set flow.steps=20 --set flow.val_every=10
      --set flow.checkpoint_every=10 --set flow.val_pairs=8 --set eval.num_steps=4
      --set eval.samples_per_pair=2 --set eval.sample_sizes=[8])
run() { CELLFLUX_DEMO_OUT="$out/demo" CELLFLUX_BUILD_DIR="$build" bash "$src/scripts/demo.sh" "${args[@]}"; }

run > "$out/first.log" 2>&1 || { cat "$out/first.log"; fail "demo.sh failed"; }
grep -q "cellflux demo: done" "$out/first.log" || { cat "$out/first.log"; fail "no summary"; }
for f in screen/report.html screen/predictions.gct run/eval/metrics.json run/eval/figure.png \
         run/eval/report.html run/eval/per_compound.csv run-unseen/eval/metrics.json \
         run-unseen/eval/report.html; do
  [ -s "$out/demo/$f" ] || fail "missing $f"
done
for line in "gene Pearson-Δ" "gene MAE" "morph Pearson-Δ" "retrieval both" "model wins" "image FD" "image KD" "over training" "throughput" "main job" "unseen compounds" "nearest_seen"; do
  grep -q "$line" "$out/first.log" || fail "summary lacks '$line'"
done
rows=$(grep -c "" "$out/demo/screen/results.csv")
[ "$rows" -eq 5 ] || fail "results.csv has $rows lines, expected a header and 4 rows"
if pgrep -f "cellflux-server --checkpoint $out" > /dev/null; then fail "server left running"; fi

# Re-run: every training stage is up to date, nothing is trained again.
run > "$out/second.log" 2>&1 || { cat "$out/second.log"; fail "second demo.sh failed"; }
grep -q "over training" "$out/second.log" || fail "re-run summary lost the validation history"
for stage in gene-ae vae encode; do
  grep -q "$stage: up to date" "$out/second.log" || fail "re-run trained $stage again"
done
grep -q "flow: resumed from .* at step 20" "$out/demo/logs/flow.log" || {
  tail -5 "$out/demo/logs/flow.log"; fail "re-run did not resume flow at its last step"; }
# The README's multi-process launch (2 Gloo ranks on this CPU) continues the same run by 4 steps.
# From the source root, as the README runs it (configs/demo.yaml names configs/tiny.json relative
# to it; CTest starts this script in the build tree). A free port, as CTest runs tests in parallel.
port=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
(cd "$src" && /usr/bin/python3 -m torch.distributed.run --redirects 2 --tee 2 --no_python --nproc_per_node=2 \
  --master_port "$port" "$build/trainer/cellflux-train" flow --config configs/demo.yaml \
  --data-dir "$out/demo/data" --work-dir "$out/demo/run" --resume "${args[@]:6}" --set flow.steps=24) \
  > "$out/dist.log" 2>&1 || {
  grep "cellflux-train\|Error" "$out/dist.log" | tail -20; fail "torch.distributed.run flow failed"; }
for r in 0 1; do grep -q "distributed: rank $r/2" "$out/dist.log" || fail "rank $r did not start"; done
[ -d "$out/demo/run/checkpoints/step-0000024" ] || fail "2-rank run wrote no step-24 checkpoint"
say "PASS"
