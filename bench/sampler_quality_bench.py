#!/usr/bin/python3
"""Euler vs Heun by the evaluation's own metrics (issue 16, bench/RESULTS.md "Samplers").

Re-runs `cellflux-train eval` on a trained run (default: the demo's, out/demo/run after
scripts/demo.sh) once per sampler setting, keeps each setting's metrics.json, and prints one table:
velocity evaluations per sample, gene Pearson-Δ, gene Δ vs the generator's truth (synthetic data),
gene MAE, morphology Pearson-Δ, retrieval mean rank (both modalities) and the eval's wall time.
The last setting run is the config's own (so the run's eval/ folder ends as the demo left it).

  /usr/bin/python3 bench/sampler_quality_bench.py [--build build] [--demo-out out/demo]
      [--settings euler:50,euler:100,heun:25,heun:50] [--json out.json]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

METRICS = [("gene_pearson_delta", "gene Pearson-Δ ↑"), ("gene_truth_pearson", "gene Δ vs truth ↑"),
           ("gene_mae", "gene MAE ↓"), ("morph_pearson_delta", "morph Pearson-Δ ↑"),
           ("retrieval_both_mean_rank", "retrieval mean rank ↓")]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--demo-out", default="out/demo")
    ap.add_argument("--config", default="configs/demo.yaml")
    ap.add_argument("--settings", default="euler:50,euler:100,heun:25,heun:50")
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    train = os.path.join(a.build, "trainer", "cellflux-train")
    run = os.path.join(a.demo_out, "run")
    if not os.path.exists(os.path.join(run, "checkpoints")):
        sys.exit(f"sampler_quality_bench: no trained run under {run}: run scripts/demo.sh first")
    settings = [s.split(":") for s in a.settings.split(",")]
    settings.append(["euler", "50"])  # leaves eval/ as the demo wrote it
    keep = tempfile.mkdtemp(prefix="cellflux-sampler-quality-")
    rows = []
    for i, (sampler, steps) in enumerate(settings):
        cmd = [train, "eval", "--config", a.config, "--data-dir", os.path.join(a.demo_out, "data"),
               "--work-dir", run, "--checkpoint", os.path.join(run, "checkpoints"),
               "--set", f"eval.ground_truth={a.demo_out}/synth/ground_truth.json",
               "--set", f"eval.sampler={sampler}", "--set", f"eval.num_steps={steps}"]
        t0 = time.time()
        log = os.path.join(keep, f"{sampler}{steps}.log")
        with open(log, "w") as f:
            rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT)
        if rc != 0:
            sys.exit(f"sampler_quality_bench: eval {sampler}:{steps} failed (exit {rc}); log: {log}")
        seconds = time.time() - t0
        if i == len(settings) - 1:
            break
        m = json.load(open(os.path.join(run, "eval", "metrics.json")))
        shutil.copy(os.path.join(run, "eval", "metrics.json"), os.path.join(keep, f"{sampler}{steps}.json"))
        evals = int(steps) * (2 if sampler == "heun" else 1)
        row = {"sampler": sampler, "steps": int(steps), "velocity_evals": evals, "eval_seconds": seconds}
        for key, _ in METRICS:
            row[key] = m.get(key, {}).get("model")
            row[key + "_ci95"] = m.get("ci95", {}).get(key, {}).get("model")
        rows.append(row)
        print(f"{sampler} {steps}: done in {seconds:.0f} s", file=sys.stderr)
    head = "| sampler | steps | velocity evaluations | " + " | ".join(h for _, h in METRICS) + " | eval wall s |"
    print(head)
    print("| --- | ---: | ---: | " + " | ".join("---:" for _ in METRICS) + " | ---: |")
    for r in rows:
        cells = []
        for key, _ in METRICS:
            v, ci = r[key], r[key + "_ci95"]
            cells.append("-" if v is None else (f"{v:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{v:.3f}"))
        print(f"| {r['sampler']} | {r['steps']} | {r['velocity_evals']} | " + " | ".join(cells) +
              f" | {r['eval_seconds']:.0f} |")
    if a.json:
        json.dump(rows, open(a.json, "w"), indent=1)
    print(f"metrics.json per setting: {keep}", file=sys.stderr)


if __name__ == "__main__":
    main()
