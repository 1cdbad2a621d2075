"""Writes the demo's screen plan: held-out pairs first (test, then val), then training pairs, up to
N rows; each predicts the pair's perturbation on its pre-drawn same-plate DMSO control well.

usage: demo_plan.py PREPARED_DATA_DIR N > plan.csv
"""
import csv
import sys

data, n = sys.argv[1], int(sys.argv[2])
vocab = set()
with open(f"{data}/perturbations.tsv") as f:
    for row in csv.DictReader(f, delimiter="\t"):
        vocab.add(row["perturbation_id"])
rows = []
with open(f"{data}/manifest.csv") as f:
    for row in csv.DictReader(f):
        if row["perturbation"] in vocab:
            rows.append(row)
order = {"test": 0, "val": 1, "train": 2}
rows.sort(key=lambda r: (order[r["split"]], int(r["pair_id"])))
out = csv.writer(sys.stdout)
out.writerow(["perturbation_id", "control_ref", "pair_id", "split", "treatment"])
for r in rows[:n]:
    out.writerow([r["perturbation"], f'{r["cp_plate"]}:{r["control_well"]}', r["pair_id"], r["split"], r["key"]])
