#!/usr/bin/python3
"""The reference-parity goldens on a device, for every precision and attention kernel.

Runs `cellflux-tool sit-forward` (tests/models/golden/sit_gene_*) and `vae-encode` / `vae-decode`
(tests/models/golden/vae_*) on --device with --precision fp32/tf32/bf16 and --attention math/fused
and prints, per run, the max |difference| to the PyTorch golden outputs and that relative to the
golden's max |value|, with PASS/FAIL against the tolerance of each precision (fp32: 1e-5
absolute, the unit tests' bound; tf32 and bf16: 5e-2 relative, a sanity bound: the numbers are
what to read). The fp32 math and fused runs are the SDPA parity test of
common/models/attention.h on a GPU, where at::scaled_dot_product_attention picks the flash /
memory-efficient / cuDNN kernels the CPU build never runs.

    python3 scripts/device/parity_check.py --tool build-gpu/common/tools/cellflux-tool \
        [--device cuda:0] [--precisions fp32,tf32,bf16] [--attention math,fused] [--work DIR]

Exit status 1 when any run fails or exceeds its tolerance. Run from the repository root.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(ROOT, "tests", "python"))
import safetensors_io  # noqa: E402

GOLDEN = os.path.join(ROOT, "tests", "models", "golden")
TOLERANCE = {"fp32": 1e-5, "tf32": 5e-2, "bf16": 5e-2}
RELATIVE = {"fp32": False, "tf32": True, "bf16": True}
# tests/models/sit_test.cc GoldenConfig(gene=true): what sit_reference.py wrote the files with.
SIT_CONFIG = {"input_size": 8, "patch_size": 2, "in_channels": 4, "hidden_size": 32, "depth": 2,
              "num_heads": 4, "mlp_ratio": 4.0, "num_classes": 5, "learn_sigma": False,
              "gene_latent_dim": 6, "gene_tokens": 3}


def max_diff(a, ref):
    """(max |a - ref|, that / max |ref|)."""
    d = (a.double() - ref.double()).abs().max().item()
    return d, d / max(ref.double().abs().max().item(), 1e-30)


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    return p.returncode, (p.stdout + p.stderr).strip().splitlines()[-1:] or [""]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", required=True)
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--precisions", default="fp32,tf32,bf16")
    ap.add_argument("--attention", default="math,fused")
    ap.add_argument("--work", default="")
    args = ap.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="cellflux_parity_")
    os.makedirs(work, exist_ok=True)
    sit_config = os.path.join(work, "sit_config.json")
    with open(sit_config, "w") as f:
        json.dump(SIT_CONFIG, f)
    vae_io = safetensors_io.load(os.path.join(GOLDEN, "vae_io.safetensors"))
    decode_in = os.path.join(work, "vae_decode_in.safetensors")
    safetensors_io.save(decode_in, {"z": vae_io["sample"]})
    sit_io = safetensors_io.load(os.path.join(GOLDEN, "sit_gene_io.safetensors"))

    failed = 0
    print("| what | precision | attention | max abs diff to the golden | relative | tolerance | |")
    print("| --- | --- | --- | ---: | ---: | ---: | --- |")
    for precision in args.precisions.split(","):
        for attention in args.attention.split(","):
            common = ["--device", args.device, "--precision", precision, "--attention", attention]
            out = os.path.join(work, f"sit_{precision}_{attention}.safetensors")
            rc, tail = run([args.tool, "sit-forward", "--weights",
                            os.path.join(GOLDEN, "sit_gene_weights.safetensors"), "--config", sit_config,
                            "--inputs", os.path.join(GOLDEN, "sit_gene_io.safetensors"),
                            "--output", out] + common)
            checks = []
            if rc == 0:
                got = safetensors_io.load(out)
                checks.append(("sit v", max_diff(got["v"], sit_io["v_image"])))
                checks.append(("sit v_gene", max_diff(got["v_gene"], sit_io["v_gene"])))
            else:
                checks.append(("sit-forward", f"exit {rc}: {tail[0]}"))
            out = os.path.join(work, f"enc_{precision}_{attention}.safetensors")
            rc, tail = run([args.tool, "vae-encode", "--weights", os.path.join(GOLDEN, "vae_weights.safetensors"),
                            "--config", os.path.join(GOLDEN, "vae_config.json"),
                            "--inputs", os.path.join(GOLDEN, "vae_io.safetensors"), "--output", out] + common)
            if rc == 0:
                got = safetensors_io.load(out)
                checks.append(("vae mean", max_diff(got["mean"], vae_io["mean"])))
                checks.append(("vae logvar", max_diff(got["logvar"], vae_io["logvar"])))
            else:
                checks.append(("vae-encode", f"exit {rc}: {tail[0]}"))
            out = os.path.join(work, f"dec_{precision}_{attention}.safetensors")
            rc, tail = run([args.tool, "vae-decode", "--weights", os.path.join(GOLDEN, "vae_weights.safetensors"),
                            "--config", os.path.join(GOLDEN, "vae_config.json"), "--inputs", decode_in,
                            "--output", out] + common)
            if rc == 0:
                checks.append(("vae decoded", max_diff(safetensors_io.load(out)["x"], vae_io["decoded"])))
            else:
                checks.append(("vae-decode", f"exit {rc}: {tail[0]}"))
            for what, value in checks:
                if isinstance(value, tuple):
                    absolute, relative = value
                    ok = (relative if RELATIVE[precision] else absolute) <= TOLERANCE[precision]
                    shown = f"{absolute:.3g} | {relative:.3g}"
                else:
                    ok, shown = False, f"{value} |"
                failed += not ok
                kind = "relative" if RELATIVE[precision] else "absolute"
                print(f"| {what} | {precision} | {attention} | {shown} | {TOLERANCE[precision]:g} {kind} "
                      f"| {'PASS' if ok else 'FAIL'} |", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
