"""cellflux: a Python client for the cellflux prediction server (cellflux.v1 over gRPC).

    import cellflux
    with cellflux.Client("127.0.0.1:50051") as client:
        result = client.predict("BRD-K00000001-001-01-1", control="24277:a01", seed=7)
        df = client.screen(plan_dataframe, concurrency=8)

Client (client.py), CellFluxError (errors.py), the screen table (screen.py), numpy ↔ wire images
(images.py) and the generated stubs (cellflux.v1, from proto/cellflux/v1/cellflux.proto).
"""
from cellflux.client import Client, Perturbation, PredictResult, StructureMatch
from cellflux.errors import CellFluxError
from cellflux.images import write_tiff
from cellflux.screen import to_anndata

__version__ = "0.1.0"
__all__ = ["Client", "CellFluxError", "Perturbation", "PredictResult", "StructureMatch",
           "to_anndata", "write_tiff"]
