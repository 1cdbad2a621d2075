"""Writes the demo's screen plan: held-out pairs first (test, then val), then training pairs, up to
N rows; each predicts the pair's perturbation on its pre-drawn same-plate DMSO control well.

usage: demo_plan.py PREPARED_DATA_DIR N [--by-smiles] > plan.csv

--by-smiles: the held-out compounds OUTSIDE the training vocabulary (a compound-scaffold split),
given only by their SMILES and dose (µM), for a model with a structure encoder; columns smiles,
dose_um instead of perturbation_id.
"""
import csv
import sys

data, n = sys.argv[1], int(sys.argv[2])
by_smiles = "--by-smiles" in sys.argv[3:]
vocab = set()
with open(f"{data}/perturbations.tsv") as f:
    for row in csv.DictReader(f, delimiter="\t"):
        vocab.add(row["perturbation_id"])
structures = {}
if by_smiles:
    with open(f"{data}/structures.tsv") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            structures[row["perturbation_id"]] = row["smiles"]
rows = []
with open(f"{data}/manifest.csv") as f:
    for row in csv.DictReader(f):
        if by_smiles:
            if row["perturbation"] not in vocab and row["perturbation"] in structures:
                rows.append(row)
        elif row["perturbation"] in vocab:
            rows.append(row)
order = {"test": 0, "val": 1, "train": 2}
rows.sort(key=lambda r: (order[r["split"]], int(r["pair_id"])))
out = csv.writer(sys.stdout)
if by_smiles:
    out.writerow(["smiles", "dose_um", "control_ref", "pair_id", "split", "treatment", "perturbation"])
else:
    out.writerow(["perturbation_id", "control_ref", "pair_id", "split", "treatment"])
for r in rows[:n]:
    ref = f'{r["cp_plate"]}:{r["control_well"]}'
    if by_smiles:
        out.writerow([structures[r["perturbation"]], r["dose"], ref, r["pair_id"], r["split"], r["key"],
                      r["perturbation"]])
    else:
        out.writerow([r["perturbation"], ref, r["pair_id"], r["split"], r["key"]])
