#!/usr/bin/python3
"""Euler vs Heun through cellflux-server: error against a fine reference per velocity evaluations
(bench/RESULTS.md "Samplers").

Starts one cellflux-server on a checkpoint (default: a tiny random one from
`cellflux-tool init-checkpoint --config configs/tiny.json`), then for --requests control/seed/
perturbation triples asks for the same sample with each setting (same seed ⇒ same z_0) and
compares it with a reference integration (--reference, default Heun with 200 steps = 400 velocity
evaluations):
  * gene MAE: mean |expression − reference| over the genes (raw expression units),
  * pixel MAE: mean |pixels − reference| over the image (12-bit units),
  * wall time per request (the server alone, one request at a time).
Settings default to Euler 50 / 100 and Heun 25 / 50 (50 / 100 / 50 / 100 evaluations).

  /usr/bin/python3 bench/sampler_accuracy_bench.py --build build [--checkpoint DIR]
      [--requests 16] [--guidance 1.2] [--settings euler:50,euler:100,heun:25,heun:50]
      [--reference heun:200]
"""
import argparse
import os
import random
import struct
import subprocess
import sys
import tempfile
import time

import grpc


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--config", default="configs/tiny.json")
    ap.add_argument("--checkpoint", default="", help="checkpoint dir; empty = a tiny random one")
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--guidance", type=float, default=1.2)
    ap.add_argument("--settings", default="euler:50,euler:100,heun:25,heun:50")
    ap.add_argument("--reference", default="heun:200")
    args = ap.parse_args()

    src = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tmp = tempfile.mkdtemp(prefix="cellflux-sampler-bench.")
    plugin = subprocess.check_output(["which", "grpc_python_plugin"]).decode().strip()
    subprocess.run(["protoc", f"--proto_path={src}/proto", f"--python_out={tmp}", f"--grpc_out={tmp}",
                    f"--plugin=protoc-gen-grpc={plugin}", f"{src}/proto/cellflux/v1/cellflux.proto"], check=True)
    sys.path.insert(0, tmp)
    from cellflux.v1 import cellflux_pb2 as pb
    from cellflux.v1 import cellflux_pb2_grpc as pb_grpc

    ckpt = args.checkpoint
    if not ckpt:
        ckpt = os.path.join(tmp, "ckpt")
        subprocess.run([f"{args.build}/common/tools/cellflux-tool", "init-checkpoint", "--config", args.config,
                        "--out", ckpt, "--perturbations", "16"], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    port = free_port()
    log = open(os.path.join(tmp, "server.log"), "w")
    server = subprocess.Popen([f"{args.build}/server/cellflux-server", "--checkpoint", ckpt, "--listen",
                               f"127.0.0.1:{port}", "--metrics-listen", ""], stdout=log, stderr=subprocess.STDOUT)
    try:
        stub = pb_grpc.CellFluxStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
        deadline = time.time() + 180
        while True:
            try:
                info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=5)
                break
            except grpc.RpcError:
                if time.time() > deadline:
                    raise
                time.sleep(0.5)
        ids = [p.id for p in stub.ListPerturbations(pb.ListPerturbationsRequest(page_size=64), timeout=10).perturbations]
        size = info.image_size

        def request(i, sampler, steps):
            r = random.Random(i)
            req = pb.PredictRequest(perturbation_id=ids[i % len(ids)])
            req.data.image.height = req.data.image.width = size
            for name in info.channel_names:
                plane = struct.pack(f"<{size * size}H", *[r.randrange(4096) for _ in range(size * size)])
                req.data.image.channels.add(name=name, encoding=pb.RAW_U16_LE, data=plane)
            req.data.expression.values.extend([r.gauss(0, 1) for _ in info.gene_ids])
            req.options.num_steps = steps
            req.options.guidance_scale = args.guidance
            req.options.seed = 1000 + i
            req.options.sampler = pb.HEUN if sampler == "heun" else pb.EULER
            return req

        def run(i, setting):
            sampler, steps = setting.split(":")
            t0 = time.perf_counter()
            resp = stub.Predict(request(i, sampler, int(steps)), timeout=600)
            wall = time.perf_counter() - t0
            p = resp.predictions[0]
            pixels = []
            for ch in p.image.channels:
                pixels += struct.unpack(f"<{len(ch.data) // 2}H", ch.data)
            return list(p.expression), pixels, wall

        settings = args.settings.split(",")
        stats = {s: {"gene": [], "pixel": [], "wall": []} for s in settings}
        for i in range(args.requests):
            ref_genes, ref_pixels, _ = run(i, args.reference)
            for s in settings:
                genes, pixels, wall = run(i, s)
                stats[s]["gene"].append(sum(abs(a - b) for a, b in zip(genes, ref_genes)) / max(1, len(genes)))
                stats[s]["pixel"].append(sum(abs(a - b) for a, b in zip(pixels, ref_pixels)) / len(pixels))
                stats[s]["wall"].append(wall)
        ref_evals = int(args.reference.split(":")[1]) * (2 if args.reference.startswith("heun") else 1)
        print(f"reference {args.reference} ({ref_evals} velocity evaluations), {args.requests} requests, "
              f"guidance {args.guidance}, checkpoint {args.checkpoint or 'tiny random (configs/tiny.json)'}")
        print()
        print("| sampler | steps | velocity evaluations | gene MAE vs reference | pixel MAE vs reference (12-bit) "
              "| s per request |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for s in settings:
            sampler, steps = s.split(":")
            evals = int(steps) * (2 if sampler == "heun" else 1)
            st = stats[s]
            n = len(st["gene"])
            print(f"| {sampler} | {steps} | {evals} | {sum(st['gene']) / n:.5f} | {sum(st['pixel']) / n:.3f} | "
                  f"{sorted(st['wall'])[n // 2]:.2f} |")
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
