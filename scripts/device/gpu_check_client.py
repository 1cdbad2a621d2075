#!/usr/bin/env python3
"""The gRPC side of scripts/device/gpu_check.sh. Needs the cellflux.v1 stubs on PYTHONPATH (for
predict) and grpcio.

  gpu_check_client.py health ADDR                   exit 0 when grpc.health.v1 says SERVING
  gpu_check_client.py predict ADDR OUT.json --perturbation ID --plate P --well W [--site N]
                      [--seed 7] [--steps 20] [--samples 1]
                                                    one Predict of a bank control, raw 16-bit
                                                    output; writes expression and pixels as JSON
  gpu_check_client.py concurrent ADDR OUT.json --perturbation ID --plate P --well W [--n 16] ...
                                                    the same request as predict, sent with n - 1
                                                    others (seeds seed+1 ...) at once; writes the
                                                    seed's own output (streams/batching check)
  gpu_check_client.py compare A.json B.json         max |A - B| of expression and pixels
  gpu_check_client.py metric URL NAME               the value of a /metrics sample (sum over labels)
"""
import argparse
import json
import re
import struct
import sys
import time
import urllib.request

import grpc


def health(addr):
    # grpc.health.v1.Health/Check with an empty HealthCheckRequest; the reply's field 1 is the
    # status (1 = SERVING). Raw bytes, so no grpcio-health-checking package is needed.
    with grpc.insecure_channel(addr) as channel:
        check = channel.unary_unary("/grpc.health.v1.Health/Check")
        reply = check(b"", timeout=5)
    return reply == b"\x08\x01"


def request(args, seed):
    """One Predict of args' bank control with `seed`; the output as predict writes it."""
    from cellflux.v1 import cellflux_pb2 as pb
    from cellflux.v1 import cellflux_pb2_grpc as pb_grpc
    with grpc.insecure_channel(args.addr) as channel:
        stub = pb_grpc.CellFluxStub(channel)
        req = pb.PredictRequest(perturbation_id=args.perturbation, request_id=f"gpu-check-{seed}")
        req.ref.plate, req.ref.well, req.ref.site = args.plate, args.well, args.site
        req.options.num_steps = args.steps
        req.options.num_samples = args.samples
        req.options.seed = seed
        req.options.output_encoding = pb.RAW_U16_LE
        t0 = time.perf_counter()
        resp = stub.Predict(req, timeout=300)
        wall = time.perf_counter() - t0
    out = {"model_id": resp.model_id, "seconds": wall, "compute_seconds": resp.timing.compute_seconds,
           "samples": []}
    for p in resp.predictions:
        pixels = []
        for ch in p.image.channels:
            pixels.append(list(struct.unpack(f"<{len(ch.data) // 2}H", ch.data)))
        out["samples"].append({"seed": p.seed, "expression": list(p.expression), "pixels": pixels})
    return out


def concurrent(args):
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=args.n) as pool:
        futures = [pool.submit(request, args, args.seed + k) for k in range(args.n)]
        outs = [f.result() for f in futures]
    with open(args.out, "w") as f:
        json.dump(outs[0], f)
    slowest = max(o["seconds"] for o in outs)
    print(f"concurrent {args.addr}: {args.n} requests, slowest {slowest:.3f} s")


def predict(args):
    out = request(args, args.seed)
    wall = out["seconds"]
    with open(args.out, "w") as f:
        json.dump(out, f)
    s = out["samples"][0]
    print(f"predict {args.addr}: {len(out['samples'])} samples in {wall:.3f} s (compute "
          f"{out['compute_seconds']:.3f} s), {len(s['expression'])} genes, {len(s['pixels'])} channels "
          f"of {len(s['pixels'][0])} pixels")


def compare(a_path, b_path):
    a, b = json.load(open(a_path)), json.load(open(b_path))
    de = dp = 0.0
    n_px = n_diff = 0
    for sa, sb in zip(a["samples"], b["samples"]):
        de = max([de] + [abs(x - y) for x, y in zip(sa["expression"], sb["expression"])])
        for ca, cb in zip(sa["pixels"], sb["pixels"]):
            for x, y in zip(ca, cb):
                n_px += 1
                if x != y:
                    n_diff += 1
                    dp = max(dp, abs(x - y))
    print(f"max_abs_expression={de:.6g} max_abs_pixel={dp:g} pixels_differing={n_diff}/{n_px}")


def metric(url, name):
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    values = [float(m.group(1)) for m in re.finditer(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", text, re.M)]
    if not values:
        sys.exit(f"{name} not on {url}")
    print(f"{sum(values):g}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    h = sub.add_parser("health")
    h.add_argument("addr")
    for name in ("predict", "concurrent"):
        p = sub.add_parser(name)
        p.add_argument("addr")
        p.add_argument("out")
        p.add_argument("--perturbation", required=True)
        p.add_argument("--plate", required=True)
        p.add_argument("--well", required=True)
        p.add_argument("--site", type=int, default=0)
        p.add_argument("--seed", type=int, default=7)
        p.add_argument("--steps", type=int, default=20)
        p.add_argument("--samples", type=int, default=1)
        if name == "concurrent":
            p.add_argument("--n", type=int, default=16)
    c = sub.add_parser("compare")
    c.add_argument("a")
    c.add_argument("b")
    m = sub.add_parser("metric")
    m.add_argument("url")
    m.add_argument("name")
    args = ap.parse_args()
    if args.cmd == "health":
        try:
            ok = health(args.addr)
        except grpc.RpcError:
            ok = False
        return 0 if ok else 1
    if args.cmd == "predict":
        predict(args)
    elif args.cmd == "concurrent":
        concurrent(args)
    elif args.cmd == "compare":
        compare(args.a, args.b)
    elif args.cmd == "metric":
        metric(args.url, args.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
