#!/usr/bin/env bash
# End to end for compounds by structure (issue 18), with the real binaries (CTest: e2e_smiles):
#   cellflux-tool init-checkpoint (configs/tiny-chem.json, random weights, a vocabulary of three
#   drugs with SMILES) → cellflux-server (--structure-cache 2) on loopback
#   → cellflux-client info (conditions on: structure)
#   → predict --smiles: a compound outside the vocabulary (ibuprofen, nearest training compound
#     in results.csv, the GCT and the row record), a vocabulary compound spelled another way
#     (in_vocabulary), an unparsable SMILES (INVALID_ARGUMENT naming it, exit 1)
#   → screen: a plan mixing a perturbation_id row and smiles rows (more distinct compounds than
#     the cache holds: eviction), every row done
#   → the Python package: predict(smiles=..., dose_um=...) → result.structure
#   → /metrics: structure cache hits and misses; the server log names the SMILES
#   → SIGTERM: drain, exit 0
#
#   scripts/e2e_smiles_check.sh BUILD_DIR     exit 0 pass, 1 fail, 77 skip (binaries not built)
set -euo pipefail
source "$(dirname "$0")/e2e_lib.sh"
e2e_init e2e-smiles "${1:?usage: e2e_smiles_check.sh BUILD_DIR}" tool server client
expr="$fixtures/l1000/test_l1000.gct:LJP005_A375_24H_X1_B19:A03"

say "tiny-chem checkpoint: aspirin, caffeine, metformin HCl as vocabulary rows 0-2"
printf '%s\n' '# vocabulary rows 0-2' 'CC(=O)Oc1ccccc1C(=O)O' 'CN1C=NC2=C1C(=O)N(C(=O)N2C)C' \
  'CN(C)C(=N)N=C(N)N.Cl' > "$tmp/smiles.txt"
"$tool" init-checkpoint --config "$src/configs/tiny-chem.json" --out "$tmp/ckpt" --perturbations 8 \
  --smiles-file "$tmp/smiles.txt" > "$tmp/init.log" 2>&1 || { cat "$tmp/init.log"; fail "init-checkpoint"; }
grep -q "CN(C)C(=N)N=C(N)N	" "$tmp/ckpt/perturbations.tsv" \
  || { cat "$tmp/ckpt/perturbations.tsv"; fail "perturbations.tsv lacks metformin's canonical SMILES"; }

addr=127.0.0.1:$(free_port)
metrics=127.0.0.1:$(free_port)
say "cellflux-server on $addr (structure cache of 2 compounds)"
"$server" --checkpoint "$tmp/ckpt" --listen "$addr" --metrics-listen "$metrics" --threads 1 \
  --max-batch 8 --structure-cache 2 --drain-grace-s 20 > "$tmp/server.log" 2>&1 &
