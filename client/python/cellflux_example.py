#!/usr/bin/env python3
"""Example cellflux.v1 client: one prediction from a control's five TIFFs + expression.

Generate the stubs first (cmake target cellflux_proto_python writes them to <build>/python):

    cmake --build build --target cellflux_proto_python
    PYTHONPATH=build/python python3 client/python/cellflux_example.py \
        --server localhost:50051 --info
    PYTHONPATH=build/python python3 client/python/cellflux_example.py \
        --server localhost:50051 --perturbation BRD-K12345678-001-01-1 \
        --tiffs DNA.tif RNA.tif ER.tif AGP.tif Mito.tif --expression control.tsv \
        --samples 2 --seed 7 --out predictions/

    # or a control from the server's bank:
    ... --plate 24277 --well a01 --site 1

Needs the grpcio and protobuf Python packages (Debian: python3-grpcio python3-protobuf).
Images are sent as TIFF bytes unchanged (the server checks them); outputs are written as
16-bit TIFFs (one per channel and sample) and the expression as a TSV (gene, value per sample).
"""
import argparse
import os
import struct
import sys

import grpc

from cellflux.v1 import cellflux_pb2 as pb
from cellflux.v1 import cellflux_pb2_grpc as pb_grpc


def tiff_size(data):
    """(width, height) from a TIFF's first directory, without decoding pixels."""
    order = {b"II": "<", b"MM": ">"}[data[:2]]
    ifd = struct.unpack(order + "I", data[4:8])[0]
    (count,) = struct.unpack(order + "H", data[ifd:ifd + 2])
    size = {}
    for i in range(count):
        tag, typ = struct.unpack(order + "HH", data[ifd + 2 + 12 * i:ifd + 6 + 12 * i])
        if tag in (256, 257):
            fmt = "H" if typ == 3 else "I"
            size[tag] = struct.unpack(order + fmt, data[ifd + 10 + 12 * i:ifd + 10 + 12 * i + struct.calcsize(fmt)])[0]
    return size[256], size[257]


def read_expression(path):
    """TSV/CSV with 'gene<sep>value' lines (a header line is skipped if its value is not a number)."""
    ids, values = [], []
    with open(path) as f:
        for line in f:
            parts = line.replace(",", "\t").strip().split("\t")
            if len(parts) < 2:
                continue
            try:
                values.append(float(parts[1]))
            except ValueError:
                continue  # header
            ids.append(parts[0])
    return ids, values


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", default="localhost:50051")
    ap.add_argument("--token", help="bearer token when the server runs with --auth-token-file")
    ap.add_argument("--tls-ca", help="PEM CA bundle: connect with TLS")
    ap.add_argument("--info", action="store_true", help="print GetModelInfo and exit")
    ap.add_argument("--perturbation")
    ap.add_argument("--tiffs", nargs="+", help="control channels in the model's order")
    ap.add_argument("--expression", help="control L1000 profile: gene<TAB>value lines")
    ap.add_argument("--plate")
    ap.add_argument("--well")
    ap.add_argument("--site", type=int, default=0)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--guidance", type=float)
    ap.add_argument("--samples", type=int)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--timeout", type=float, default=600.0, help="deadline in seconds")
    ap.add_argument("--out", default="predictions")
    args = ap.parse_args()

    if args.tls_ca:
        with open(args.tls_ca, "rb") as f:
            channel = grpc.secure_channel(args.server, grpc.ssl_channel_credentials(f.read()))
    else:
        channel = grpc.insecure_channel(args.server)
    stub = pb_grpc.CellFluxStub(channel)
    metadata = [("authorization", "Bearer " + args.token)] if args.token else []

    info = stub.GetModelInfo(pb.GetModelInfoRequest(), metadata=metadata, timeout=30)
    if args.info:
        print(info)
        return 0

    req = pb.PredictRequest(perturbation_id=args.perturbation, request_id="python-example")
    if args.plate:
        req.ref.plate, req.ref.well, req.ref.site = args.plate, args.well, args.site
    else:
        with open(args.tiffs[0], "rb") as f:
            req.data.image.width, req.data.image.height = tiff_size(f.read())
        for name, path in zip(info.channel_names, args.tiffs):
            with open(path, "rb") as f:
                req.data.image.channels.add(name=name, encoding=pb.TIFF, data=f.read())
        if info.gene_ids:
            ids, values = read_expression(args.expression)
            req.data.expression.values.extend(values)
            req.data.expression.gene_ids.extend(ids)
    if args.steps is not None:
        req.options.num_steps = args.steps
    if args.guidance is not None:
        req.options.guidance_scale = args.guidance
    if args.samples is not None:
        req.options.num_samples = args.samples
    if args.seed is not None:
        req.options.seed = args.seed
    req.options.output_encoding = pb.TIFF

    try:
        resp = stub.Predict(req, metadata=metadata, timeout=args.timeout)
    except grpc.RpcError as e:
        print(f"Predict failed: {e.code().name}: {e.details()}", file=sys.stderr)
        return 1
    os.makedirs(args.out, exist_ok=True)
    for k, p in enumerate(resp.predictions):
        for ch in p.image.channels:
            with open(os.path.join(args.out, f"sample{k}_seed{p.seed}_{ch.name}.tif"), "wb") as f:
                f.write(ch.data)
    if info.gene_ids and resp.predictions:
        with open(os.path.join(args.out, "expression.tsv"), "w") as f:
            f.write("gene\t" + "\t".join(f"seed{p.seed}" for p in resp.predictions) + "\n")
            for g, gene in enumerate(info.gene_ids):
                f.write(gene + "\t" + "\t".join(f"{p.expression[g]:.6g}" for p in resp.predictions) + "\n")
    t = resp.timing
    print(f"{len(resp.predictions)} samples from {resp.model_id}: queue {t.queue_seconds:.3f} s, "
          f"compute {t.compute_seconds:.3f} s, total {t.total_seconds:.3f} s → {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
