"""Indexes over student representations (DESIGN.md, "Contracts": Index).

An index is a folder with a ``manifest.json`` whose ``kind`` names its class in
:data:`INDEXES`; :func:`load_index` reads any of them. Nothing here imports faiss or torch
until an index is built or loaded.
"""

from __future__ import annotations

from pathlib import Path

from retrieval_kd.errors import DataError, RkdError
from retrieval_kd.io import read_json
from retrieval_kd.protocols import Index, IndexClass
from retrieval_kd.registry import Registry

__all__ = ["INDEXES", "IndexClass", "load_index"]


INDEXES: Registry[IndexClass] = Registry(
    "index",
    {
        "faiss": "retrieval_kd.indexes.faiss_index:FaissIndex",
        "sparse": "retrieval_kd.indexes.sparse_index:SparseIndex",
        "lucene-bm25": "retrieval_kd.indexes.lucene_bm25:LuceneBM25Index",
        "lucene-impact": "retrieval_kd.indexes.lucene_impact:LuceneImpactIndex",
        "seismic": "retrieval_kd.indexes.seismic_index:SeismicIndex",
        "maxsim": "retrieval_kd.indexes.maxsim_index:MaxSimIndex",
        "plaid": "retrieval_kd.indexes.plaid_index:PlaidIndex",
        "fast-plaid": "retrieval_kd.indexes.fast_plaid_index:FastPlaidIndex",
    },
)


def load_index(path: Path) -> Index:
    """Opens the index folder at ``path``, whatever its kind."""
    path = Path(path)
    manifest_file = path / "manifest.json"
    if not manifest_file.is_file():
        raise RkdError(f"{path}: not an rkd index (no manifest.json); build one with `rkd index`")
    manifest = read_json(manifest_file)
    kind = manifest.get("kind") if isinstance(manifest, dict) else None
    if not isinstance(kind, str):
        raise DataError(f"{manifest_file}: no index 'kind'; expected one of {INDEXES.names()}")
    if kind not in INDEXES:
        raise DataError(f"{manifest_file}: unknown index kind {kind!r}; choose from {INDEXES.names()}")
    return INDEXES.get(kind).load(path)