server_pid=$!
await_server "$addr"
cat "$tmp/info.txt"
grep -q "conditions on:  structure" "$tmp/info.txt" || fail "info does not say the model takes structures"
mkdir -p "$tmp/site"
cp "$fixtures"/bbbc047-site/*.tif "$tmp/site/"

say "predict --smiles: ibuprofen at 10 µM (outside the vocabulary)"
"$client" predict --server "$addr" --smiles 'CC(C)Cc1ccc(cc1)C(C)C(=O)O' --dose-um 10 \
  --control-dir "$tmp/site" --control-expression "$expr" --samples 1 --steps 3 --seed 3 \
  --out "$tmp/ibu" > "$tmp/ibu.log" 2>&1 || { cat "$tmp/ibu.log"; fail "predict --smiles ibuprofen"; }
"$py" - "$tmp/ibu" <<'PY' || fail "ibuprofen outputs"
import csv, json, os, sys
out = sys.argv[1]
rows = list(csv.DictReader(open(os.path.join(out, "results.csv"))))
assert len(rows) == 1, rows
r = rows[0]
assert r["smiles"] == "CC(C)Cc1ccc(cc1)C(C)C(=O)O" and r["dose_um"] == "10", r
assert r["canonical_smiles"] == "CC(C)Cc1ccc(C(C)C(=O)O)cc1", r["canonical_smiles"]
assert r["in_vocabulary"] == "false", r
assert r["nearest_perturbation_id"].startswith("BRD-K0000000"), r
assert 0 < float(r["nearest_similarity"]) < 1, r
assert float(r["model_dose_um"]) == 10, r
record = json.load(open(os.path.join(out, "rows", "r000000.json")))
assert record["canonical_smiles"] == r["canonical_smiles"], record
gct = open(os.path.join(out, "predictions.gct")).read()
assert "nearest_perturbation_id" in gct and r["nearest_perturbation_id"] in gct
print("ibuprofen: nearest", r["nearest_perturbation_id"], "Tanimoto", r["nearest_similarity"])
PY

say "predict --smiles: metformin spelled another way (in the vocabulary)"
"$client" predict --server "$addr" --smiles 'NC(N)=NC(=N)N(C)C' --control-dir "$tmp/site" \
  --control-expression "$expr" --samples 1 --steps 3 --seed 3 --out "$tmp/met" > "$tmp/met.log" 2>&1 \
  || { cat "$tmp/met.log"; fail "predict --smiles metformin"; }
"$py" - "$tmp/met/results.csv" <<'PY' || fail "metformin outputs"
import csv, sys
r = next(csv.DictReader(open(sys.argv[1])))
assert r["in_vocabulary"] == "true", r
assert r["nearest_perturbation_id"] == "BRD-K00000002-001-01-1", r
assert float(r["nearest_similarity"]) == 1.0 and float(r["model_dose_um"]) == 10, r
PY

say "predict --smiles: unparsable"
set +e
"$client" predict --server "$addr" --smiles 'C1CC(N' --control-dir "$tmp/site" \
  --control-expression "$expr" --samples 1 --steps 3 --out "$tmp/bad" > "$tmp/bad.log" 2>&1
bad_rc=$?
set -e
[ "$bad_rc" = 1 ] || { cat "$tmp/bad.log"; fail "an unparsable SMILES exited $bad_rc, expected 1"; }
grep -q "INVALID_ARGUMENT" "$tmp/bad.log" && grep -q "C1CC(N" "$tmp/bad.log" \
  || { cat "$tmp/bad.log"; fail "the error does not name the SMILES"; }

say "screen: a perturbation_id row and smiles rows, more compounds than the cache holds"
pert=$(sed -n 2p "$tmp/ckpt/perturbations.tsv" | cut -f2)
cat > "$tmp/plan.csv" <<EOF
perturbation_id,smiles,dose_um,control_dir,control_expression,note
$pert,,,$tmp/site,$expr,by id
,OC(=O)c1ccccc1O,1,$tmp/site,$expr,salicylic acid
,CCO,,$tmp/site,$expr,ethanol
,OC(=O)c1ccccc1O,1,$tmp/site,$expr,salicylic acid again
,CC(C)Cc1ccc(cc1)C(C)C(=O)O,10,$tmp/site,$expr,ibuprofen again
EOF
"$client" screen --server "$addr" --plan "$tmp/plan.csv" --out "$tmp/screen" --steps 3 --samples 1 \
  --seed 5 --concurrency 1 --no-progress > "$tmp/screen.log" 2>&1 || { cat "$tmp/screen.log"; fail "screen"; }
grep -q "5/5 rows done" "$tmp/screen.log" || { cat "$tmp/screen.log"; fail "screen did not finish 5 rows"; }
"$py" - "$tmp/screen" <<'PY' || fail "screen outputs"
import csv, os, sys
rows = list(csv.DictReader(open(os.path.join(sys.argv[1], "results.csv"))))
assert [r["canonical_smiles"] for r in rows] == \
    ["", "O=C(O)c1ccccc1O", "CCO", "O=C(O)c1ccccc1O", "CC(C)Cc1ccc(C(C)C(=O)O)cc1"], rows
assert rows[0]["in_vocabulary"] == "" and rows[1]["in_vocabulary"] == "false", rows
report = open(os.path.join(sys.argv[1], "report.html")).read()
assert "nearest training compound" in report
PY

say "Python package: predict(smiles=..., dose_um=...)"
PYTHONPATH="$src/client/python" "$py" - "$addr" <<'PY' || fail "Python predict(smiles=...)"
import sys
import numpy as np
import cellflux
with cellflux.Client(sys.argv[1]) as c:
    info = c.info()
    assert info.condition == "structure", info.condition
    rng = np.random.default_rng(0)
    image = rng.integers(0, 4096, size=(5, 64, 64), dtype=np.uint16)
    expression = np.zeros(len(info.gene_ids), np.float32)
    r = c.predict(smiles="CN1C=NC2=C1C(=O)N(C(=O)N2C)C", dose_um=10, control=image,
                  expression=expression, steps=2, seed=1)
    assert r.images.shape == (1, 5, 64, 64), r.images.shape
    assert r.structure.in_vocabulary, r.structure
    assert r.structure.nearest_perturbation_id == "BRD-K00000001-001-01-1", r.structure
    try:
        c.predict(smiles="CCO", perturbation="BRD-K00000000-001-01-1", control=image)
    except ValueError as e:
        assert "exactly one" in str(e)
    else:
        raise AssertionError("both perturbation and smiles accepted")
print("python: caffeine in the vocabulary as", r.structure.nearest_perturbation_id)
PY

say "/metrics and the log"
"$py" - "http://$metrics/metrics" <<'PY' || fail "metrics"
import re, sys, urllib.request
text = urllib.request.urlopen(sys.argv[1], timeout=10).read().decode()
def value(name):
    m = re.search(r"^" + name + r" (\S+)$", text, re.M)
    assert m, name + " missing"
    return float(m.group(1))
hits, misses = value("cellflux_structure_cache_hits_total"), value("cellflux_structure_cache_misses_total")
# misses: ibuprofen, metformin, C1CC(N, salicylic acid, ethanol, ibuprofen again (evicted by
# then: the cache keeps 2 compounds), caffeine; the hit: salicylic acid again
assert misses == 7 and hits == 1, (hits, misses)
print(f"structure cache: {hits:.0f} hit, {misses:.0f} misses")
PY
grep -q 'smiles="CC(C)Cc1ccc(cc1)C(C)C(=O)O"' "$tmp/server.log" || fail "the log line does not name the SMILES"

say "SIGTERM: drain and exit 0"
kill -TERM "$server_pid"
wait "$server_pid" && rc=0 || rc=$?
server_pid=""
[ "$rc" = 0 ] || fail "server exited $rc after SIGTERM"
say "PASS"
