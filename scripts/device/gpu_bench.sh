#!/usr/bin/env bash
# Issue 17's GPU measurements in one call (≤ 8 minutes with the build). Same machine setup as
# scripts/device/gpu_check.sh (PyTorch's LibTorch + CUDA there, cellflux's other dependencies from
# .devkit/, made here by scripts/device/make_kit.sh); it builds build-gpu/ through gpu_check.sh's
# build step (CELLFLUX_CHECK_BUILD_ONLY=1) plus sit_forward_bench, then, each step bounded in time
# and the next one run whatever happened:
#   p  reference parity on the device: cellflux-tool sit-forward / vae-encode / vae-decode on the
#      PyTorch goldens, fp32 and bf16, attention math and fused (scripts/device/parity_check.py)
#   s  SiT forward of the paper config (SiT-XL/2, 256 + 16 tokens) at 2/32/64/128 rows: C++ fp32 /
#      tf32 / bf16 vs PyTorch eager bf16 + SDPA and torch.compile; TFLOP/s, % of dense bf16 peak
#      (bench/sit_forward_gpu_bench.py)
#   o  offline sampler, paper config, 50 steps, guidance 1.2, end to end with encode and decode:
#      bf16 at batch 64 (samples/s), and max |bf16 − fp32| after 50 steps at batch 8
#   v  server at c = 16 / 64 (step batching, --max-batch 64) vs the offline sampler, p50/p95:
#      paper config (50 steps), then the tiny config (20 steps)
# Writes to $OUT (default out/gpu-bench): summary.txt (PASS/FAIL/SKIP per step, with the tables),
# bench.log (everything), sit_forward.json, load_paper.json, load_tiny.json, build/ (gpu_check.sh's
# build.log, summary.txt). Exit 1 when a step failed.
#
#   bash scripts/device/gpu_bench.sh                        # on the GPU machine
#   CELLFLUX_CHECK_DEVICE=cpu CELLFLUX_BENCH_SIZE=tiny CELLFLUX_CHECK_BUILD=build \
#     CELLFLUX_BENCH_NO_BUILD=1 bash scripts/device/gpu_bench.sh   # trying it here, tiny sizes
#
# Environment: CELLFLUX_CHECK_DEVICE (cuda:0), CELLFLUX_BENCH_BUDGET_S (seconds for everything,
# build included: 470), CELLFLUX_CHECK_BUILD (build-gpu), CELLFLUX_BENCH_NO_BUILD (1: use the
# binaries in CELLFLUX_CHECK_BUILD as they are), CELLFLUX_BENCH_SIZE (paper; tiny = configs/tiny.json
# and small batches everywhere, for a CPU), CELLFLUX_BENCH_PEAK_TFLOPS (0: from the GPU name),
# CELLFLUX_BENCH_SKIP (comma-separated steps to leave out), and gpu_check.sh's build variables.
set -uo pipefail
cd "$(dirname "$0")/../.."
SRC=$(pwd)
OUT=${OUT:-$SRC/out/gpu-bench}
mkdir -p "$OUT"
DEV=${CELLFLUX_CHECK_DEVICE:-cuda:0}
BUDGET=${CELLFLUX_BENCH_BUDGET_S:-470}
BUILD=${CELLFLUX_CHECK_BUILD:-$SRC/build-gpu}
SIZE=${CELLFLUX_BENCH_SIZE:-paper}
PEAK=${CELLFLUX_BENCH_PEAK_TFLOPS:-0}
T0=$(date +%s)
exec > >(tee -a "$OUT/bench.log") 2>&1
SUMMARY=$OUT/summary.txt
: > "$SUMMARY"
say() { echo "[gpu-bench $(( $(date +%s) - T0 ))s] $*"; }
result() { printf '%-4s %-4s %s\n' "$1" "$2" "$3" | tee -a "$SUMMARY"; }
left() { echo $(( BUDGET - ($(date +%s) - T0) )); }
limit() { local l=$(( $(left) - 10 )); if [ "$l" -lt "$1" ]; then echo "$l"; else echo "$1"; fi; }
enough() { [ "$(left)" -gt "$1" ]; }
skipped() { [[ ",${CELLFLUX_BENCH_SKIP:-}," == *,$1,* ]]; }
table() { grep -E '^\|' "$1" | sed 's/^/          /' | tee -a "$SUMMARY"; }

