#!/usr/bin/env bash
# cellflux on a GPU machine that has PyTorch (its LibTorch and CMake config), CUDA, CMake, Ninja
# and g++ but none of cellflux's other C++ dependencies: those come from .devkit/ (made on Debian
# 12 by scripts/device/make_kit.sh). Run from the repository root:
#
#   bash scripts/device/gpu_check.sh
#
# Builds build-gpu/ (Ninja, Release, unity, CUDA arch 90, no tests) with the five binaries, then
# runs, each step bounded in time and the next one run whatever happened:
#   a  cellflux-tool init-checkpoint: configs/tiny.json (configs/paper.json last, with g)
#   b  cellflux-server --device cuda:0 with a control bank: health SERVING, a prediction with the
#      Python client (client/python/examples/cellflux_example.py on the cellflux package), /metrics
#      cellflux_gpu_memory_bytes > 0
#   c  the same seeded request on a CPU server and the CUDA server: max |difference|; and on the
#      CUDA server alone vs amid 15 concurrent requests (codec streams + batching: a stream race
#      shows as large differences; cuBLAS choosing kernels by batch size as small ones)
#   d  offline_sampler_bench on the device, batch 16 and 64 (tiny config): samples/s
#   e  bench/server_load_bench.py against servers on the device (short sweep)
#   f  cellflux-train on the device: synth → prepare → gene-ae, vae, encode, flow (a few steps)
#   g  one prediction with the paper-size random checkpoint (SiT-XL/2 + SD-VAE) on the device
# Steps that would overrun the time budget are skipped (SKIP in the summary).
# Writes to $OUT (default out/gpu-check), at most 7 files: build.log, checks.log, summary.txt
# (PASS/FAIL per step with the numbers), server-cuda.log, server-cpu.log, train.log,
# load_bench.json (configure.yaml instead of the last four when the build fails).
#
# Environment: CELLFLUX_CHECK_DEVICE (cuda:0; cpu runs the same steps on the CPU, for trying the
# script on a machine without a GPU), CELLFLUX_CHECK_JOBS (16), CELLFLUX_CHECK_BUDGET_S (seconds for
# everything, 470), CELLFLUX_CHECK_BUILD_S (for the build, 400), CELLFLUX_CHECK_BUILD (build-gpu),
# CELLFLUX_KIT (.devkit), CELLFLUX_CHECK_SKIP (comma-separated steps to leave out; only e so far),
# CELLFLUX_CHECK_BUILD_ONLY (1: stop after the build; scripts/device/gpu_bench.sh uses it),
# CELLFLUX_TORCH_PREFIX (default: torch.utils.cmake_prefix_path of python3),
# CELLFLUX_CXX_STANDARD (default: 17, or 20 for LibTorch >= 2.12), CELLFLUX_CHECK_LDFLAGS (added to
# the link; with Debian's own LibTorch, whose dependencies need the real libraries the kit stubs:
# -Wl,-rpath-link,/usr/lib/x86_64-linux-gnu, and LD_PRELOAD those libraries).
set -uo pipefail
cd "$(dirname "$0")/../.."
SRC=$(pwd)
OUT=${OUT:-$SRC/out/gpu-check}
mkdir -p "$OUT"
DEV=${CELLFLUX_CHECK_DEVICE:-cuda:0}
JOBS=${CELLFLUX_CHECK_JOBS:-16}
BUDGET=${CELLFLUX_CHECK_BUDGET_S:-470}
BUILD=${CELLFLUX_CHECK_BUILD:-$SRC/build-gpu}
WORK=$BUILD/check
T0=$(date +%s)
exec > >(tee -a "$OUT/checks.log") 2>&1
SUMMARY=$OUT/summary.txt
: > "$SUMMARY"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
}
trap cleanup EXIT

say() { echo "[gpu-check $(( $(date +%s) - T0 ))s] $*"; }
result() {  # result STEP PASS|FAIL|SKIP TEXT
  printf '%-4s %-4s %s\n' "$1" "$2" "$3" | tee -a "$SUMMARY"
}
left() { echo $(( BUDGET - ($(date +%s) - T0) )); }
# limit WANT: WANT seconds, or what is left of the budget less a margin for the summary.
limit() { local l=$(( $(left) - 10 )); if [ "$l" -lt "$1" ]; then echo "$l"; else echo "$1"; fi; }
enough() { [ "$(left)" -gt "$1" ]; }

