#!/usr/bin/python3
"""`cellflux-train prepare` at the full CDRP-BBBC047 + L1000 size: time and peak memory.

Writes a layout of the real size under --work (default: a new temp folder, removed afterwards
unless --keep): --plates Cell Painting plates of 384 wells × --sites sites × 5 channels as EMPTY
files with BBBC047 names (prepare only scans names; no pixel is read), plate maps (32 DMSO wells
per plate, the rest ~--compounds compounds at 1-2 doses, each map used by several plates as in
CDRP), and an L1000 CSV in the Haghighi layout with --l1000-rows rows (DMSO + rows for imaged
treatments, 978 landmark probe columns). Then runs prepare under /usr/bin/time -v and prints
wall time, peak RSS and prepare's own summary.

  /usr/bin/python3 bench/prepare_scale_bench.py --build build [--plates 406] [--compounds 30000]
      [--l1000-rows 68000] [--sites 6] [--work DIR] [--keep]

Defaults give ~156k wells, ~936k sites, 4.7M image files, 68k L1000 rows (a 0.4 GB CSV): the
dataset size of the paper. Needs ~5M free inodes and ~1 GB of disk.
"""
import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROWS = "ABCDEFGHIJKLMNOP"
WELLS = [f"{r}{c:02d}" for r in ROWS for c in range(1, 25)]
DMSO_WELLS = set(f"{r}{c:02d}" for r in ROWS for c in (1, 24))  # 32 per plate
DOSES = [0.625, 1.25, 2.5, 5.0]


def fmt_dose(x):
    """common/data/platemap.cc FormatDose: %.2f without trailing zeros, at least one decimal."""
    s = f"{x:.2f}".rstrip("0")
    return s + "0" if s.endswith(".") else s


def probe_ids(src):
    text = open(os.path.join(src, "common", "data", "landmark_genes.cc")).read()
    ids = re.findall(r'\{"([^"]+_at)"', text)
    if len(ids) != 978:
        sys.exit(f"expected 978 landmark probe ids in common/data/landmark_genes.cc, found {len(ids)}")
    return ids


def write_layout(work, args, genes):
    rng = random.Random(0)
    # Plate maps: each used by `replicates` plates; compounds spread over the maps' treatment slots.
    n_maps = max(1, args.plates // args.replicates)
    compounds = [f"BRD-K{10000000 + i:08d}-001-01-{i % 10}" for i in range(args.compounds)]
    os.makedirs(f"{work}/platemaps/platemap")
    keys = []  # L1000 pert_sample_dose of every imaged treatment
    slot = 0
    for m in range(n_maps):
        with open(f"{work}/platemaps/platemap/MAP-{m:04d}.txt", "w") as f:
            f.write("well_position\tbroad_sample\tmmoles_per_liter\tsolvent\n")
            for w in WELLS:
                if w in DMSO_WELLS:
                    f.write(f"{w}\t\t0\tDMSO\n")
                    continue
                c = compounds[slot % len(compounds)]
                dose = DOSES[(slot // len(compounds)) % len(DOSES)]
                slot += 1
                f.write(f"{w}\t{c}\t{dose}\tDMSO\n")
                keys.append(f"{c}_{fmt_dose(2 * dose)}")
    with open(f"{work}/platemaps/barcode_platemap.csv", "w") as f:
        f.write("Plate_Map_Name,Assay_Plate_Barcode\n")
        for p in range(args.plates):
            f.write(f"MAP-{p % n_maps:04d},{30000 + p}\n")

    t0 = time.time()
    files = 0
    for p in range(args.plates):
        d = f"{work}/images/{30000 + p}"
        os.makedirs(d)
        for w in WELLS:
            for s in range(1, args.sites + 1):
                for ch in range(1, 6):
                    os.close(os.open(f"{d}/cdp2bioactives_{w.lower()}_s{s}_w{ch}.tif", os.O_CREAT | os.O_WRONLY, 0o644))
                    files += 1
        if p % 50 == 49:
            print(f"  images: {p + 1}/{args.plates} plates, {files} files, {time.time() - t0:.0f} s", flush=True)

    # L1000: rows for imaged treatments (each key a few times) plus 16 DMSO rows per L1000 plate.
    pool = [",".join(f"{rng.gauss(0, 1):.3f}" for _ in genes) for _ in range(256)]
    per_plate = 384
    n_l1000_plates = max(1, args.l1000_rows // per_plate)
    with open(f"{work}/replicate_level_l1k.csv", "w") as f:
        f.write("replicate_id,pert_id,pert_dose,det_plate,pert_sample_dose,CPD_NAME,CPD_SMILES," + ",".join(genes) + "\n")
        k = 0
        for i in range(args.l1000_rows):
            plate = f"LJP{i // per_plate:04d}_X1"
            well = WELLS[i % per_plate]
            if i % per_plate < 16:
                meta = f"{plate}:{well},DMSO,-666,{plate},DMSO,DMSO,CS(C)=O"
            else:
                key = keys[k % len(keys)]
                k += 1
                dose = key.rsplit("_", 1)[1]
                meta = f"{plate}:{well},{key[:13]},{dose},{plate},{key},cpd-{k % 997},CCO"
            f.write(meta + "," + pool[i % len(pool)] + "\n")
    size = os.path.getsize(f"{work}/replicate_level_l1k.csv")
    return files, len(set(keys)), n_l1000_plates, size


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--plates", type=int, default=406)
    ap.add_argument("--replicates", type=int, default=4, help="plates per plate map")
    ap.add_argument("--compounds", type=int, default=30000)
    ap.add_argument("--l1000-rows", type=int, default=68000)
    ap.add_argument("--sites", type=int, default=6)
    ap.add_argument("--work", default="")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()

    src = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    work = args.work or tempfile.mkdtemp(prefix="cellflux-prepare-scale.")
    os.makedirs(work, exist_ok=True)
    try:
        t0 = time.time()
        files, treatments, l1000_plates, csv_bytes = write_layout(work, args, probe_ids(src))
        print(f"layout: {args.plates} plates x 384 wells x {args.sites} sites = {files} image files, "
              f"{treatments} imaged treatments, L1000 {args.l1000_rows} rows on {l1000_plates} plates "
              f"({csv_bytes / 2**20:.0f} MiB CSV); written in {time.time() - t0:.0f} s", flush=True)
        cmd = ["/usr/bin/time", "-v", f"{args.build}/trainer/cellflux-train", "prepare",
               "--images", f"{work}/images", "--platemaps", f"{work}/platemaps",
               "--l1000", f"{work}/replicate_level_l1k.csv", "--out", f"{work}/prepared"]
        run = subprocess.run(cmd, capture_output=True, text=True)
        sys.stdout.write(run.stdout)
        rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", run.stderr)
        wall = re.search(r"Elapsed \(wall clock\) time.*: (\S+)", run.stderr)
        if run.returncode != 0:
            sys.stderr.write(run.stderr[-4000:])
            return run.returncode
        print(f"prepare: wall {wall.group(1) if wall else '?'}, peak RSS "
              f"{int(rss.group(1)) / 2**20:.2f} GiB" if rss else "prepare: no /usr/bin/time output")
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
