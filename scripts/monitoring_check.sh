#!/usr/bin/env bash
# The monitoring check: a real cellflux-server (tiny random checkpoint, CPU) and a real Prometheus
# (Debian package) on loopback, scraping every second with deploy/prometheus/alerts.yml loaded;
# a bounded burst of traffic (deploy/check/drive_traffic.py: Predicts + one bad request); then
# EVERY PromQL expression of deploy/grafana/dashboards/cellflux.json and of the alert rules is
# evaluated through Prometheus's HTTP API (deploy/check/promql_check.py): each must evaluate, the
# core panels (request rate, latency quantiles, queue depth, batch size) must return data, every
# cellflux_* metric they name must be exported by the server, and the loaded rules must be healthy.
# Finally the server gets SIGTERM and must drain and exit 0. Everything started here is stopped on
# exit (trap), and every wait is bounded.
#
#   scripts/monitoring_check.sh BUILD_DIR                 # tests/deploy runs it on CI's build
#   scripts/monitoring_check.sh --fake-server BUILD_DIR   # dashboard work without a server build
#
# Exit: 0 pass, 1 fail, 77 skipped (no cellflux-server/cellflux-tool in BUILD_DIR, or no
# prometheus binary).
set -euo pipefail
fake=0
if [ "${1:-}" = --fake-server ]; then fake=1; shift; fi
build=$(cd "${1:?usage: monitoring_check.sh [--fake-server] BUILD_DIR}" && pwd)
src=$(cd "$(dirname "$0")/.." && pwd)
py=/usr/bin/python3   # Debian's: has grpc, protobuf, yaml (the python3 on PATH may not)
server_bin=$build/server/cellflux-server
tool_bin=$build/common/tools/cellflux-tool
dashboard=$src/deploy/grafana/dashboards/cellflux.json
rules=$src/deploy/prometheus/alerts.yml
core="Request rate by status,Predict latency p50 / p95 / p99,Queue depth,Batch size distribution,Mean batch size"

say() { echo "[monitoring-check] $*"; }
skip() { say "SKIP: $*"; exit 77; }
fail() { say "FAIL: $*"; exit 1; }

command -v prometheus >/dev/null || skip "no prometheus binary (Debian package prometheus)"
if [ "$fake" = 0 ]; then
  [ -x "$server_bin" ] || skip "$server_bin not built"
  [ -x "$tool_bin" ] || skip "$tool_bin not built"
fi

