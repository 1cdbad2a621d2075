"""Client: a connection to one cellflux server (cellflux.v1.CellFlux over gRPC).

    import cellflux
    client = cellflux.Client("127.0.0.1:50051")                     # plaintext
    client = cellflux.Client("host:443", tls="ca.pem", token="...")  # TLS + bearer token
    info = client.info()                    # GetModelInfoResponse (channel_names, gene_ids, ...)
    result = client.predict("BRD-K...", control="24277:a01", num_samples=2, seed=7)
    result.images[0]                        # sample 0: C×H×W uint16, info.channel_names order
    result.expression[0]                    # sample 0: float32, one value per result.gene_ids
    # structure models (info.condition "structure" / "id+structure"): a compound by SMILES
    result = client.predict(smiles="CN(C)C(=N)N=C(N)N.Cl", dose_um=10, control="24277:a01")
    result.structure.nearest_perturbation_id, result.structure.nearest_similarity

Every failed call raises CellFluxError (its .code is the grpc.StatusCode, its .message the
server's). Arguments that cannot make a valid request (a 2-D image, a float image) raise
ValueError/TypeError before anything is sent. A Client is safe to share between threads.
"""
import collections
import os
import random
import time

import grpc
import numpy as np

from cellflux import images
from cellflux.errors import CellFluxError
from cellflux.v1 import cellflux_pb2 as pb
from cellflux.v1 import cellflux_pb2_grpc as pb_grpc

# One vocabulary entry of ListPerturbations: Broad ID, training dose in µM (0 = unknown), name.
Perturbation = collections.namedtuple("Perturbation", ["id", "dose", "name"])

# What the server said about a smiles request's compound (PredictResponse.structure): RDKit's
# canonical SMILES of the parent, whether it is a vocabulary compound, the nearest vocabulary
# compound by Tanimoto similarity of Morgan fingerprints, and the dose in µM the model was
# conditioned on (0 = unknown).
StructureMatch = collections.namedtuple(
    "StructureMatch", ["canonical_smiles", "in_vocabulary", "nearest_perturbation_id",
                       "nearest_similarity", "dose_um"])

# Codes worth retrying with backoff: the queue was full, or the server is starting or draining.
RETRYABLE = (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE)


class PredictResult:
    """The samples of one Predict call, as numpy arrays.

    images:             [num_samples, C, H, W] uint16, channels in channel_names order, the
                        instrument's scale (images[k] is sample k).
    expression:         [num_samples, G] float32, columns in gene_ids order (G = 0 for
                        image-only models).
    channel_names:      the channels of images.
    gene_ids:           the L1000 probe ids of expression's columns.
    seeds:              the seed of each sample (resend it with num_samples=1 to reproduce one).
    model_id:           the checkpoint that generated them.
    timing:             server-side seconds: {"queue": ..., "compute": ..., "total": ...}.
    control_image:      with return_control=True: the C×H×W control the flow started from.
    control_expression: with return_control=True: its [G] float32 expression.
    structure:          for a smiles request, a StructureMatch (how far the compound is from the
                        model's training compounds); None for a perturbation ID.
    """

    def __init__(self, response, gene_ids):
        preds = response.predictions
        self.images = np.stack([images.proto_to_array(p.image) for p in preds]) if preds else \
            np.zeros((0, 0, 0, 0), dtype=np.uint16)
        self.channel_names = [ch.name for ch in preds[0].image.channels] if preds else []
        self.gene_ids = list(gene_ids)
        width = len(preds[0].expression) if preds else len(gene_ids)
        self.expression = np.array([list(p.expression) for p in preds],
                                   dtype=np.float32).reshape(len(preds), width)
        if self.expression.shape[1] != len(self.gene_ids):
            raise CellFluxError(grpc.StatusCode.INTERNAL,
                                f"the response has {self.expression.shape[1]} expression values "
                                f"per sample; the model lists {len(self.gene_ids)} genes")
        self.seeds = [p.seed for p in preds]
        self.model_id = response.model_id
        t = response.timing
        self.timing = {"queue": t.queue_seconds, "compute": t.compute_seconds,
                       "total": t.total_seconds}
        has_control = response.HasField("control_image")
        self.control_image = images.proto_to_array(response.control_image) if has_control else None
        self.control_expression = (np.array(response.control_expression, dtype=np.float32)
                                   if has_control else None)
        self.structure = structure_match(response)

    def __len__(self):
        return len(self.seeds)

    def expression_frame(self):
        """expression as a pandas DataFrame: one row per sample (index = seed), probe-id columns."""
        import pandas as pd
        return pd.DataFrame(self.expression, columns=self.gene_ids,
                            index=pd.Index(self.seeds, name="seed"))

    def __repr__(self):
        return (f"PredictResult({len(self)} samples, images {self.images.shape} uint16, "
                f"expression {self.expression.shape}, model {self.model_id!r})")


