#!/usr/bin/env bash
# cellflux-tool fingerprint end to end: JSON shape, the golden bits for one drug, --smiles-file
# with a bad line (exit 2, an "error" entry naming it), and text output.
set -euo pipefail
tool=${1:?usage: fingerprint_tool_check.sh CELLFLUX_TOOL}
py=/usr/bin/python3
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$tool" fingerprint --smiles 'CN(C)C(=N)N=C(N)N.Cl' --json > "$tmp/one.json"
"$py" - "$tmp/one.json" tests/chem/fingerprint_golden.tsv <<'PY'
import json, sys
got = json.load(open(sys.argv[1]))
assert set(got) == {"smiles", "canonical_smiles", "scaffold", "bits"}, got
row = [l.split("\t") for l in open(sys.argv[2]) if l.startswith("metformin hydrochloride\t")][0]
assert got["smiles"] == "CN(C)C(=N)N=C(N)N.Cl"
assert got["canonical_smiles"] == row[2], (got["canonical_smiles"], row[2])
assert got["bits"] == [int(b) for b in row[4].strip().split(",")], got["bits"]
print("one SMILES: ok")
PY
printf '# two drugs and a bad line\nCC(=O)Nc1ccc(O)cc1\nnot-a-smiles\nCS(C)=O\n' > "$tmp/list.txt"
set +e
"$tool" fingerprint --smiles-file "$tmp/list.txt" --json > "$tmp/list.json" 2> "$tmp/list.err"
rc=$?
set -e
[ "$rc" = 2 ] || { echo "FAIL: exit $rc with a bad SMILES, expected 2"; exit 1; }
grep -q "not-a-smiles" "$tmp/list.err" || { echo "FAIL: stderr does not name the bad SMILES"; cat "$tmp/list.err"; exit 1; }
"$py" -c '
import json, sys
a = json.load(open(sys.argv[1]))
assert len(a) == 3 and "error" in a[1] and "not-a-smiles" in a[1]["error"], a
assert a[0]["canonical_smiles"] == "CC(=O)Nc1ccc(O)cc1" and a[2]["scaffold"] == "", a
print("smiles file: ok")' "$tmp/list.json"
"$tool" fingerprint --smiles 'CCO' --radius 1 --bits 64 > "$tmp/text.txt"
[ "$(cut -f1 "$tmp/text.txt")" = "CCO" ] || { echo "FAIL: text output"; cat "$tmp/text.txt"; exit 1; }
echo "fingerprint tool: ok"
