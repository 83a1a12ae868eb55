"""The cost of verify-on-read: loading a score store, an index and a student with and without
their checks, in the same process.

- store: ``--pairs`` pairs written in parts of ``--part-size`` (512: `rkd score-teacher`'s default),
  loaded whole (every part read, checked, merged into one sorted Arrow table) three ways:
  unchecked (the journals read, each part's bytes parsed as they are, then merged: the same path
  minus the checks; the baseline), rkd (``ScoreStore.load`` + ``len``: each part's sha256 against
  its journal line, its Parquet page CRCs, rows and columns), and page CRCs alone (rkd writes
  parts with them; ``page_checksum_verification``, no sha256); plus the sha256 of every part's
  bytes alone.
- index: a flat faiss index of ``--docs`` random 384-d vectors, ``load_index`` of the folder
  (xxh3-64 hash of ``index.faiss`` and ``doc_ids.json`` checked) vs the same files under a manifest
  without checksums (read unchecked, as folders saved before rkd recorded them); plus three
  hashes of ``index.faiss`` alone, the candidates for that check.
- student: ``--student`` saved as an rkd student, ``load_student`` (xxh3-64 hash of every file checked)
  vs the same files under an ``rkd.json`` without checksums. Skipped when the model cannot be
  resolved offline.

Each row is the minimum of ``--repeats`` runs, the variants interleaved so a neighbour's load
hits them alike; the ratio column is checked time / unchecked time.

Run::

    python benchmarks/bench_verify_on_read.py        # 1M pairs, 100k docs, all-MiniLM-L6-v2
    python benchmarks/bench_verify_on_read.py --pairs 200000 --docs 20000 --student ''
"""

from __future__ import annotations

import argparse
import hashlib
import json
import mmap
import os
import shutil
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash
from rich.console import Console
from rich.table import Table

from retrieval_kd.errors import RkdError
from retrieval_kd.scores import journal
from retrieval_kd.scores.merged import Merged
from retrieval_kd.scores.parts import KINDS
from retrieval_kd.scores.store import ScoreStore
from retrieval_kd.types import Pair

FINGERPRINT = "bench-teacher"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=1_000_000)
    p.add_argument("--docs-per-query", type=int, default=32)
    p.add_argument("--part-size", type=int, default=512, help="pairs per part (default 512)")
    p.add_argument("--docs", type=int, default=100_000, help="vectors in the faiss index (0: skip)")
    p.add_argument("--student", default="sentence-transformers/all-MiniLM-L6-v2", help="'' to skip")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dir", type=Path, default=None, help="where to write (default: a temp dir)")
    return p.parse_args()