class Client:
    """A connection to a cellflux server.

    target: "host:port".
    tls:    None/False: plaintext; True: TLS with the system's root certificates; a path (str or
            PathLike) to a PEM CA bundle, or the PEM bytes: TLS trusting that CA.
    token:  the bearer token of a server run with --auth-token-file (sent as
            "authorization: Bearer <token>" on every call); surrounding whitespace is ignored.
    retries: how often a call that failed with RESOURCE_EXHAUSTED (queue full) or UNAVAILABLE
            (starting, draining) is retried, with exponential backoff from 0.5 s (capped at 8 s).
    max_message_mb: the largest message either way (the server's default is 64 MiB too).
    """

    def __init__(self, target, tls=None, token=None, *, retries=3, max_message_mb=64,
                 _sleep=time.sleep, _stub=None):
        self.target = target
        self.retries = int(retries)
        self._sleep = _sleep
        self._metadata = ()
        if token is not None:
            token = str(token).strip()
            if not token:
                raise ValueError("token is empty")
            self._metadata = (("authorization", "Bearer " + token),)
        limit = int(max_message_mb) * 1024 * 1024
        options = [("grpc.max_receive_message_length", limit),
                   ("grpc.max_send_message_length", limit)]
        self._channel = None
        if _stub is not None:  # tests: a fake stub instead of a channel
            self._stub = _stub
        else:
            credentials = _credentials(tls)
            self._channel = (grpc.secure_channel(target, credentials, options) if credentials
                             else grpc.insecure_channel(target, options))
            self._stub = pb_grpc.CellFluxStub(self._channel)
        self._info = None

    def close(self):
        """Closes the channel; calls afterwards fail."""
        if self._channel is not None:
            self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- calls ------------------------------------------------------------------------------

    def info(self, timeout=30.0):
        """GetModelInfo: the loaded model's channel_names, image_size, gene_ids, defaults, limits,
        num_perturbations, num_controls and condition ("id", or "structure" / "id+structure" for
        models that take smiles) (a cellflux.v1.GetModelInfoResponse)."""
        self._info = self._call(self._stub.GetModelInfo, pb.GetModelInfoRequest(), timeout)
        return self._info

    def perturbations(self, timeout=30.0):
        """The whole vocabulary (ListPerturbations, all pages) as a list of Perturbation(id, dose,
        name); pandas.DataFrame(client.perturbations()) makes it a table."""
        out, token = [], ""
        while True:
            page = self._call(self._stub.ListPerturbations,
                              pb.ListPerturbationsRequest(page_size=1000, page_token=token),
                              timeout)
            out.extend(Perturbation(p.id, p.dose, p.name) for p in page.perturbations)
            token = page.next_page_token
            if not token:
                return out

    def predict(self, perturbation=None, control=None, expression=None, *, smiles=None,
                dose_um=None, num_samples=None, seed=None, steps=None, guidance=None,
                return_control=False, timeout=600.0, request_id="", bit_depth=None):
        """Predict: num_samples perturbed images + expression profiles from one control.

        perturbation: a Broad ID from perturbations(); or, instead,
        smiles: a compound by structure, for models with a structure encoder (info().condition
            "structure" or "id+structure"; an "id" model answers FAILED_PRECONDITION), with
        dose_um: its dose in µM (None or 0 = unknown). result.structure says how far the compound
            is from the training compounds. Give exactly one of perturbation and smiles.
        control: a well of the server's control bank — "PLATE:WELL[:SITE]" or
            {"plate": ..., "well": ..., "site": ...} (site 0 or absent: the lowest site) — or the
            control's pixels: a C×H×W integer array in info().channel_names order, or a list of
            one encoded 16-bit TIFF/PNG (path or bytes) per channel, sent as they are.
        expression: with pixels, the control's L1000 profile (required when the model has
            genes): a vector in info().gene_ids order, or a dict / pandas Series keyed by probe id
            (any order; the server reorders). Not allowed with a bank well (the bank has one).
        num_samples, seed, steps, guidance: unset → the model's defaults (info().defaults);
            sample k uses seed + k. guidance is α in v = α·cond + (1 − α)·uncond.
        return_control: also return the control the flow started from.
        bit_depth: with pixels, 12 (values 0..4095, the default) or 16 (0..65535, rescaled by the
            server); None = 16 when a pixel of an array exceeds 4095, else 12. The server rejects
            a 12-bit image with a larger value (INVALID_ARGUMENT), it never clamps.
        timeout: seconds per attempt (DEADLINE_EXCEEDED after it; not retried).
        Returns a PredictResult. Raises CellFluxError (INVALID_ARGUMENT, NOT_FOUND, ...).
        """
        info = self._info or self.info()
        request = build_request(info, perturbation, control, expression, num_samples=num_samples,
                                seed=seed, steps=steps, guidance=guidance,
                                return_control=return_control, request_id=request_id,
                                bit_depth=bit_depth, smiles=smiles, dose_um=dose_um)
        response = self._call(self._stub.Predict, request, timeout)
        if response.model_id != info.model_id:  # the server swapped checkpoints: new gene list
            info = self.info()
        return PredictResult(response, info.gene_ids)

    def screen(self, plan, *, concurrency=4, num_samples=1, seed=None, steps=None, guidance=None,
               on_error="raise", anndata=False, timeout=600.0):
        """Runs every row of a plan (a pandas DataFrame) and returns the predicted expression as
        a DataFrame (one row per prediction) or, with anndata=True, an AnnData. See
        cellflux.screen.run_screen for the plan's columns and the result's layout."""
        from cellflux import screen as screen_module
        return screen_module.run_screen(
            self, plan, concurrency=concurrency, num_samples=num_samples, seed=seed, steps=steps,
            guidance=guidance, on_error=on_error, anndata=anndata, timeout=timeout)

    # --- internals --------------------------------------------------------------------------

    def _call(self, method, request, timeout):
        delay = 0.5
        for attempt in range(self.retries + 1):
            try:
                return method(request, metadata=self._metadata, timeout=timeout)
            except grpc.RpcError as e:
                error = CellFluxError.from_rpc_error(e)
                if error.code not in RETRYABLE or attempt == self.retries:
                    raise error from e
            self._sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 8.0)


