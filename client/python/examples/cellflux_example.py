#!/usr/bin/env python3
"""Example use of the cellflux package: model info, one prediction, or a screen from a plan CSV.

    pip install ./client/python          # or PYTHONPATH=client/python from a checkout
    python3 client/python/examples/cellflux_example.py --server 127.0.0.1:50051 --info
    # one prediction from a bank well: 16-bit TIFFs (one per channel and sample) + expression.tsv
    python3 client/python/examples/cellflux_example.py --server 127.0.0.1:50051 \
        --perturbation BRD-K00000001-001-01-1 --plate 24277 --well a01 --samples 2 --seed 7 \
        --out predictions/
    # ... or from a control's five TIFFs (model channel order) + its L1000 profile (gene<TAB>value)
    ... --tiffs DNA.tif RNA.tif ER.tif AGP.tif Mito.tif --expression control.tsv
    # a screen: plan.csv with perturbation_id,control_ref[,seed,...] → out/expression.csv
    ... --plan plan.csv --concurrency 8 --out screen/
"""
import argparse
import os
import sys

import cellflux


def read_expression(path):
    """{gene: value} from 'gene<TAB or comma>value' lines (lines whose value is not a number, such
    as a header, are skipped)."""
    out = {}
    with open(path) as f:
        for line in f:
            parts = line.replace(",", "\t").strip().split("\t")
            if len(parts) < 2:
                continue
            try:
                out[parts[0]] = float(parts[1])
            except ValueError:
                continue
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", default="127.0.0.1:50051")
    ap.add_argument("--token-file", help="bearer token (server run with --auth-token-file)")
    ap.add_argument("--tls-ca", help="PEM CA bundle: connect with TLS")
    ap.add_argument("--info", action="store_true", help="print the model info and exit")
    ap.add_argument("--perturbation")
    ap.add_argument("--plate")
    ap.add_argument("--well")
    ap.add_argument("--site", type=int, default=0)
    ap.add_argument("--tiffs", nargs="+", help="control channels in the model's order")
    ap.add_argument("--expression", help="control L1000 profile: gene<TAB>value lines")
    ap.add_argument("--plan", help="screen plan CSV (perturbation_id, control_ref, ...)")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--guidance", type=float)
    ap.add_argument("--samples", type=int)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--out", default="predictions")
    args = ap.parse_args()

    token = open(args.token_file).read() if args.token_file else None
    with cellflux.Client(args.server, tls=args.tls_ca, token=token) as client:
        try:
            return run(client, args)
        except cellflux.CellFluxError as e:
            print(f"cellflux: {e}", file=sys.stderr)  # e.code, e.message
            return 1


def run(client, args):
    info = client.info()
    if args.info:
        print(info)
        return 0
    os.makedirs(args.out, exist_ok=True)
    sampling = dict(steps=args.steps, guidance=args.guidance, seed=args.seed)
    if args.plan:
        import pandas as pd
        plan = pd.read_csv(args.plan)
        df = client.screen(plan, concurrency=args.concurrency, num_samples=args.samples or 1,
                           on_error="skip", **sampling)
        df.to_csv(os.path.join(args.out, "expression.csv"))
        for e in df.attrs["failures"]:
            print(f"failed: {e}", file=sys.stderr)
        print(f"{len(df)} predictions from {df.attrs['model_id']} → {args.out}/expression.csv")
        return 1 if df.attrs["failures"] else 0
    if args.plate:
        control, expression = f"{args.plate}:{args.well}:{args.site}", None
    else:
        control = args.tiffs
        expression = read_expression(args.expression) if args.expression else None
    result = client.predict(args.perturbation, control, expression,
                            num_samples=args.samples, **sampling)
    for k, seed in enumerate(result.seeds):
        for name, plane in zip(result.channel_names, result.images[k]):
            cellflux.write_tiff(os.path.join(args.out, f"sample{k}_seed{seed}_{name}.tif"), plane)
    if result.gene_ids:
        with open(os.path.join(args.out, "expression.tsv"), "w") as f:
            f.write("gene\t" + "\t".join(f"seed{s}" for s in result.seeds) + "\n")
            for g, gene in enumerate(result.gene_ids):
                f.write(gene + "\t" + "\t".join(f"{v:.6g}" for v in result.expression[:, g]) + "\n")
    t = result.timing
    print(f"{len(result)} samples from {result.model_id}: queue {t['queue']:.3f} s, compute "
          f"{t['compute']:.3f} s, total {t['total']:.3f} s → {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
