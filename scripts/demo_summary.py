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
run = ev.get("run", {})
results = list(csv.DictReader(open(f"{out}/screen/results.csv")))
failures = list(csv.DictReader(open(f"{out}/screen/failures.csv"))) if os.path.exists(f"{out}/screen/failures.csv") else []
print()
print("=" * 72)
print("cellflux demo: done")
print("=" * 72)
print(f"outputs          {out}/run/eval/report.html  (evaluation: metrics beside baselines, plots, images)")
print(f"                 {out}/run/eval/metrics.json, per_compound.csv")
print(f"                 {out}/screen/report.html")
print(f"                 {out}/screen/predictions.gct  ({len(results)} predictions, {len(failures)} failures)")
print(f"                 {out}/screen/  (16-bit TIFF per channel + RGB composite per prediction)")
print(f"checkpoint       {out}/run/checkpoints  (model {run.get('model_id', '?')})")

PREDICTORS = ["model", "control", "train_mean", "nearest_seen", "replicate"]
ROWS = [("gene_pearson_delta", "gene Pearson-Δ"), ("gene_pearson_delta_top50", "  on real top-50"),
        ("gene_sign_accuracy_top50", "  top-50 sign acc"), ("gene_mae", "gene MAE"),
        ("gene_truth_pearson", "gene Δ vs truth"), ("morph_pearson_delta", "morph Pearson-Δ"),
        ("retrieval_genes_top1", "retrieval genes top-1"), ("retrieval_genes_top5", "  top-5"),
        ("retrieval_genes_mean_rank", "  mean rank"), ("retrieval_morph_top1", "retrieval morph top-1"),
        ("retrieval_morph_top5", "  top-5"), ("retrieval_morph_mean_rank", "  mean rank"),
        ("retrieval_both_top1", "retrieval both top-1"), ("retrieval_both_top5", "  top-5"),
        ("retrieval_both_mean_rank", "  mean rank"), ("morph_frechet", "morph Fréchet")]
def metrics_table(ev, run, what):
    """Prints one evaluation's metrics beside its baselines, and whether the model wins."""
    shown = [p for p in PREDICTORS if any(p in ev.get(m, {}) for m, _ in ROWS)]
    ci = ev.get("ci95", {})
    if "gene_pearson_delta" not in ev and "morph_pearson_delta" not in ev:
        return
    print(f"{what:17s}{run.get('compounds', '?')} {run.get('split', '')} treatments x "
          f"{int(run.get('samples', 0)) // max(1, int(run.get('pairs', 1)))} draws; mean over treatments "
          f"[95% bootstrap CI]; units: genes standardized, profiles z-scored on controls")
    sel = run.get("guidance_selection")
    if sel:  # eval.guidance_candidates: chosen on the val split, before the reported split was scored
        print(f"{'':17s}guidance {run.get('guidance')} chosen on val: " + ", ".join(
            f"{c['guidance']:g} -> {c['score']:.3f}" for c in sel.get("candidates", []))
            + " (mean of gene and morph Pearson-Δ)")
    else:
        print(f"{'':17s}guidance {run.get('guidance')} (configured)")
    print(f"{'':24s}" + "".join(f"{('replicate (ceiling)' if p == 'replicate' else p):>22s}" for p in shown))
    for key, label in ROWS:
        if key not in ev:
            continue
        cells = []
        for p in shown:
            v = ev[key].get(p)
            if v is None:
                cells.append(f"{'-':>22s}")
                continue
            c = ci.get(key, {}).get(p)
            cells.append(f"{v:7.3f} [{c[0]:6.3f},{c[1]:6.3f}]" if c else f"{v:7.3f}{'':15s}")
        arrow = "↓" if key in ev.get("lower_is_better", []) else "↑"
        print(f"{label + ' ' + arrow:24s}" + "".join(f"{c:>22s}" for c in cells))

    def beats(metric, baselines):
        if metric not in ev or "model" not in ev[metric]:
            return None
        lower = metric in ev.get("lower_is_better", [])
        m = ev[metric]["model"]
        return all((m < ev[metric][b]) if lower else (m > ev[metric][b]) for b in baselines if b in ev[metric])

    non_ceiling = [p for p in shown if p not in ("model", "replicate")]
    checks = [("gene Pearson-Δ", beats("gene_pearson_delta", non_ceiling)),
              ("morph Pearson-Δ", beats("morph_pearson_delta", non_ceiling)),
              ("retrieval (both, mean rank)", beats("retrieval_both_mean_rank", non_ceiling)),
              ("gene MAE vs train-mean", beats("gene_mae", ["train_mean"]))]
    print("model wins       " + ", ".join(f"{name}: {'yes' if ok else 'NO'}" for name, ok in checks if ok is not None)
          + "  (every baseline but the replicate ceiling)")


metrics_table(ev, run, "evaluation")


def image_order(k):
    base, _, n = k.rpartition("_")
    return (base, int(n) if n.isdigit() else 0)


for key in sorted(ev, key=image_order):
    if key.startswith("image_"):
        base, n = key.rsplit("_", 1)
        name = {"image_fd_fallback": "image FD (fallback extractor, not FID)",
                "image_kd_fallback_x100": "image KD x100 (fallback extractor, not KID)",
                "image_fid": "FID", "image_kid_x100": "KID x100"}.get(base, base)
        print(f"{name} @{n} samples: " + ", ".join(f"{k} {v:.3f}" for k, v in ev[key].items()))
# The flow stage's periodic validation (EMA weights, val pairs): the image metric over training.
flow_log = f"{out}/logs/flow.log"
history, baseline = {}, None  # step → FD; flow.log accumulates over runs, the latest wins
if os.path.exists(flow_log):
    for line in open(flow_log):
        m = re.search(r"validation step (\d+): latent FD ([0-9.]+) \(control baseline ([0-9.]+)\)", line)
        if m:
            history[int(m.group(1))] = float(m.group(2))
            baseline = float(m.group(3))
served = re.search(r"@step(\d+)", run.get("model_id", ""))
if served:  # entries past the served checkpoint are from an earlier, longer run
    history = {k: v for k, v in history.items() if k <= int(served.group(1))}
if history:
    print(f"over training    validation latent FD by step (lower is better; controls {baseline:.3f}): "
          f"{', '.join(f'{k}: {v:.3f}' for k, v in sorted(history.items()))}")
rate = len(results) / screen_s if screen_s > 0 else 0.0
print(f"throughput       screen of {len(results)} predictions in {screen_s:.0f} s ({rate:.2f} predictions/s)")
print(f"time             main job {job_s:.0f} s; phases: {phases.rstrip(',')}")
unseen = f"{out}/run-unseen/eval/metrics.json"
if os.path.exists(unseen):  # compounds the model never saw: scaffolds held out, structure model
    ue = json.load(open(unseen))
    ur = ue.get("run", {})
    print(f"unseen compounds {out}/run-unseen/eval/report.html  (model {ur.get('model_id', '?')}, "
          f"encoder {ur.get('condition', '?')}; whole Bemis-Murcko scaffolds held out)")
    metrics_table(ue, ur, "  evaluation")
    res = f"{out}/screen-unseen/results.csv"
    if os.path.exists(res):
        rows = list(csv.DictReader(open(res)))
        print(f"  screen         {len(rows)} predictions of held-out compounds given only by SMILES: "
              f"{out}/screen-unseen/report.html")