def build_request(info, perturbation, control, expression=None, *, num_samples=None, seed=None,
                  steps=None, guidance=None, return_control=False, request_id="",
                  bit_depth=None, smiles=None, dose_um=None):
    """The PredictRequest for Client.predict's arguments (ValueError/TypeError on bad ones)."""
    if (perturbation is None) == (smiles is None):
        raise ValueError("give exactly one of perturbation (a Broad ID) and smiles (a structure)")
    if smiles is None:
        if not isinstance(perturbation, str) or not perturbation:
            raise ValueError(f"perturbation must be a Broad ID string, got {perturbation!r}")
        if dose_um:
            raise ValueError("dose_um goes with smiles; a perturbation has its vocabulary dose")
        request = pb.PredictRequest(perturbation_id=perturbation, request_id=request_id)
    else:
        if not isinstance(smiles, str) or not smiles:
            raise ValueError(f"smiles must be a non-empty SMILES string, got {smiles!r}")
        dose = 0.0 if dose_um is None else float(dose_um)
        if not np.isfinite(dose) or dose < 0:
            raise ValueError(f"dose_um must be a finite dose in µM ≥ 0 (0 = unknown), got "
                             f"{dose_um!r}")
        request = pb.PredictRequest(smiles=smiles, dose_um=dose, request_id=request_id)
    if control is None:
        raise ValueError("control is required: a bank well \"PLATE:WELL[:SITE]\", pixels or files")
    ref = parse_ref(control)
    if ref is not None:
        if expression is not None:
            raise ValueError("expression is only for controls sent as pixels; a bank well "
                             f"({ref.plate}:{ref.well}) has its own")
        request.ref.CopyFrom(ref)
    else:
        if isinstance(control, np.ndarray):
            request.data.image.CopyFrom(images.image_to_proto(control, info.channel_names))
            if bit_depth is None and control.size and int(control.max()) > 4095:
                bit_depth = 16
        elif isinstance(control, (list, tuple)):
            request.data.image.CopyFrom(images.files_to_proto(control, info.channel_names))
        else:
            raise TypeError(f"control must be \"PLATE:WELL[:SITE]\", a dict with plate/well, a "
                            f"C×H×W array or a list of files; got {type(control).__name__}")
        if bit_depth is not None:
            if bit_depth not in (12, 16):
                raise ValueError(f"bit_depth must be 12 or 16, got {bit_depth!r}")
            request.data.image.bit_depth = int(bit_depth)
        if expression is not None:
            request.data.expression.CopyFrom(_expression_proto(expression))
    options = request.options
    options.output_encoding = pb.RAW_U16_LE
    if num_samples is not None:
        options.num_samples = int(num_samples)
    if seed is not None:
        if int(seed) < 0:
            raise ValueError(f"seed must be ≥ 0, got {seed}")
        options.seed = int(seed)
    if steps is not None:
        options.num_steps = int(steps)
    if guidance is not None:
        options.guidance_scale = float(guidance)
    if return_control:
        options.return_control = True
    return request


