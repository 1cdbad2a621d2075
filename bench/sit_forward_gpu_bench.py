#!/usr/bin/python3
"""SiT forward on a GPU, side by side in one run (issue 17): the C++ forward
(build/bench/sit_forward_bench) in fp32 / tf32 / bf16 against the same network in PyTorch eager
(bf16 weights and activations, attention through F.scaled_dot_product_attention) and, where this
PyTorch has it, torch.compile of that eager model. TFLOP/s from the forward's FLOP count (the same
formula as sit_forward_bench.cc ForwardFlopsPerSample) and % of the chip's dense bf16 peak.

The Python network is tests/models/golden/sit_reference.py (timm Attention semantics, gene tokens)
with its attention swapped for SDPA. The model is the "sit" of --config (configs/paper.json:
SiT-XL/2 over 256 image + 16 gene tokens), random weights.

    python3 bench/sit_forward_gpu_bench.py --cpp build-gpu/bench/sit_forward_bench \
        [--config configs/paper.json] [--batch 2,32,64,128] [--precisions fp32,tf32,bf16]
        [--device cuda:0] [--reps 5] [--warmup 2] [--peak-tflops 0] [--compile-batch 64,128]
        [--budget-s 0] [--json out.json]

--peak-tflops 0 guesses the dense bf16 peak from the GPU name (H100/H200 SXM: 989, A100: 312;
otherwise no %). --budget-s > 0 skips what would start after that many seconds (torch.compile
first). On --device cpu it runs the same steps (try it with --config configs/tiny.json).
"""
import argparse
import json
import math
import os
import re
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "models", "golden"))
import sit_reference  # noqa: E402

PEAKS = [("H200", 989.4), ("H100", 989.4), ("A100", 312.0), ("L40S", 362.0)]


def flops_per_sample(c):
    """sit_forward_bench.cc ForwardFlopsPerSample, term by term."""
    p, grid = c["patch_size"], c["input_size"] // c["patch_size"]
    t, k = grid * grid, c.get("gene_tokens", 0)
    l, d = t + k, c["hidden_size"]
    m = d * c.get("mlp_ratio", 4.0)
    out = (2 if c.get("learn_sigma", False) else 1) * c["in_channels"]
    g = c.get("gene_latent_dim", 0)
    flops = 2 * t * c["in_channels"] * p * p * d + 2 * (256 * d + d * d)
    block = 2 * l * d * 3 * d + 2 * l * d * d + 2 * 2 * l * d * m + 2 * 2 * l * l * d + 2 * d * 6 * d
    flops += c["depth"] * block + 2 * t * d * p * p * out + 2 * d * 2 * d
    if k > 0:
        flops += 2 * g * k * d + 2 * k * d * g + 2 * d * 2 * d
    return flops


