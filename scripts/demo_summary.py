"""Prints the demo's final summary from the files the phases wrote.

usage: demo_summary.py OUT_DIR SCREEN_SECONDS JOB_SECONDS "phase=s,phase=s,..."
"""
import csv
import json
import os
import re
import sys

out, screen_s, job_s, phases = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
ev = json.load(open(f"{out}/run/eval/metrics.json"))
results = list(csv.DictReader(open(f"{out}/screen/results.csv")))
failures = list(csv.DictReader(open(f"{out}/screen/failures.csv"))) if os.path.exists(f"{out}/screen/failures.csv") else []
print()
print("=" * 72)
print("cellflux demo: done")
print("=" * 72)
print(f"outputs          {out}/screen/report.html")
print(f"                 {out}/screen/predictions.gct  ({len(results)} predictions, {len(failures)} failures)")
print(f"                 {out}/screen/  (16-bit TIFF per channel + RGB composite per prediction)")
print(f"                 {out}/run/eval/figure.png  (control / real / generated)")
print(f"checkpoint       {out}/run/checkpoints  (model {ev.get('model_id', '?')})")
if "gene_mae" in ev:
    print(f"gene MAE         {ev['gene_mae']:.4f}  (standardized units, {ev.get('samples', ev['pairs'])} samples "
          f"of {ev['pairs']} {ev['split']} pairs)")
    print(f"  baselines      control-as-prediction {ev['gene_mae_baseline_control']:.4f}, "
          f"train-mean {ev.get('gene_mae_baseline_train_mean', float('nan')):.4f}")
for key, label in (("fid", "FID"), ("kid_x100", "KID x100"), ("fd_fallback", "image FD (fallback extractor, not FID)"),
                   ("kd_fallback_x100", "image KD x100 (fallback extractor, not KID)")):
    if key in ev:
        vals = ", ".join(f"{k}: {v:.3f}" for k, v in ev[key].items())
        base = ", ".join(f"{k}: {v:.3f}" for k, v in ev.get(f"{key}_baseline_control", {}).items())
        print(f"{label:16s} {vals}" + (f"  (control-as-prediction {base})" if base else ""))
# The flow stage's periodic validation (EMA weights, val pairs): the image metric over training.
flow_log = f"{out}/logs/flow.log"
history, baseline = {}, None  # step → FD; flow.log accumulates over runs, the latest wins
if os.path.exists(flow_log):
    for line in open(flow_log):
        m = re.search(r"validation step (\d+): latent FD ([0-9.]+) \(control baseline ([0-9.]+)\)", line)
        if m:
            history[int(m.group(1))] = float(m.group(2))
            baseline = float(m.group(3))
served = re.search(r"@step(\d+)", ev.get("model_id", ""))
if served:  # entries past the served checkpoint are from an earlier, longer run
    history = {k: v for k, v in history.items() if k <= int(served.group(1))}
if history:
    print(f"over training    validation latent FD by step (lower is better; controls {baseline:.3f}): "
          f"{', '.join(f'{k}: {v:.3f}' for k, v in sorted(history.items()))}")
rate = len(results) / screen_s if screen_s > 0 else 0.0
print(f"throughput       screen of {len(results)} predictions in {screen_s:.0f} s ({rate:.2f} predictions/s)")
print(f"time             main job {job_s:.0f} s; phases: {phases.rstrip(',')}")