def structure_match(response):
    """The StructureMatch of a PredictResponse, or None when the request named a perturbation."""
    if not response.HasField("structure"):
        return None
    s = response.structure
    return StructureMatch(s.canonical_smiles, s.in_vocabulary, s.nearest_perturbation_id,
                          s.nearest_similarity, s.dose_um)


def parse_ref(control):
    """ControlRef for "PLATE:WELL[:SITE]", a dict with plate/well[/site] or a ControlRef; None
    for anything else (pixels)."""
    if isinstance(control, pb.ControlRef):
        return control
    if isinstance(control, dict):
        try:
            return pb.ControlRef(plate=str(control["plate"]), well=str(control["well"]),
                                 site=int(control.get("site") or 0))
        except KeyError as e:
            raise ValueError(f"a control dict needs plate and well, missing {e}") from None
    if isinstance(control, str):
        parts = control.split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            raise ValueError(f"control \"{control}\" is not PLATE:WELL or PLATE:WELL:SITE")
        try:
            site = int(parts[2]) if len(parts) == 3 else 0
        except ValueError:
            raise ValueError(f"control \"{control}\": site \"{parts[2]}\" is not a number") \
                from None
        return pb.ControlRef(plate=parts[0], well=parts[1], site=site)
    return None


def _expression_proto(expression):
    if isinstance(expression, dict):
        ids, values = list(expression.keys()), list(expression.values())
    elif hasattr(expression, "index") and hasattr(expression, "to_numpy"):  # pandas Series
        ids, values = [str(i) for i in expression.index], expression.to_numpy()
    else:
        ids, values = [], expression
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"expression has shape {values.shape}; expected one value per gene")
    return pb.Expression(values=values.tolist(), gene_ids=[str(i) for i in ids])


def _credentials(tls):
    if tls is None or tls is False:
        return None
    if tls is True:
        return grpc.ssl_channel_credentials()
    if isinstance(tls, (str, os.PathLike)):
        with open(tls, "rb") as f:
            pem = f.read()
        where = os.fspath(tls)
    elif isinstance(tls, (bytes, bytearray)):
        pem, where = bytes(tls), "tls bytes"
    else:
        raise TypeError(
            f"tls must be a bool, a CA file path or PEM bytes, got {type(tls).__name__}")
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise ValueError(f"{where} holds no PEM certificate (BEGIN CERTIFICATE)")
    return grpc.ssl_channel_credentials(root_certificates=pem)