def timestep_embedding_on_device(t, dim, max_period=10000):
    """sit_reference.timestep_embedding with its frequencies made on t's device (the reference
    builds them on the CPU, which a CUDA t cannot multiply)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(0, half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


# PyTorch >= 2.0; 1.13 (Debian's, for trying the script on a CPU) has only the private one.
if hasattr(F, "scaled_dot_product_attention"):
    sdpa = F.scaled_dot_product_attention
else:
    def sdpa(q, k, v):
        return F._scaled_dot_product_attention(q, k, v)[0]


def sdpa_attention_forward(self, x):
    b, n, c = x.shape
    qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
    out = sdpa(qkv[0], qkv[1], qkv[2])
    return self.proj(out.transpose(1, 2).reshape(b, n, c))


def build_python_model(c, device):
    sit_reference.timestep_embedding = timestep_embedding_on_device
    torch.manual_seed(0)
    model = sit_reference.SiT(
        input_size=c["input_size"], patch_size=c["patch_size"], in_channels=c["in_channels"],
        hidden_size=c["hidden_size"], depth=c["depth"], num_heads=c["num_heads"],
        mlp_ratio=c.get("mlp_ratio", 4.0), num_classes=c["num_classes"],
        learn_sigma=c.get("learn_sigma", False), gene_latent_dim=c.get("gene_latent_dim", 0),
        gene_tokens=c.get("gene_tokens", 0))
    with torch.no_grad():
        for p in model.parameters():
            if p.abs().max() == 0:
                p.normal_(0.0, 0.02)
    for m in model.modules():
        if isinstance(m, sit_reference.Attention):
            m.forward = sdpa_attention_forward.__get__(m)
    return model.to(device=device, dtype=torch.bfloat16).eval()


def inputs(c, batch, device):
    g = torch.Generator().manual_seed(batch)
    x = torch.randn(batch, c["in_channels"], c["input_size"], c["input_size"], generator=g)
    t = torch.rand(batch, generator=g)
    y = torch.randint(0, c["num_classes"] + 1, (batch,), generator=g)
    gene = torch.randn(batch, c["gene_latent_dim"], generator=g) if c.get("gene_latent_dim", 0) else None
    to = dict(device=device)
    return (x.to(**to, dtype=torch.bfloat16), t.to(**to), y.to(**to),
            None if gene is None else gene.to(**to, dtype=torch.bfloat16))


def time_python(fn, args, device, reps, warmup):
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    times = []
    with torch.inference_mode():
        for i in range(warmup + reps):
            sync()
            start = time.perf_counter()
            fn(*args)
            sync()
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    return times[len(times) // 2]


def run_cpp(binary, config_path, precision, batches, device, reps, warmup, peak):
    cmd = [binary, "--config", config_path, "--batch", ",".join(map(str, batches)), "--device", device,
           "--precision", precision, "--reps", str(reps), "--warmup", str(warmup),
           "--peak-tflops", str(peak), "--threads", "0"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    rows = {}
    for line in p.stdout.splitlines():
        m = re.search(r"batch=(\d+) .*median_ms=([0-9.]+)", line)
        if m:
            rows[int(m.group(1))] = float(m.group(2))
    if p.returncode != 0:
        print(f"C++ {precision}: exit {p.returncode}: {p.stderr.strip().splitlines()[-1:]}", flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cpp", required=True)
    ap.add_argument("--config", default="configs/paper.json")
    ap.add_argument("--batch", default="2,32,64,128")
    ap.add_argument("--precisions", default="fp32,tf32,bf16")
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--peak-tflops", type=float, default=0)
    ap.add_argument("--compile-batch", default="64,128", help="batches torch.compile is timed at ('' = none)")
    ap.add_argument("--budget-s", type=float, default=0)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    t0 = time.time()
    left = lambda: float("inf") if args.budget_s <= 0 else args.budget_s - (time.time() - t0)  # noqa: E731

    with open(args.config) as f:
        c = json.load(f)
    c = c.get("sit", c)
    batches = [int(b) for b in args.batch.split(",")]
    peak = args.peak_tflops
    gpu = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu"
    if peak <= 0:
        peak = next((v for name, v in PEAKS if name in gpu), 0.0)
    gflop = flops_per_sample(c) / 1e9
    print(f"device {args.device} ({gpu}), torch {torch.__version__}, dense bf16 peak {peak or '?'} TFLOP/s, "
          f"{gflop:.1f} GFLOP per sample forward, config {args.config}", flush=True)

    results = {}  # (impl, batch) -> ms
    for precision in args.precisions.split(","):
        if left() < 30:
            print(f"C++ {precision}: skipped (budget)")
            continue
        for b, ms in run_cpp(args.cpp, args.config, precision, batches, args.device, args.reps,
                             args.warmup, peak).items():
            results[(f"C++ {precision}", b)] = ms
        print(f"C++ {precision} done at {time.time() - t0:.0f}s", flush=True)

    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    model = build_python_model(c, args.device)
    for b in batches:
        if left() < 15:
            break
        results[("eager bf16+SDPA", b)] = time_python(model, inputs(c, b, args.device), args.device,
                                                      args.reps, args.warmup)
    print(f"eager done at {time.time() - t0:.0f}s", flush=True)
    if hasattr(torch, "compile") and args.compile_batch:
        compiled = torch.compile(model, dynamic=False)
        for b in [int(s) for s in args.compile_batch.split(",")]:
            if left() < 90:
                print(f"torch.compile batch {b}: skipped (budget)")
                continue
            try:
                results[("torch.compile bf16", b)] = time_python(
                    compiled, inputs(c, b, args.device), args.device, args.reps, args.warmup + 1)
            except Exception as e:  # noqa: BLE001 (a compile failure is a result, not a crash)
                print(f"torch.compile batch {b}: {type(e).__name__}: {str(e)[:200]}")
        print(f"torch.compile done at {time.time() - t0:.0f}s", flush=True)

    impls = sorted({i for i, _ in results}, key=lambda s: (not s.startswith("C++"), s))
    print("\n| implementation | rows | ms / forward | TFLOP/s | % of dense bf16 peak |")
    print("| --- | ---: | ---: | ---: | ---: |")
    rows = []
    for impl in impls:
        for b in batches:
            if (impl, b) not in results:
                continue
            ms = results[(impl, b)]
            tflops = gflop * b / ms
            pct = f"{100 * tflops / peak:.1f}" if peak else ""
            print(f"| {impl} | {b} | {ms:.2f} | {tflops:.4g} | {pct} |")
            rows.append({"impl": impl, "rows": b, "ms": ms, "tflops": tflops,
                         "peak_pct": 100 * tflops / peak if peak else None})
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": gpu, "torch": torch.__version__, "peak_tflops": peak,
                       "gflop_per_sample": gflop, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
