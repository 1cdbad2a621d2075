#!/usr/bin/python3
"""SiT forward latency: C++ (build/bench/sit_forward_bench, c10::InferenceMode) vs PyTorch eager
(torch.inference_mode) on the same network, same input, same thread count.

The Python network is the plain-PyTorch reference of tests/models/golden/sit_reference.py (timm
Attention/Mlp semantics, as the official SiT models.py). To cancel out load from other processes
the two sides alternate: for each (threads, batch) the script runs `rounds` rounds of
[C++ subprocess, Python in-process], each timing `reps` forwards after warm-up, and reports the
median over all rounds' medians, as wall time and as process CPU time (all threads; the CPU
time is what to compare on a machine other jobs are loading).

    /usr/bin/python3 bench/sit_forward_bench.py --cpp build/bench/sit_forward_bench \
        [--threads 1,2] [--batch 1,8,32] [--rounds 3] [--channels 4] [--markdown]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "models", "golden"))
from sit_reference import SiT  # noqa: E402

SIZES = {"S": (12, 384, 6), "B": (12, 768, 12), "L": (24, 1024, 16), "XL": (28, 1152, 16)}


def reps_for(batch, scale):
    return max(1, int(scale * 24) // batch)


def python_median_ms(model, batch, channels, input_size, reps, warmup):
    x = torch.randn(batch, channels, input_size, input_size)
    t = torch.rand(batch)
    y = torch.randint(0, 1001, (batch,))
    times, cpu = [], []
    with torch.inference_mode():
        for i in range(warmup + reps):
            cpu_start = time.process_time()
            start = time.perf_counter()
            model(x, t, y)
            end = time.perf_counter()
            cpu_end = time.process_time()
            if i >= warmup:
                times.append((end - start) * 1e3)
                cpu.append((cpu_end - cpu_start) * 1e3)
    return statistics.median(times), statistics.median(cpu)


def cpp_median_ms(binary, args, batch, threads, reps):
    cmd = [binary, "--size", args.size, "--patch", str(args.patch), "--input", str(args.input),
           "--channels", str(args.channels), "--threads", str(threads), "--batch", str(batch),
           "--reps", str(reps), "--warmup", str(args.warmup)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    m = re.search(r"median_ms=([0-9.]+) .*cpu_ms=([0-9.]+)", out)
    if not m:
        raise RuntimeError(f"unexpected output from {binary}: {out!r}")
    return float(m.group(1)), float(m.group(2))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cpp", required=True, help="path of the built sit_forward_bench")
    ap.add_argument("--size", default="S")
    ap.add_argument("--patch", type=int, default=2)
    ap.add_argument("--input", type=int, default=32)
    ap.add_argument("--channels", type=int, default=4)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batch", default="1,8,32")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=2, help="untimed forwards before each timed set")
    ap.add_argument("--rep-scale", type=float, default=1.0, help="timed forwards = max(1, 24·scale / batch)")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()

    depth, hidden, heads = SIZES[args.size]
    torch.manual_seed(0)
    model = SiT(input_size=args.input, patch_size=args.patch, in_channels=args.channels, hidden_size=hidden,
                depth=depth, num_heads=heads, mlp_ratio=4.0, num_classes=1000, learn_sigma=True).eval()
    rows = []
    for threads in [int(s) for s in args.threads.split(",")]:
        torch.set_num_threads(threads)
        for batch in [int(s) for s in args.batch.split(",")]:
            reps = reps_for(batch, args.rep_scale)
            cpp, py = [], []
            for _ in range(args.rounds):
                cpp.append(cpp_median_ms(args.cpp, args, batch, threads, reps))
                py.append(python_median_ms(model, batch, args.channels, args.input, reps, args.warmup))
            c, p = statistics.median(v[0] for v in cpp), statistics.median(v[0] for v in py)
            cc, pc = statistics.median(v[1] for v in cpp), statistics.median(v[1] for v in py)
            rows.append((threads, batch, c, p, cc, pc))
            print(f"threads={threads} batch={batch} wall: cpp_ms={c:.1f} python_ms={p:.1f} ratio={p / c:.3f}; "
                  f"cpu: cpp_ms={cc:.1f} python_ms={pc:.1f} ratio={pc / cc:.3f} "
                  f"(wall rounds cpp {['%.0f' % v[0] for v in cpp]} python {['%.0f' % v[0] for v in py]})",
                  flush=True)
    if args.markdown:
        print("\n| threads | batch | C++ wall ms | eager wall ms | eager / C++ (wall) "
              "| C++ CPU ms | eager CPU ms | eager / C++ (CPU) |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for threads, batch, c, p, cc, pc in rows:
            print(f"| {threads} | {batch} | {c:.0f} | {p:.0f} | {p / c:.2f} | {cc:.0f} | {pc:.0f} | {pc / cc:.2f} |")


if __name__ == "__main__":
    main()
