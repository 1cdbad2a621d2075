"""pip install ./client/python — the cellflux package (importable as `cellflux`).

No pyproject.toml on purpose: without one pip builds with the setuptools already installed
(Debian's python3-setuptools in a --system-site-packages venv) instead of fetching a build
environment from PyPI, so the install works offline.
"""
from setuptools import setup

setup(
    name="cellflux",
    version="0.1.0",
    description="Python client for the cellflux server: predictions as numpy arrays, screens as "
                "pandas DataFrames / AnnData",
    packages=["cellflux", "cellflux.v1"],
    python_requires=">=3.9",
    # The committed stubs come from protoc 3.21 (the `builder` API: protobuf ≥ 3.20). These are
    # Debian 12's python3-grpcio, python3-protobuf and python3-numpy.
    install_requires=["grpcio>=1.46", "protobuf>=3.20", "numpy>=1.21"],
    extras_require={"pandas": ["pandas>=1.3"], "anndata": ["pandas>=1.3", "anndata>=0.8"]},
)