tmp=$(mktemp -d -t cellflux-monitoring.XXXXXX)
pids=()
cleanup() {
  local rc=$?
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  if [ "$rc" != 0 ] && [ "$rc" != 77 ]; then
    for f in server.log prometheus.log; do
      [ -f "$tmp/$f" ] && { say "--- last lines of $f"; tail -n 30 "$tmp/$f"; }
    done
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# Three free loopback ports (bound then released: a tiny race, acceptable for a test).
read -r grpc_port metrics_port prom_port < <("$py" - <<'PY'
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
PY
)
metrics_url=http://127.0.0.1:$metrics_port/metrics
prom_url=http://127.0.0.1:$prom_port

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local secs=$1 what=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || fail "timed out after ${secs}s waiting for $what"
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || fail "a process died while waiting for $what"; done
    sleep 0.5
  done
}
http_ok() { "$py" -c 'import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$1"; }
prom_has() {  # prom_has QUERY: the query returns at least MIN (default 1) as its first value
  "$py" - "$prom_url" "$1" "${2:-1}" <<'PY'
import json, sys, urllib.parse, urllib.request
url = sys.argv[1] + "/api/v1/query?" + urllib.parse.urlencode({"query": sys.argv[2]})
r = json.load(urllib.request.urlopen(url, timeout=5))["data"]["result"]
sys.exit(0 if r and float(r[0]["value"][1]) >= float(sys.argv[3]) else 1)
PY
}

# 1. The server (or the stand-in).
if [ "$fake" = 0 ]; then
  say "tiny checkpoint: cellflux-tool init-checkpoint --config configs/tiny.json"
  "$tool_bin" init-checkpoint --config "$src/configs/tiny.json" --out "$tmp/ckpt" --perturbations 8 \
    > "$tmp/init.log" 2>&1 || { cat "$tmp/init.log"; fail "init-checkpoint failed"; }
  say "cellflux-server on 127.0.0.1:$grpc_port, metrics on 127.0.0.1:$metrics_port"
  "$server_bin" --checkpoint "$tmp/ckpt" --listen "127.0.0.1:$grpc_port" \
    --metrics-listen "127.0.0.1:$metrics_port" --device cpu --threads 1 --max-batch 8 \
    --drain-grace-s 10 > "$tmp/server.log" 2>&1 &
  server_pid=$!
  pids+=("$server_pid")
  wait_for 180 "gRPC health SERVING" "$py" "$src/scripts/docker/grpc_health_check.py" --addr "127.0.0.1:$grpc_port" --timeout 2
  # The HEALTHCHECK script itself is now checked too: it must say no to a port nobody serves.
  if "$py" "$src/scripts/docker/grpc_health_check.py" --addr "127.0.0.1:$prom_port" --timeout 1 2>/dev/null; then
    fail "grpc_health_check.py reported SERVING for a closed port"
  fi
  wait_for 30 "the metrics endpoint" http_ok "$metrics_url"
  # Python stubs for the traffic driver: the cellflux package's (client/python/cellflux/v1).
  stubs=$src/client/python
else
  say "fake /metrics on 127.0.0.1:$metrics_port (deploy/check/fake_metrics.py)"
  "$py" "$src/deploy/check/fake_metrics.py" --listen "127.0.0.1:$metrics_port" --seconds 300 &
  pids+=("$!")
  wait_for 30 "the fake metrics endpoint" http_ok "$metrics_url"
fi

# 2. Prometheus: 1 s scrapes and rule evaluation, the deploy rules file as is.
cat > "$tmp/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - $rules
scrape_configs:
  - job_name: cellflux
    static_configs:
      - targets: ["127.0.0.1:$metrics_port"]
YAML
promtool check config "$tmp/prometheus.yml" > "$tmp/promtool.log" 2>&1 || { cat "$tmp/promtool.log"; fail "promtool check config"; }
say "prometheus on 127.0.0.1:$prom_port"
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/tsdb" \
  --web.listen-address="127.0.0.1:$prom_port" > "$tmp/prometheus.log" 2>&1 &
pids+=("$!")
wait_for 60 "Prometheus ready" http_ok "$prom_url/-/ready"
wait_for 30 "the first scrape (up == 1)" prom_has 'up{job="cellflux"}'

# 3. Traffic in two waves, each seen by a scrape, so counters move inside the rate windows.
if [ "$fake" = 0 ]; then
  for wave in 1 2; do
    before=$(( (wave - 1) * 5 ))
    say "traffic wave $wave"
    timeout 300 "$py" "$src/deploy/check/drive_traffic.py" --server "127.0.0.1:$grpc_port" \
      --stubs "$stubs" --predicts 4 --steps 6 --samples 2 || fail "traffic wave $wave"
    wait_for 30 "wave $wave in Prometheus" prom_has \
      'sum(cellflux_requests_total{job="cellflux",method="Predict"})' $((before + 5))
  done
fi
sleep 3  # a few more scrapes and one rule evaluation after the last change

# 4. Every expression.
"$py" "$src/deploy/check/promql_check.py" --prometheus "$prom_url" --dashboard "$dashboard" \
  --rules "$rules" --metrics-url "$metrics_url" --core-titles "$core" || fail "PromQL check"

# 5. Drain: SIGTERM → exit 0 within the grace period.
if [ "$fake" = 0 ]; then
  kill -TERM "$server_pid"
  deadline=$((SECONDS + 30))
  while kill -0 "$server_pid" 2>/dev/null; do
    [ "$SECONDS" -lt "$deadline" ] || fail "server still running 30s after SIGTERM"
    sleep 0.2
  done
  server_rc=0; wait "$server_pid" || server_rc=$?
  [ "$server_rc" = 0 ] || fail "server exited $server_rc after SIGTERM"
fi
say "PASS"
