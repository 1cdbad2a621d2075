#!/usr/bin/python3
"""A small, bounded burst of cellflux.v1 traffic for scripts/monitoring_check.sh.

    drive_traffic.py --server 127.0.0.1:PORT --stubs DIR [--predicts N] [--steps S] [--samples K]

DIR holds the Python stubs (cellflux/v1/cellflux_pb2*.py). Sends GetModelInfo, ListPerturbations,
N Predict calls at once (so the batch holds several rows) with a synthetic control (mid-grey
RAW_U16_LE channels + a zero expression vector in the model's gene order), and one bad request
(an unknown perturbation id, which must come back INVALID_ARGUMENT). Exit 0 when every good call
succeeded and the bad one failed the right way. Every call has a deadline.
"""
import argparse
import concurrent.futures
import struct
import sys

import grpc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--stubs", required=True)
    ap.add_argument("--predicts", type=int, default=4)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=120)
    args = ap.parse_args()
    sys.path.insert(0, args.stubs)
    from cellflux.v1 import cellflux_pb2 as pb
    from cellflux.v1 import cellflux_pb2_grpc as pb_grpc

    with grpc.insecure_channel(args.server) as channel:
        stub = pb_grpc.CellFluxStub(channel)
        info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=30)
        perts = stub.ListPerturbations(pb.ListPerturbationsRequest(page_size=4), timeout=30)
        if not perts.perturbations:
            print("no perturbations in the model", file=sys.stderr)
            return 1
        size = info.image_size
        plane = struct.pack("<H", 2000) * (size * size)

        def request(pert_id, seed):
            req = pb.PredictRequest(perturbation_id=pert_id, request_id=f"monitoring-check-{seed}")
            req.data.image.height = size
            req.data.image.width = size
            for name in info.channel_names:
                req.data.image.channels.add(name=name, encoding=pb.RAW_U16_LE, data=plane)
            req.data.expression.values.extend([0.0] * len(info.gene_ids))
            req.data.expression.gene_ids.extend(info.gene_ids)
            req.options.num_steps = args.steps
            req.options.num_samples = args.samples
            req.options.seed = seed
            req.options.output_encoding = pb.RAW_U16_LE
            return req

        ids = [p.id for p in perts.perturbations]
        good = [request(ids[i % len(ids)], 100 + i) for i in range(args.predicts)]
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(good) + 1) as pool:
            futures = [pool.submit(stub.Predict, r, timeout=args.timeout) for r in good]
            bad = pool.submit(stub.Predict, request("BRD-NOT-A-REAL-ID", 1), timeout=args.timeout)
            failed = 0
            for f in futures:
                try:
                    resp = f.result()
                    if len(resp.predictions) != args.samples:
                        print(f"Predict returned {len(resp.predictions)} predictions", file=sys.stderr)
                        failed += 1
                except grpc.RpcError as e:
                    print(f"Predict failed: {e.code().name}: {e.details()}", file=sys.stderr)
                    failed += 1
            try:
                bad.result()
                print("the bad request succeeded", file=sys.stderr)
                failed += 1
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.INVALID_ARGUMENT:
                    print(f"bad request: {e.code().name} (want INVALID_ARGUMENT)", file=sys.stderr)
                    failed += 1
    print(f"traffic: model {info.model_id}, {args.predicts} Predict x {args.samples} samples x "
          f"{args.steps} steps, 1 bad request; {failed} unexpected results")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