def best_of(variants: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    best = {name: float("inf") for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def journaled(folder: Path) -> list[Path]:
    return [folder / e.file for w in journal.writers(folder) for e in journal.read(folder, w)[0]]


def parse_parts(folder: Path, verify_pages: bool) -> int:
    """A load minus rkd's checks: read the journals, then each part's bytes, parse, merge (as
    ScoreStore does)."""
    tables = [
        pq.ParquetFile(pa.BufferReader(f.read_bytes()), page_checksum_verification=verify_pages).read(
            use_threads=False
        )
        for f in journaled(folder)
    ]
    return len(Merged.build(tables, [0] * len(tables), KINDS["pointwise"]))


def store_rows(args: argparse.Namespace, tmp: Path) -> tuple[str, dict[str, float], dict[str, str]]:
    n, per_q = args.pairs, args.docs_per_query
    rng = np.random.default_rng(0)
    pairs = [
        Pair(f"q{i // per_q:07d}", f"d{i % per_q:03d}-{int(rng.integers(1 << 30)):09d}") for i in range(n)
    ]
    scores = rng.standard_normal(n).astype(np.float32)
    with ScoreStore.open(tmp, FINGERPRINT, {"kind": "bench"}) as store:
        for s in range(0, n, args.part_size):
            store.add(pairs[s : s + args.part_size], scores[s : s + args.part_size])
    folder = tmp / FINGERPRINT
    files = journaled(folder)
    size = sum(f.stat().st_size for f in files)

    def rkd_load() -> None:
        assert len(ScoreStore.load(tmp, FINGERPRINT)) == n

    best = best_of(
        {
            "unchecked": lambda: parse_parts(folder, verify_pages=False),
            "rkd": rkd_load,
            "page CRC": lambda: parse_parts(folder, verify_pages=True),
            "sha256": lambda: [hashlib.sha256(f.read_bytes()).digest() for f in files],
        },
        args.repeats,
    )
    what = {
        "unchecked": "journals read, parts parsed + merged, no check (baseline)",
        "rkd": "ScoreStore.load() + len: sha256, page CRCs, rows, columns",
        "page CRC": "the same with Parquet page CRCs verified, no sha256",
        "sha256": "sha256 of every part's bytes, nothing else",
    }
    title = f"store: {n:,} pairs in {len(files):,} parts of {args.part_size} ({size / 1e6:.1f} MB)"
    return title, best, what


def without_checksums(folder: Path, copy: Path, meta: str) -> None:
    """``copy``: ``folder``'s files (hard links) under a ``meta`` file with no ``files`` field."""
    shutil.copytree(folder, copy, copy_function=os.link)
    data = json.loads((folder / meta).read_text())
    del data["files"]
    (copy / meta).unlink()
    (copy / meta).write_text(json.dumps(data))


def index_rows(args: argparse.Namespace, tmp: Path) -> tuple[str, dict[str, float], dict[str, str]]:
    from retrieval_kd.indexes import load_index
    from retrieval_kd.indexes.faiss_index import FaissIndex

    vectors = np.random.default_rng(1).standard_normal((args.docs, 384)).astype(np.float32)
    index = FaissIndex(dim=384)
    index.add([f"d{i}" for i in range(args.docs)], vectors)
    index.save(tmp / "checked")
    without_checksums(tmp / "checked", tmp / "unchecked", "manifest.json")
    size = sum(p.stat().st_size for p in (tmp / "checked").iterdir())
    data = tmp / "checked" / "index.faiss"

    def mapped(hash_bytes: Callable[[Any], object]) -> Callable[[], object]:
        """Hashes index.faiss through a memory map, as rkd does, so only the hash differs."""

        def run() -> object:
            with data.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as view:
                return hash_bytes(view)

        return run

    best = best_of(
        {
            "unchecked": lambda: load_index(tmp / "unchecked"),
            "rkd": lambda: load_index(tmp / "checked"),
            "sha256": mapped(lambda view: hashlib.sha256(view).digest()),
            "crc32": mapped(zlib.crc32),
            "xxh3": mapped(lambda view: xxhash.xxh3_64(view).digest()),
        },
        args.repeats,
    )
    what = {
        "unchecked": "load_index, no checksums (baseline)",
        "rkd": "load_index: xxh3-64 of every file",
        "sha256": "sha256 of index.faiss alone (memory-mapped)",
        "crc32": "zlib CRC-32 of index.faiss alone (memory-mapped)",
        "xxh3": "xxh3-64 of index.faiss alone (memory-mapped), rkd's",
    }
    return f"index: faiss Flat, {args.docs:,} × 384 ({size / 1e6:.0f} MB)", best, what


def student_rows(args: argparse.Namespace, tmp: Path) -> tuple[str, dict[str, float], dict[str, str]] | None:
    from retrieval_kd.students import build_student, load_student

    try:
        build_student("dense", args.student, device="cpu").save(tmp / "checked")
    except (RkdError, OSError) as e:
        print(f"student skipped: {e}")
        return None
    without_checksums(tmp / "checked", tmp / "unchecked", "rkd.json")
    size = sum(p.stat().st_size for p in (tmp / "checked").rglob("*") if p.is_file())
    best = best_of(
        {
            "unchecked": lambda: load_student(tmp / "unchecked", device="cpu"),
            "rkd": lambda: load_student(tmp / "checked", device="cpu"),
        },
        args.repeats,
    )
    what = {
        "unchecked": "load_student, no checksums (baseline)",
        "rkd": "load_student: xxh3-64 of every file",
    }
    return f"student: {args.student} ({size / 1e6:.0f} MB)", best, what


def main() -> None:
    args = parse_args()
    console = Console() if Console().is_terminal else Console(width=150)
    table = Table(title=f"Verify on read, {args.repeats} interleaved runs each (minimum kept)")
    for col in ("artifact", "load", "seconds", "ratio vs unchecked"):
        table.add_column(col, justify="left" if col in ("artifact", "load") else "right")
    tmp = Path(tempfile.mkdtemp(prefix="rkd-bench-verify-", dir=args.dir))
    sections: list[Callable[[argparse.Namespace, Path], tuple[str, dict[str, float], dict[str, str]] | None]]
    sections = [store_rows]
    sections += [index_rows] if args.docs else []
    sections += [student_rows] if args.student else []
    try:
        for k, section in enumerate(sections):
            (tmp / str(k)).mkdir()
            rows = section(args, tmp / str(k))
            if rows is None:
                continue
            title, best, what = rows
            for name, secs in best.items():
                table.add_row(title if name == "unchecked" else "", what[name], f"{secs:.3f}",
                              f"{secs / best['unchecked']:.3f}×")  # fmt: skip
            table.add_section()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    console.print(table)


if __name__ == "__main__":
    main()
