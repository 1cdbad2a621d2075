"""Client.screen: a plan of many predictions, run concurrently, as one expression table.

The plan is a pandas DataFrame, one row per (perturbation, control):
  perturbation (or perturbation_id)  a Broad ID                          one of these two
  smiles                             a compound by structure (structure models), with
  dose_um                            its dose in µM (empty/0 = unknown)
  control_ref                        "PLATE:WELL[:SITE]" in the server's control bank
    or plate, well [, site]          the same as three columns
    or control [, expression]        any control Client.predict takes (an array, a list of files,
                                     a ref) with its expression, as Python objects
  dose                               µM, carried into Metadata_dose (else the vocabulary's dose)
  seed                               this row's seed (else seed + row × num_samples when the screen
                                     has a seed, else a random one chosen by the server)
Any other column is carried into the result as Metadata_<column>.

The result has one row per prediction (num_samples per plan row, in plan order), indexed
"r000012_s0" (plan row 12, sample 0) like cellflux-client's GCT, with the columns
  Metadata_perturbation, Metadata_dose, Metadata_plate, Metadata_well, Metadata_site,
  Metadata_seed (the seed the server used), then Metadata_<column> for the plan's other columns,
  then one float32 column per L1000 probe id in the model's gene order.
Metadata_site is the site as requested (0 = the lowest site the bank holds for the well).
Plans with a smiles column add Metadata_smiles, Metadata_canonical_smiles, Metadata_in_vocabulary,
Metadata_nearest_perturbation and Metadata_nearest_similarity after Metadata_seed (the server's
PredictResponse.structure; empty / NaN on perturbation rows), and a smiles row's Metadata_dose is
the dose the model was conditioned on (NaN when unknown).
df.attrs holds "model_id" and "failures" (a list of CellFluxError, each with .row, for
on_error="skip").
"""
import concurrent.futures

import grpc
import numpy as np

from cellflux.client import build_request, parse_ref
from cellflux.errors import CellFluxError

METADATA = ["Metadata_perturbation", "Metadata_dose", "Metadata_plate", "Metadata_well",
            "Metadata_site", "Metadata_seed"]
STRUCTURE_METADATA = ["Metadata_smiles", "Metadata_canonical_smiles", "Metadata_in_vocabulary",
                      "Metadata_nearest_perturbation", "Metadata_nearest_similarity"]
_CONSUMED = {"perturbation", "perturbation_id", "control_ref", "plate", "well", "site", "control",
             "expression", "dose", "seed", "smiles", "dose_um"}


def run_screen(client, plan, *, concurrency=4, num_samples=1, seed=None, steps=None,
               guidance=None, on_error="raise", anndata=False, timeout=600.0):
    """Runs the plan's rows with up to `concurrency` Predict calls in flight.

    on_error: "raise" → the first failed row's CellFluxError (with .row) is raised after the rows
    already in flight finish and the rest are cancelled; "skip" → failed rows are left out and
    listed in df.attrs["failures"]. anndata=True returns to_anndata(df) instead of df.
    """
    import pandas as pd
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be \"raise\" or \"skip\", got {on_error!r}")
    if int(concurrency) < 1:
        raise ValueError(f"concurrency must be ≥ 1, got {concurrency}")
    if not isinstance(plan, pd.DataFrame):
        plan = pd.DataFrame(plan)
    info = client.info()
    rows = [_parse_row(i, record, num_samples, seed)
            for i, record in enumerate(plan.to_dict("records"))]
    doses = {}
    if "dose" not in plan.columns:
        doses = {p.id: p.dose for p in client.perturbations()}
    extra = [c for c in plan.columns if c not in _CONSUMED]
    # Every request is built before the first is sent: a malformed row fails the screen at once
    # (ValueError/TypeError naming the row), not after hours of predictions.
    requests = []
    for row in rows:
        try:
            requests.append(build_request(
                info, row["perturbation"], row["control"], row["expression"],
                num_samples=num_samples, seed=row["seed"], steps=steps, guidance=guidance,
                request_id=f"screen-r{row['index']:06d}", smiles=row["smiles"],
                dose_um=row["dose_um"]))
        except (ValueError, TypeError) as e:
            raise type(e)(f"plan row {row['index']}: {e}") from e

    def run(request):
        return client._call(client._stub.Predict, request, timeout)

    responses, failures = {}, []
    with concurrent.futures.ThreadPoolExecutor(max_workers=int(concurrency)) as pool:
        futures = {pool.submit(run, request): row["index"] for row, request in zip(rows, requests)}
        for future in concurrent.futures.as_completed(futures):
            index = futures[future]
            if future.cancelled():
                continue
            try:
                responses[index] = future.result()
            except CellFluxError as e:
                failures.append(CellFluxError(e.code, e.message, row=index))
                if on_error == "raise":
                    for f in futures:
                        f.cancel()
    failures.sort(key=lambda e: e.row)
    if failures and on_error == "raise":
        raise failures[0]

    model_ids = {r.model_id for r in responses.values()}
    if len(model_ids) > 1:
        info = client.info()  # a checkpoint swap during the screen: label with the current model
    gene_ids = list(info.gene_ids)
    with_structure = "smiles" in plan.columns
    index, meta, values = [], [], []
    for row in rows:
        response = responses.get(row["index"])
        if response is None:
            continue
        for k, p in enumerate(response.predictions):
            if len(p.expression) != len(gene_ids):
                raise CellFluxError(grpc.StatusCode.INTERNAL, f"plan row {row['index']}: "
                                    f"{len(p.expression)} expression values for "
                                    f"{len(gene_ids)} genes")
            index.append(f"r{row['index']:06d}_s{k}")
            dose = row["dose"] if row["dose"] is not None else doses.get(row["perturbation"])
            structure = []
            if with_structure:
                s = response.structure if response.HasField("structure") else None
                if s is not None:
                    dose = s.dose_um if s.dose_um > 0 else float("nan")
                structure = [row["smiles"] or "", s.canonical_smiles if s else "",
                             bool(s.in_vocabulary) if s else None,
                             s.nearest_perturbation_id if s else "",
                             s.nearest_similarity if s else float("nan")]
            meta.append([row["perturbation"] or "", dose, row["plate"], row["well"], row["site"],
                         p.seed] + structure + [row["record"][c] for c in extra])
            values.append(np.asarray(p.expression, dtype=np.float32))
    columns = METADATA + (STRUCTURE_METADATA if with_structure else []) + [
        c if str(c).startswith("Metadata_") else f"Metadata_{c}" for c in extra]
    df = pd.DataFrame(meta, columns=columns, index=pd.Index(index, name="prediction"))
    df["Metadata_seed"] = df["Metadata_seed"].astype(np.uint64)
    df["Metadata_dose"] = df["Metadata_dose"].astype(np.float64)
    genes = pd.DataFrame(np.array(values, dtype=np.float32).reshape(len(index), len(gene_ids)),
                         columns=gene_ids, index=df.index)
    df = pd.concat([df, genes], axis=1)
    df.attrs["model_id"] = next(iter(model_ids)) if len(model_ids) == 1 else info.model_id
    df.attrs["failures"] = failures
    return to_anndata(df) if anndata else df