if [ "$SIZE" = tiny ]; then
  CONFIG=configs/tiny.json; SIT_BATCH=2,8; COMPILE_BATCH=""; O_BATCH=4; O_CMP=2; O_STEPS=10
  PAPER_STEPS=10; LEVEL_S=4; WARM_S=1; PAPER_CONC=2,4; TINY_CONC=4
else
  CONFIG=configs/paper.json; SIT_BATCH=2,32,64,128; COMPILE_BATCH=64,128; O_BATCH=64; O_CMP=8
  O_STEPS=50; PAPER_STEPS=50; LEVEL_S=12; WARM_S=4; PAPER_CONC=16,64; TINY_CONC=16,64
fi
say "device $DEV, size $SIZE ($CONFIG), budget ${BUDGET}s, build $BUILD"
if command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>&1 | tee -a "$SUMMARY"
fi

# --- build ---------------------------------------------------------------------------------------
if [ "${CELLFLUX_BENCH_NO_BUILD:-0}" != 1 ]; then
  OUT=$OUT/build CELLFLUX_CHECK_BUILD_ONLY=1 CELLFLUX_CHECK_BUDGET_S=$(limit 420) \
    CELLFLUX_CHECK_DEVICE=$DEV CELLFLUX_CHECK_BUILD=$BUILD bash scripts/device/gpu_check.sh > /dev/null 2>&1
  result build "$(grep -q '^build PASS' "$OUT/build/summary.txt" 2>/dev/null && echo PASS || echo FAIL)" \
    "$(grep '^build' "$OUT/build/summary.txt" 2>/dev/null | cut -c11-)"
  # gpu_check.sh's targets leave this one out.
  timeout "$(limit 120)" cmake --build "$BUILD" --target sit_forward_bench > "$OUT/build/sit_forward_bench.log" 2>&1 ||
    say "sit_forward_bench build failed: $(tail -3 "$OUT/build/sit_forward_bench.log")"
fi
TOOL=$BUILD/common/tools/cellflux-tool
BENCH=$BUILD/bench/offline_sampler_bench
SITB=$BUILD/bench/sit_forward_bench
for b in "$TOOL" "$BENCH" "$SITB"; do
  [ -x "$b" ] || { result build FAIL "missing $b"; exit 1; }
done
WORK=$BUILD/bench-work
rm -rf "$WORK"; mkdir -p "$WORK"

# --- p: reference parity on the device ---------------------------------------------------------------
if skipped p; then result p SKIP "CELLFLUX_BENCH_SKIP"
elif enough 90; then
  if timeout "$(limit 120)" python3 scripts/device/parity_check.py --tool "$TOOL" --device "$DEV" \
       --precisions fp32,bf16 --attention math,fused --work "$WORK/parity" > "$WORK/parity.log" 2>&1; then
    result p PASS "goldens on $DEV, fp32 within 1e-5 with both attention kernels:"
  else
    result p FAIL "goldens on $DEV (rc $?):"
  fi
  table "$WORK/parity.log"; grep -v '^|' "$WORK/parity.log" | tail -3
else result p SKIP "out of time"; fi

# --- s: SiT forward, C++ vs PyTorch ----------------------------------------------------------------------
if skipped s; then result s SKIP "CELLFLUX_BENCH_SKIP"
elif enough 60; then
  sb=$(( $(left) > 300 ? 200 : $(left) - 100 ))
  if timeout "$(limit $(( sb + 30 )))" python3 bench/sit_forward_gpu_bench.py --cpp "$SITB" --config "$CONFIG" \
       --batch "$SIT_BATCH" --device "$DEV" --peak-tflops "$PEAK" --compile-batch "$COMPILE_BATCH" \
       --budget-s "$sb" --json "$OUT/sit_forward.json" > "$WORK/sit.log" 2>&1; then
    result s PASS "$(grep -m1 '^device' "$WORK/sit.log")"
  else
    result s FAIL "sit_forward_gpu_bench (rc $?): $(grep -v '^|' "$WORK/sit.log" | tail -2 | tr '\n' ' ')"
  fi
  table "$WORK/sit.log"
