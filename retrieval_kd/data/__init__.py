"""Datasets: queries, documents and qrels behind one reader interface.

A dataset spec is either an ir_datasets id (``beir/scifact/test``, exactly what a user with
internet would type) or a BEIR-layout folder (``corpus.jsonl``, ``queries.jsonl``,
``qrels/<split>.tsv``), optionally with ``:split`` (default ``test``); either may end in
``#dev:FRACTION`` or ``#train:FRACTION``, the two sides of a dev split carved from its judged
queries (:mod:`retrieval_kd.data.carve`).
"""

from __future__ import annotations

from pathlib import Path

from retrieval_kd.data.base import Dataset
from retrieval_kd.data.beir_folder import BeirFolder
from retrieval_kd.data.carve import Carved, carve_spec, parse_carve
from retrieval_kd.data.irds import IrDataset


def load_dataset(spec: str) -> Dataset:
    """Opens a dataset by ir_datasets id or BEIR folder path (``DIR`` or ``DIR:split``)."""
    carve = parse_carve(spec)
    if carve is not None:
        base, part, fraction = carve
        return Carved(load_dataset(base), spec, part, fraction)
    folder, _, split = spec.rpartition(":") if ":" in spec else (spec, "", "")
    if folder and Path(folder).is_dir():
        return BeirFolder(Path(folder), split or "test")
    if Path(spec).is_dir():
        return BeirFolder(Path(spec), "test")
    if "/" in spec and (spec.startswith((".", "/", "~")) or Path(spec).suffix):
        from retrieval_kd.errors import DataError

        raise DataError(f"dataset folder {spec!r} does not exist")
    return IrDataset(spec)


__all__ = ["BeirFolder", "Carved", "Dataset", "IrDataset", "carve_spec", "load_dataset"]