def to_anndata(df):
    """A screen DataFrame → AnnData: X = expression [predictions × genes] float32, obs = the
    Metadata_* columns, var indexed by probe id. Needs the anndata package."""
    import anndata
    import pandas as pd
    meta = [c for c in df.columns if str(c).startswith("Metadata_")]
    genes = [c for c in df.columns if c not in meta]
    obs = df[meta].copy()
    obs.index = obs.index.astype(str)
    adata = anndata.AnnData(X=df[genes].to_numpy(dtype=np.float32), obs=obs,
                            var=pd.DataFrame(index=pd.Index([str(g) for g in genes])),
                            dtype=np.float32)
    adata.uns["model_id"] = df.attrs.get("model_id", "")
    return adata


def _parse_row(index, record, num_samples, screen_seed):
    def get(name):
        value = record.get(name)
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return None
        return value

    perturbation = get("perturbation") or get("perturbation_id")
    smiles = get("smiles")
    if perturbation is None and smiles is None:
        raise ValueError(f"plan row {index}: no perturbation (columns perturbation or "
                         "perturbation_id) and no smiles")
    if perturbation is not None and smiles is not None:
        raise ValueError(f"plan row {index}: set exactly one of perturbation and smiles, not both")
    dose_um = get("dose_um")
    if dose_um is not None and smiles is None and float(dose_um) != 0:
        raise ValueError(f"plan row {index}: dose_um goes with a smiles row (perturbation "
                         f"{perturbation} has its vocabulary dose)")
    control, expression = get("control"), get("expression")
    plate, well, site = get("plate"), get("well"), get("site")
    if control is None and get("control_ref") is not None:
        control = str(get("control_ref"))
    if control is None and plate is not None and well is not None:
        control = {"plate": plate, "well": well, "site": site or 0}
    if control is None:
        raise ValueError(f"plan row {index}: no control (columns control_ref, plate + well, or "
                         "control)")
    ref = parse_ref(control) if not isinstance(control, (list, tuple, np.ndarray)) else None
    if ref is not None:
        plate, well, site = ref.plate, ref.well, ref.site
    row_seed = get("seed")
    if row_seed is not None:
        row_seed = int(row_seed)
    elif screen_seed is not None:
        row_seed = int(screen_seed) + index * int(num_samples)
    dose = get("dose")
    return {"index": index, "perturbation": None if perturbation is None else str(perturbation),
            "smiles": None if smiles is None else str(smiles),
            "dose_um": None if dose_um is None else float(dose_um), "control": control,
            "expression": expression, "plate": "" if plate is None else str(plate),
            "well": "" if well is None else str(well), "site": int(site or 0), "seed": row_seed,
            "dose": None if dose is None else float(dose), "record": record}