else result s SKIP "out of time"; fi

# --- o: offline sampler, paper config --------------------------------------------------------------------
if skipped o; then result o SKIP "CELLFLUX_BENCH_SKIP"
elif enough 60; then
  t=$(date +%s)
  if timeout "$(limit 90)" "$TOOL" init-checkpoint --config "$CONFIG" --out "$WORK/ckpt" --perturbations 16 \
       > "$WORK/init.log" 2>&1; then
    say "init-checkpoint $CONFIG in $(( $(date +%s) - t ))s"
    if timeout "$(limit 120)" "$BENCH" --checkpoint "$WORK/ckpt" --device "$DEV" --batch "$O_BATCH" \
         --steps "$O_STEPS" --guidance 1.2 --repeats 2 --vae-max-batch 0 --precision auto --threads 0 \
         > "$WORK/offline.log" 2>&1; then
      result o PASS "$(grep 'samples/s (median)' "$WORK/offline.log")"
      grep '^repeat' "$WORK/offline.log" | sed 's/^/          /' | tee -a "$SUMMARY"
    else
      result o FAIL "offline batch $O_BATCH (rc $?): $(tail -2 "$WORK/offline.log" | tr '\n' ' ')"
    fi
    if enough 40 && timeout "$(limit 90)" "$BENCH" --checkpoint "$WORK/ckpt" --device "$DEV" --batch "$O_CMP" \
         --steps "$O_STEPS" --guidance 1.2 --repeats 1 --vae-max-batch 0 --precision bf16 --compare-fp32 \
         --nonzero-heads --threads 0 > "$WORK/compare.log" 2>&1; then
      result o PASS "$(grep '^max |' "$WORK/compare.log") (batch $O_CMP, random weights, --nonzero-heads)"
    else
      result o FAIL "bf16 vs fp32 (rc $?): $(tail -2 "$WORK/compare.log" | tr '\n' ' ')"
    fi
  else
    result o FAIL "init-checkpoint $CONFIG: $(tail -2 "$WORK/init.log" | tr '\n' ' ')"
  fi
else result o SKIP "out of time"; fi

# --- v: server vs offline ----------------------------------------------------------------------------------
load() {  # load NAME CONFIG STEPS CONCURRENCY
  if [ ! -x "$BUILD/server/cellflux-server" ]; then
    result v FAIL "$1: no $BUILD/server/cellflux-server"
  elif enough 70; then
    if timeout "$(limit 150)" python3 bench/server_load_bench.py --build "$BUILD" --device "$DEV" --config "$2" \
         --steps "$3" --max-batch "$O_BATCH" --concurrency "$4" --level-seconds "$LEVEL_S" \
         --warmup-seconds "$WARM_S" --open-seconds 0 --modes step --threads 0 \
         --json "$OUT/load_$1.json" > "$WORK/load_$1.log" 2>&1; then
      result v PASS "server vs offline, $1 ($2, $3 steps, max batch $O_BATCH):"
      grep -E "^offline|closed c=" "$WORK/load_$1.log" | sed 's/^/          /' | tee -a "$SUMMARY"
    else
      result v FAIL "$1 (rc $?): $(tail -3 "$WORK/load_$1.log" | tr '\n' ' ')"
    fi
  else result v SKIP "$1: out of time"; fi
}
if skipped v; then result v SKIP "CELLFLUX_BENCH_SKIP"
else
  load paper "$CONFIG" "$PAPER_STEPS" "$PAPER_CONC"
  [ "$SIZE" != tiny ] && load tiny configs/tiny.json 20 "$TINY_CONC"
fi

echo
say "done in $(( $(date +%s) - T0 ))s"
echo "==== summary ($DEV) ===="
cat "$SUMMARY"
grep -q " FAIL " "$SUMMARY" && exit 1
exit 0