say "device $DEV, $JOBS jobs, budget ${BUDGET}s, build $BUILD"
uname -a; (nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true) 2>&1
g++ --version | head -1; cmake --version | head -1; (nvcc --version | tail -2 || true) 2>&1

# --- environment: the kit, PyTorch's LibTorch, CUDA -----------------------------------------------
KIT=$(python3 "$SRC/scripts/device/kit_helper.py" unpack "${CELLFLUX_KIT:-$SRC/.devkit}" "$BUILD-kit") || {
  result build FAIL "cannot unpack the kit (${CELLFLUX_KIT:-$SRC/.devkit}): run scripts/device/make_kit.sh"; exit 1; }
P=$KIT/usr
KITLIB=$P/lib/x86_64-linux-gnu
export PATH="$P/bin:$PATH"
TORCH_INFO=$(python3 -c 'import os, torch; print(torch.__version__); print(torch.utils.cmake_prefix_path); print(os.path.dirname(os.path.dirname(torch.__file__))); print(torch.version.cuda)' 2>/dev/null)
TORCH_VERSION=$(sed -n 1p <<< "$TORCH_INFO")
TORCH_PREFIX=${CELLFLUX_TORCH_PREFIX-$(sed -n 2p <<< "$TORCH_INFO")}
SITE=$(sed -n 3p <<< "$TORCH_INFO")
say "python3 torch $TORCH_VERSION (CUDA $(sed -n 4p <<< "$TORCH_INFO")), cmake prefix '${TORCH_PREFIX}'"
if [ -n "${CELLFLUX_CXX_STANDARD:-}" ]; then
  STD=$CELLFLUX_CXX_STANDARD
else
  # LibTorch >= 2.12 headers refuse anything below C++20.
  STD=$(python3 -c 'import sys; v = sys.argv[1].split("+")[0].split("."); print(20 if (int(v[0]), int(v[1])) >= (2, 12) else 17)' "${TORCH_VERSION:-1.13}")
