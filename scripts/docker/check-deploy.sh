#!/usr/bin/env bash
# Static checks of the deployment files (tests/deploy runs each as its own CTest entry):
#   check-deploy.sh prometheus   promtool check config + check rules (deploy/prometheus)
#   check-deploy.sh compose      docker-compose config accepts deploy/compose/docker-compose.yml
#   check-deploy.sh k8s          every deploy/k8s/*.yaml parses (yaml.safe_load_all), kinds known,
#                                GPU limits, grpc probes and the drain grace period are in place
#   check-deploy.sh grafana      dashboard JSON + provisioning: one fixed datasource uid everywhere
#   check-deploy.sh dockerfile   every RUN calls an executable scripts/docker/*.sh, runtime targets
#                                run as non-root with a HEALTHCHECK, every COPY --from stage exists
#   check-deploy.sh cpu-path BUILD_DIR
#                                the CPU image's steps on this machine: install-build-deps.sh for
#                                real (setup.sh is idempotent), stage.sh on BUILD_DIR for real
#                                (ldd + dpkg -S: every library the binaries load has a package),
#                                install-runtime.sh dry-run on the staged package list
# Exit 0 pass, 1 fail, 77 skip (a tool this check needs is not installed).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
py=/usr/bin/python3
what=${1:?usage: check-deploy.sh prometheus|compose|k8s|grafana|dockerfile|cpu-path [BUILD_DIR]}
tmp=$(mktemp -d -t cellflux-deploy-check.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
need() { command -v "$1" >/dev/null || { echo "SKIP: $1 not installed ($2)"; exit 77; }; }

case "$what" in
  prometheus)
    need promtool "Debian package prometheus"
    # The config names the rules file by its in-container path; point it at the repo's copy.
    sed "s|/etc/prometheus/alerts.yml|$src/deploy/prometheus/alerts.yml|" \
      "$src/deploy/prometheus/prometheus.yml" > "$tmp/prometheus.yml"
    promtool check config "$tmp/prometheus.yml"
    promtool check rules "$src/deploy/prometheus/alerts.yml"
    # The PrometheusRule copy for the operator must hold the same alert names.
    "$py" - "$src/deploy/prometheus/alerts.yml" "$src/deploy/k8s/podmonitor.yaml" <<'PY'
import sys, yaml
base = {r["alert"] for g in yaml.safe_load(open(sys.argv[1]))["groups"] for r in g["rules"]}
docs = [d for d in yaml.safe_load_all(open(sys.argv[2])) if d and d["kind"] == "PrometheusRule"]
k8s = {r["alert"] for d in docs for g in d["spec"]["groups"] for r in g["rules"]}
missing = {"CellfluxServerDown", "CellfluxHighErrorRatio", "CellfluxLatencyP99OverSLO",
           "CellfluxQueueSaturated", "CellfluxReloadFailing"} - (base & k8s)
sys.exit(f"alerts missing in alerts.yml or the PrometheusRule: {sorted(missing)}" if missing else 0)
PY
    ;;
  compose)
    need docker-compose "Debian package docker-compose"
    docker-compose -f "$src/deploy/compose/docker-compose.yml" config > "$tmp/compose.yml"
    "$py" - "$tmp/compose.yml" <<'PY'
import sys, yaml
c = yaml.safe_load(open(sys.argv[1]))
s = c["services"]
assert {"cellflux-server", "prometheus", "grafana"} <= set(s), sorted(s)
dev = s["cellflux-server"]["deploy"]["resources"]["reservations"]["devices"][0]
assert "gpu" in dev["capabilities"], dev
srv = s["cellflux-server"]
assert "healthcheck" in srv
# The README's control.ref examples and screens of bank wells need the bank; promotion needs the
# server to serve (and watch) the link that `cellflux-tool promote` flips.
cmd = srv["command"]
for want in ("--checkpoint=/models/current", "--controls=/data/prepared"):
    assert want in cmd, f"cellflux-server command lacks {want}: {cmd}"