fi
CXXFLAGS_EXTRA=""
# GCC 13 dropped <cstdint> from other standard headers; Debian 12's absl/protobuf headers predate
# that. (Costs the torch PCH in those files, which GCC then parses; correct either way.)
gcc_major=$(g++ -dumpversion | cut -d. -f1)
[ "$gcc_major" -ge 13 ] && CXXFLAGS_EXTRA="-include cstdint"
CMAKE_EXTRA=()
if [ "$DEV" != cpu ]; then
  NVCC=$(command -v nvcc || true)
  [ -z "$NVCC" ] && [ -x /usr/local/cuda/bin/nvcc ] && NVCC=/usr/local/cuda/bin/nvcc
  if [ -n "$NVCC" ]; then
    export PATH="$(dirname "$NVCC"):$PATH"
    export CUDA_HOME=${CUDA_HOME:-$(dirname "$(dirname "$(readlink -f "$NVCC")")")}
    CMAKE_EXTRA+=(-DCMAKE_CUDA_COMPILER="$NVCC" -DCUDAToolkit_ROOT="$CUDA_HOME" -DCMAKE_CUDA_ARCHITECTURES=90)
    # server/model_backend.cc includes c10/cuda/CUDACachingAllocator.h (CUDA runtime headers).
    [ -f "$CUDA_HOME/include/cuda_runtime_api.h" ] && CXXFLAGS_EXTRA+=" -isystem $CUDA_HOME/include"
  fi
  export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
  # PyTorch's wheels keep NCCL's and cuDNN's headers in the nvidia-* packages.
  for inc in "$SITE"/nvidia/nccl/include "$SITE"/nvidia/*/include/nccl.h; do
    [ -f "$inc/nccl.h" ] && { CXXFLAGS_EXTRA+=" -isystem $inc"; break; }
    [ -f "$inc" ] && { CXXFLAGS_EXTRA+=" -isystem $(dirname "$inc")"; break; }
  done
  cudnn=$(ls "$SITE"/nvidia/cudnn/lib/libcudnn.so* 2>/dev/null | head -1)
  if [ -n "$cudnn" ] && [ -f "$SITE/nvidia/cudnn/include/cudnn.h" ]; then
    CMAKE_EXTRA+=(-DCUDNN_LIBRARY_PATH="$cudnn" -DCUDNN_INCLUDE_PATH="$SITE/nvidia/cudnn/include")
  fi
fi

# --- build ----------------------------------------------------------------------------------------
TARGETS=(cellflux-server cellflux-tool cellflux-train cellflux-client offline_sampler_bench)
build_ok=0
tb=$(date +%s)
{
  set -x
  cmake -S "$SRC" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCELLFLUX_UNITY_BUILD=ON \
    -DCELLFLUX_BUILD_TESTS=OFF -DCELLFLUX_BUILD_BENCH=ON -DCMAKE_CXX_STANDARD="$STD" \
    -DCMAKE_PREFIX_PATH="$P;$TORCH_PREFIX" -DCMAKE_CXX_FLAGS="$CXXFLAGS_EXTRA" \
    -DCMAKE_BUILD_RPATH="$KITLIB" -DCMAKE_EXE_LINKER_FLAGS="-Wl,--disable-new-dtags ${CELLFLUX_CHECK_LDFLAGS:-}" "${CMAKE_EXTRA[@]}" &&
  timeout "$(limit "${CELLFLUX_CHECK_BUILD_S:-400}")" cmake --build "$BUILD" -j "$JOBS" --target "${TARGETS[@]}"
} 2>&1 | tee "$OUT/build.log" | grep -E "^(--|CMake|\+ |FAILED|ninja: build stopped|.*error)" | awk 'NR <= 150'
rc=${PIPESTATUS[0]}
tb=$(( $(date +%s) - tb ))
if [ "$rc" = 0 ]; then
  build_ok=1
  result build PASS "configure + build of ${#TARGETS[@]} targets in ${tb}s (-j$JOBS, C++$STD, torch $TORCH_VERSION)"
else
  result build FAIL "exit $rc after ${tb}s; see build.log (last lines below)"
  grep -B2 -A12 -m3 -E "error|Error" "$OUT/build.log" | head -80
  [ -f "$BUILD/CMakeFiles/CMakeConfigureLog.yaml" ] && cp "$BUILD/CMakeFiles/CMakeConfigureLog.yaml" "$OUT/configure.yaml"
fi
# scripts/device/gpu_bench.sh builds through here and runs its own steps.
[ -n "${CELLFLUX_CHECK_BUILD_ONLY:-}" ] && exit $(( 1 - build_ok ))
TOOL=$BUILD/common/tools/cellflux-tool
TRAIN=$BUILD/trainer/cellflux-train
SERVER=$BUILD/server/cellflux-server
CLIENT=$BUILD/client/cellflux-client
BENCH=$BUILD/bench/offline_sampler_bench
PYC="python3 $SRC/scripts/device/gpu_check_client.py"
for b in "$TOOL" "$TRAIN" "$SERVER" "$CLIENT" "$BENCH"; do
  if [ -x "$b" ]; then
    missing=$(ldd "$b" 2>&1 | grep "not found" | tr -d '\t' | tr '\n' ' ')
    [ -n "$missing" ] && say "$(basename "$b"): unresolved libraries: $missing"
  fi
done
if [ ! -x "$SERVER" ] || [ ! -x "$TOOL" ]; then
  for s in a b c d e f g; do result $s SKIP "no binaries"; done
  exit 1
fi
rm -rf "$WORK"; mkdir -p "$WORK"

# --- a: checkpoints -------------------------------------------------------------------------------
t=$(date +%s)
if timeout "$(limit 60)" "$TOOL" init-checkpoint --config configs/tiny.json --out "$WORK/ckpt" --perturbations 8 \
     > "$WORK/init-tiny.log" 2>&1; then
  result a PASS "init-checkpoint tiny in $(( $(date +%s) - t ))s ($(du -sh "$WORK/ckpt" | cut -f1))"
else
  result a FAIL "init-checkpoint tiny: $(tail -2 "$WORK/init-tiny.log" | tr '\n' ' ')"
fi

# Synthetic plates + prepare: the servers' control bank.
t=$(date +%s)
timeout "$(limit 90)" "$TOOL" synth --out "$WORK/synth" --plates 1 --compounds 6 --image-size 96x96 --sites 2 \
  --wells-per-plate 40 --l1000-plates 2 > "$WORK/synth.log" 2>&1 &&
timeout "$(limit 90)" "$TRAIN" prepare --images "$WORK/synth/images" --platemaps "$WORK/synth/platemaps" \
  --l1000 "$WORK/synth/l1000/replicate_level_l1k.csv" --out "$WORK/data" --test-perturbations 1 \
  --val-fraction 0 --seed 0 > "$WORK/prepare.log" 2>&1 || say "control bank data failed: $(tail -3 "$WORK/prepare.log" "$WORK/synth.log" 2>/dev/null)"
say "control bank data in $(( $(date +%s) - t ))s"
PERT=$(python3 -c 'import csv,sys; print(next(csv.DictReader(open(sys.argv[1]), delimiter="\t"))["broad_id"])' "$WORK/ckpt/perturbations.tsv" 2>/dev/null)
REF=$(python3 -c 'import csv,sys; r=next(csv.DictReader(open(sys.argv[1]))); print(r["plate"]+":"+r["well"])' "$WORK/data/controls_cp.csv" 2>/dev/null)
PLATE=${REF%%:*}; WELL=${REF#*:}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# start_server NAME DEVICE CHECKPOINT: starts it; sets ADDR, MADDR; returns once SERVING (or not).
start_server() {
  local name=$1 dev=$2 ckpt=$3 port mport
  port=$(free_port); mport=$(free_port)
  ADDR=127.0.0.1:$port; MADDR=127.0.0.1:$mport
  "$SERVER" --checkpoint "$ckpt" --listen "$ADDR" --metrics-listen "$MADDR" --controls "$WORK/data" \
    --device "$dev" --max-batch 16 --drain-grace-s 5 > "$LOGDIR/server-$name.log" 2>&1 &
  SPID=$!
  PIDS+=("$SPID")
  local t=$(date +%s) deadline=$(( $(date +%s) + $(limit 120) ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    if $PYC health "$ADDR" 2>/dev/null; then
      say "server $name ($dev) SERVING after $(( $(date +%s) - t ))s on $ADDR"
      return 0
    fi
    kill -0 "$SPID" 2>/dev/null || { say "server $name exited: $(tail -3 "$LOGDIR/server-$name.log")"; return 1; }
    sleep 0.5
  done
  say "server $name not SERVING in time"; return 1
}
stop_server() { kill -TERM "$1" 2>/dev/null; wait "$1" 2>/dev/null; }

# --- b: CUDA server, Python client, metrics -------------------------------------------------------
STUBS=$WORK/stubs
PY_OK=0
# The cellflux package with its committed stubs (client/python/gen_stubs.sh, protoc 3.21).
mkdir -p "$STUBS" && cp -r client/python/cellflux "$STUBS/"
if PYTHONPATH=$STUBS python3 -c 'import cellflux.v1.cellflux_pb2, cellflux.v1.cellflux_pb2_grpc' 2> "$WORK/pyimport.log"; then
  PY_OK=1
  PB_NOTE="protoc 3.21 stubs load under python protobuf $(python3 -c 'import google.protobuf as p; print(p.__version__)'), grpcio $(python3 -c 'import grpc; print(grpc.__version__)')"
else
  PB_NOTE="protoc 3.21 stubs do NOT load under python protobuf $(python3 -c 'import google.protobuf as p; print(p.__version__)' 2>&1): $(tail -1 "$WORK/pyimport.log")"
  # grpcio-tools, where installed, generates stubs matching the runtime.
  if python3 -m grpc_tools.protoc --proto_path=proto --python_out="$STUBS" --grpc_python_out="$STUBS" \
       proto/cellflux/v1/cellflux.proto 2>/dev/null &&
     PYTHONPATH=$STUBS python3 -c 'import cellflux.v1.cellflux_pb2' 2>/dev/null; then
    PY_OK=1; PB_NOTE+="; grpc_tools.protoc stubs used instead"
  fi
fi
say "$PB_NOTE"
export PYTHONPATH=$STUBS
CUDA_PID=""
if enough 60 && LOGDIR=$OUT start_server cuda "$DEV" "$WORK/ckpt"; then
  CUDA_PID=$SPID; CUDA_ADDR=$ADDR; CUDA_MADDR=$MADDR
  result b PASS "server on $DEV SERVING (grpc.health.v1); $PB_NOTE"
  if [ "$PY_OK" = 1 ]; then
    if timeout "$(limit 60)" python3 client/python/examples/cellflux_example.py --server "$CUDA_ADDR" --perturbation "$PERT" \
         --plate "$PLATE" --well "$WELL" --steps 20 --samples 2 --seed 9 --out "$WORK/py_out" > "$WORK/py.log" 2>&1; then
      result b PASS "python client: $(tail -1 "$WORK/py.log") ($(find "$WORK/py_out" -name '*.tif' | wc -l) TIFFs)"
    else
      result b FAIL "python client: $(tail -2 "$WORK/py.log" | tr '\n' ' ')"
    fi
  else
    if timeout "$(limit 60)" "$CLIENT" predict --server "$CUDA_ADDR" --perturbation "$PERT" --control-ref "$REF" \
         --samples 2 --steps 20 --seed 9 --out "$WORK/cc_out" > "$WORK/cc.log" 2>&1; then
      result b PASS "cellflux-client predict (python stubs unusable): $(tail -1 "$WORK/cc.log")"
    else
      result b FAIL "cellflux-client predict: $(tail -2 "$WORK/cc.log" | tr '\n' ' ')"
    fi
  fi
  mem=$($PYC metric "http://$CUDA_MADDR/metrics" cellflux_gpu_memory_bytes 2>&1)
  if [ "$DEV" = cpu ]; then
    result b PASS "cellflux_gpu_memory_bytes = $mem (CPU run: 0 expected)"
  elif python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) > 0 else 1)' "$mem" 2>/dev/null; then
    result b PASS "cellflux_gpu_memory_bytes = $mem"
  else
    result b FAIL "cellflux_gpu_memory_bytes = $mem (expected > 0 on $DEV)"
  fi
else
  result b FAIL "server on $DEV did not become SERVING (server-cuda.log)"
fi

# --- c: CPU vs CUDA, same seeded request ----------------------------------------------------------
if [ -n "$CUDA_PID" ] && [ "$PY_OK" = 1 ] && enough 60; then
  if LOGDIR=$OUT start_server cpu cpu "$WORK/ckpt"; then
    CPU_PID=$SPID
    req=(--perturbation "$PERT" --plate "$PLATE" --well "$WELL" --seed 7 --steps 20 --samples 2)
    if timeout "$(limit 120)" $PYC predict "$CUDA_ADDR" "$WORK/pred_cuda.json" "${req[@]}" &&
       timeout "$(limit 120)" $PYC predict "$ADDR" "$WORK/pred_cpu.json" "${req[@]}"; then
      diff=$($PYC compare "$WORK/pred_cpu.json" "$WORK/pred_cuda.json")
      result c PASS "$DEV vs cpu, seed 7, 20 steps, 2 samples: $diff"
      if timeout "$(limit 120)" $PYC concurrent "$CUDA_ADDR" "$WORK/pred_cuda_busy.json" "${req[@]}" --n 16; then
        diff=$($PYC compare "$WORK/pred_cuda.json" "$WORK/pred_cuda_busy.json")
        result c PASS "$DEV alone vs amid 15 concurrent requests, seed 7: $diff"
      else
        result c FAIL "the concurrent requests on $DEV failed"
      fi
    else
      result c FAIL "a seeded prediction failed"
    fi
    stop_server "$CPU_PID"
  else
    result c FAIL "CPU server did not start (server-cpu.log)"
  fi
else
  result c SKIP "needs the CUDA server, usable python stubs and time"
fi
[ -n "$CUDA_PID" ] && stop_server "$CUDA_PID"

# --- d: offline sampler on the device --------------------------------------------------------------
for batch in 16 64; do
  if ! enough 40; then result d SKIP "batch $batch: out of time"; continue; fi
  if timeout "$(limit 90)" "$BENCH" --checkpoint "$WORK/ckpt" --device "$DEV" --batch "$batch" --steps 20 \
       --repeats 3 --vae-max-batch 0 > "$WORK/offline-$batch.log" 2>&1; then
    result d PASS "$(grep 'samples/s (median)' "$WORK/offline-$batch.log")"
  else
    result d FAIL "batch $batch: $(tail -2 "$WORK/offline-$batch.log" | tr '\n' ' ')"
  fi
done

# --- e: server load sweep on the device -------------------------------------------------------------
if [[ ",${CELLFLUX_CHECK_SKIP:-}," == *,e,* ]]; then
  result e SKIP "CELLFLUX_CHECK_SKIP"
elif enough 130; then
  if timeout "$(limit 150)" python3 bench/server_load_bench.py --build "$BUILD" --device "$DEV" \
       --concurrency 1,16,64 --level-seconds 8 --warmup-seconds 2 --open-seconds 10 --modes step,request \
       --json "$OUT/load_bench.json" > "$WORK/load.log" 2>&1; then
    result e PASS "server_load_bench on $DEV:"
    grep -E "^\| (step|request) " "$WORK/load.log" | sed 's/^/          /' | tee -a "$SUMMARY"
  else
    result e FAIL "server_load_bench (rc $?): $(tail -3 "$WORK/load.log" | tr '\n' ' ')"
    grep -E "closed c=|open |offline" "$WORK/load.log" | sed 's/^/          /' | tee -a "$SUMMARY"
  fi
else
  result e SKIP "out of time"
fi

# --- f: training on the device ----------------------------------------------------------------------
if enough 80; then
  t=$(date +%s)
  D=$WORK/train
  sets=(--set gene_ae.steps=30 --set vae.steps=10 --set flow.steps=20 --set flow.val_every=10
        --set flow.checkpoint_every=10 --set flow.val_pairs=8)
  targs=(--config configs/demo.yaml --data-dir "$D/data" --work-dir "$D/run" --device "$DEV" "${sets[@]}")
  (
    set -e
    "$TOOL" synth --out "$D/synth" --plates 2 --compounds 32 --seed 1
    "$TRAIN" prepare --images "$D/synth/images" --platemaps "$D/synth/platemaps" \
      --l1000 "$D/synth/l1000/replicate_level_l1k.csv" --out "$D/data" --test-perturbations 12 \
      --val-fraction 0.1 --seed 0 --split-level pair
    for stage in gene-ae vae encode flow; do
      echo "== $stage"; s=$(date +%s)
      "$TRAIN" "$stage" "${targs[@]}"
      echo "== $stage done in $(( $(date +%s) - s ))s"
    done
  ) > "$OUT/train.log" 2>&1 &
  tpid=$!
  ( sleep "$(limit 150)"; kill -TERM "$tpid" 2>/dev/null ) & wpid=$!
  wait "$tpid"; rc=$?
  kill "$wpid" 2>/dev/null
  stages=$(grep -E "^== .* done in" "$OUT/train.log" | sed 's/== //; s/ done in /=/' | tr '\n' ' ')
  if [ "$rc" = 0 ] && ls "$D/run/checkpoints" 2>/dev/null | grep -q step; then
    result f PASS "train on $DEV in $(( $(date +%s) - t ))s: $stages$(grep -m1 -oE 'device[^,]*cuda[^,]*' "$OUT/train.log" | head -1)"
  else
    result f FAIL "train on $DEV (rc $rc) after $(( $(date +%s) - t ))s: $stages; $(grep -iE 'error|failed' "$OUT/train.log" | tail -2 | tr '\n' ' ')"
  fi
else
  result f SKIP "out of time"
fi

# --- a (paper) and g: the paper-size model on the device ---------------------------------------------
PAPER_OK=0
if [ -f configs/paper.json ] && enough 100; then
  t=$(date +%s)
  if timeout "$(limit 90)" "$TOOL" init-checkpoint --config configs/paper.json --out "$WORK/ckpt-paper" \
       --perturbations 8 > "$WORK/init-paper.log" 2>&1; then
    PAPER_OK=1
    result a PASS "init-checkpoint paper in $(( $(date +%s) - t ))s ($(du -sh "$WORK/ckpt-paper" | cut -f1))"
  else
    result a FAIL "init-checkpoint paper (rc $?): $(tail -2 "$WORK/init-paper.log" | tr '\n' ' ')"
  fi
else
  result a SKIP "init-checkpoint paper: out of time"
fi
if [ "$PAPER_OK" = 1 ] && [ "$PY_OK" = 1 ] && enough 50; then
  if LOGDIR=$WORK start_server paper "$DEV" "$WORK/ckpt-paper"; then
    PPID_=$SPID
    if timeout "$(limit 60)" $PYC predict "$ADDR" "$WORK/pred_paper.json" --perturbation "$PERT" \
         --plate "$PLATE" --well "$WELL" --seed 7 --steps 50 --samples 1 > "$WORK/paper.log" 2>&1; then
      mem=$($PYC metric "http://$MADDR/metrics" cellflux_gpu_memory_bytes 2>&1)
      result g PASS "paper-size model, 50 steps: $(tail -1 "$WORK/paper.log"); gpu memory $mem bytes"
    else
      result g FAIL "paper-size prediction: $(tail -2 "$WORK/paper.log" | tr '\n' ' ')"
    fi
    stop_server "$PPID_"
  else
    result g FAIL "paper-size server did not start: $(tail -3 "$WORK/server-paper.log" | tr '\n' ' ')"
  fi
else
  result g SKIP "needs the paper checkpoint, python stubs and time"
fi

# --- summary ---------------------------------------------------------------------------------------------
echo
say "done in $(( $(date +%s) - T0 ))s"
echo "==== summary ($DEV) ===="
cat "$SUMMARY"
grep -q " FAIL " "$SUMMARY" && exit 1
exit 0