assert any(a.startswith("--watch-checkpoint-s=") and int(a.split("=")[1]) > 0 for a in cmd), cmd
mounts = {}
for v in srv["volumes"]:
    if isinstance(v, str):
        parts = v.split(":")
        mounts[parts[1]] = parts[2:] == ["ro"]
    else:
        mounts[v["target"]] = bool(v.get("read_only"))
assert mounts.get("/models") is True and mounts.get("/data") is True, f"/models and /data must be read-only volumes: {mounts}"
print("compose: services", sorted(s), "GPU reservation", dev, "bank + promotion volumes", mounts)
PY
    ;;
  k8s)
    "$py" - "$src"/deploy/k8s/*.yaml <<'PY'
import sys, yaml
kinds = {}
for path in sys.argv[1:]:
    for d in yaml.safe_load_all(open(path)):
        if d:
            assert "apiVersion" in d and "kind" in d, path
            kinds.setdefault(d["kind"], []).append(d)
print("k8s:", {k: len(v) for k, v in sorted(kinds.items())})
need = {"Deployment", "Service", "HorizontalPodAutoscaler", "Job", "PodMonitor", "ConfigMap"}
assert need <= set(kinds), need - set(kinds)
dep = kinds["Deployment"][0]["spec"]["template"]["spec"]
c = dep["containers"][0]
assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
    assert "grpc" in c[probe], probe
startup = c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"]
assert startup >= 300, f"startup probe allows only {startup}s for the model load"
drain = [int(a.split("=")[1]) for a in c["args"] if a.startswith("--drain-grace-s=")][0]
for want in ("--checkpoint=/models/current", "--controls=/data/prepared"):
    assert want in c["args"], f"server args lack {want}"
assert any(a.startswith("--watch-checkpoint-s=") and int(a.split("=")[1]) > 0 for a in c["args"])
mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
claims = {v["name"]: v.get("persistentVolumeClaim", {}) for v in dep["volumes"]}
for path, claim in (("/models", "cellflux-models"), ("/data", "cellflux-data")):
    m = mounts[path]
    assert m.get("readOnly") is True, f"{path} must be mounted read-only"
    assert claims[m["name"]].get("claimName") == claim, f"{path} must come from the PVC {claim}"
train_mounts = {m["mountPath"]: m["name"] for m in kinds["Job"][0]["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
train_claims = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in kinds["Job"][0]["spec"]["template"]["spec"]["volumes"]}
assert train_claims[train_mounts["/data"]] == "cellflux-data", "training and the bank must read the same /data"

assert dep["terminationGracePeriodSeconds"] > drain, "termination grace must exceed --drain-grace-s"
hpa = kinds["HorizontalPodAutoscaler"][0]["spec"]["metrics"][0]
assert hpa["pods"]["metric"]["name"] == "cellflux_queue_depth"
rules = yaml.safe_load(kinds["ConfigMap"][0]["data"]["config.yaml"])["rules"]
assert any(r["name"]["as"] == "cellflux_queue_depth" for r in rules)
job = kinds["Job"][0]["spec"]["template"]["spec"]["containers"][0]
assert "torchrun --no-python" in " ".join(job["args"]) and "cellflux-train flow" in " ".join(job["args"])
PY
    ;;
  grafana)
    "$py" - "$src/deploy/grafana" <<'PY'
import glob, json, os, sys, yaml
root = sys.argv[1]
uids = {d["uid"] for f in glob.glob(os.path.join(root, "provisioning/datasources/*.yml"))
        for d in yaml.safe_load(open(f))["datasources"]}
assert len(uids) == 1, uids
for f in glob.glob(os.path.join(root, "provisioning/dashboards/*.yml")):
    assert yaml.safe_load(open(f))["providers"]
for f in glob.glob(os.path.join(root, "dashboards/*.json")):
    d = json.load(open(f))
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    used = {p["datasource"]["uid"] for p in d["panels"]} | {t["datasource"]["uid"] for p in d["panels"] for t in p["targets"]}
    assert used == uids, f"{f}: panels use datasource uids {used}, provisioned {uids}"
    print(f"grafana: {os.path.basename(f)}: {len(ids)} panels, datasource {uids}")
PY
    ;;
  dockerfile)
    "$py" - "$src" <<'PY'
import os, re, shlex, sys
src = sys.argv[1]
text = open(os.path.join(src, "Dockerfile")).read().replace("\\\n", " ")
stages, current, problems = {}, None, []
for line in text.splitlines():
    line = line.strip()
    if not line or line.startswith("#"):
        continue
    word, _, rest = line.partition(" ")
    word = word.upper()
    if word == "FROM":
        m = re.match(r"(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
        current = m.group(2) or f"<final:{m.group(1)}>"
        stages[current] = {"from": m.group(1), "lines": []}
    elif current:
        stages[current]["lines"].append((word, rest))
for name, st in stages.items():
    for word, rest in st["lines"]:
        if word == "RUN":
            args = shlex.split(rest)
            if len(args) < 2 or args[0] != "bash" or not re.match(r"^(/tmp/docker|scripts/docker)/[\w.-]+\.sh$", args[1]):
                problems.append(f"{name}: RUN must be `bash scripts/docker/X.sh ...`-like, got: {rest}")
                continue
            script = os.path.join(src, "scripts/docker", os.path.basename(args[1].split()[0]))
            if not os.access(script, os.X_OK):
                problems.append(f"{name}: {script} missing or not executable")
        m = re.match(r"--from=(\S+)", rest)
        if word == "COPY" and m and m.group(1) not in stages:
            problems.append(f"{name}: COPY --from={m.group(1)}: no such stage (yet)")
def chain(name):  # instructions of a stage and the stages it is built FROM
    st = stages[name]
    return (chain(st["from"]) if st["from"] in stages else []) + st["lines"]
for target in ("cpu", "gpu", "gpu-train"):
    if target not in stages:
        problems.append(f"no target {target}")
        continue
    lines = chain(target)
    users = [r for w, r in lines if w == "USER"]
    if not users or users[-1].split(":")[0] in ("0", "root"):
        problems.append(f"{target}: must end as a non-root USER")
    if target != "gpu-train" and not any(w == "HEALTHCHECK" for w, _ in lines):
        problems.append(f"{target}: no HEALTHCHECK")
    if target != "gpu-train":
        cmds = [r for w, r in lines if w == "CMD"]
        for want in ('"/models/current"', '"--controls", "/data/prepared"', '"--watch-checkpoint-s"'):
            if not cmds or want not in cmds[-1]:
                problems.append(f"{target}: default CMD lacks {want}")
run_lines = [r for st in stages.values() for w, r in st["lines"] if w == "RUN"]
print(f"Dockerfile: {len(stages)} stages, {len(run_lines)} RUN steps")
for p in problems:
    print("FAIL:", p)
sys.exit(1 if problems else 0)
PY
    ;;
  cpu-path)
    build=$(cd "${2:?check-deploy.sh cpu-path BUILD_DIR}" && pwd)
    [ -x "$build/client/cellflux-client" ] || { echo "SKIP: $build has no binaries"; exit 77; }
    bash "$here/install-build-deps.sh"
    CELLFLUX_STAGE_ALLOW_MISSING=1 bash "$here/stage.sh" "$build" "$tmp/stage"
    echo "runtime packages:"; sed 's/^/  /' "$tmp/stage/runtime-packages.txt"
    CELLFLUX_DOCKER_DRY_RUN=1 bash "$here/install-runtime.sh" "$tmp/stage/runtime-packages.txt"
    CELLFLUX_DOCKER_DRY_RUN=1 bash "$here/build.sh" cpu "$src" "$tmp/build" "$tmp/stage2"
    for b in "$tmp"/stage/root/usr/local/bin/cellflux-*; do
      [ "$(basename "$b")" = cellflux-healthcheck ] && continue
      "$b" --help > /dev/null || { echo "FAIL: staged $(basename "$b") --help"; exit 1; }
    done
    "$py" "$tmp/stage/root/usr/local/bin/cellflux-healthcheck" --help > /dev/null
    echo "cpu-path: staged $(ls "$tmp/stage/root/usr/local/bin" | wc -l) files"
    ;;
  *) echo "unknown check $what"; exit 2 ;;
esac
echo "check-deploy $what: ok"
