"""Every docstring example in the package runs, and none quietly disappears.

The walk covers ``retrieval_kd`` and the folders pyproject maps into it (``teachers/``,
``indexes/``, ``eval/`` as ``retrieval_kd.teachers``, ``.indexes``, ``.eval``), so it finds the
same modules wherever the package is installed from. A module whose import needs a missing
third-party package (an optional extra) is skipped, naming the package; any other import error
fails.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Examples per module today (SKIPped ones not counted): deleting one fails the count test.
MIN_EXAMPLES = {
    "retrieval_kd.config": 3,
    "retrieval_kd.fingerprint": 1,
    "retrieval_kd.progress": 6,
    "retrieval_kd.registry": 3,
    "retrieval_kd.data.carve": 4,
    "retrieval_kd.losses.kl": 2,
    "retrieval_kd.losses.margin_mse": 2,
    "retrieval_kd.losses.pairwise": 2,
    "retrieval_kd.indexes.faiss_index": 3,
    "retrieval_kd.indexes.topk": 4,
    "retrieval_kd.eval.metrics": 6,
    "retrieval_kd.eval.stats": 3,
    "retrieval_kd.eval.cost": 2,
    "retrieval_kd.eval.report": 1,
    "retrieval_kd.teachers.pair_tokens": 1,
    "retrieval_kd.scores.normalise": 4,
    "retrieval_kd.scores.ensemble": 6,
    "retrieval_kd.scores.ndcg": 2,
    "retrieval_kd.scores.exporters": 1,
    "retrieval_kd.scores.binary": 3,
}
MIN_TOTAL = sum(MIN_EXAMPLES.values())


def _packages() -> list[str]:
    """The packages pyproject installs (some live outside ``retrieval_kd/``)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return sorted(setup["packages"])


def _walk() -> tuple[list[str], list[str]]:
    """(every module, every package) under the packages pyproject lists."""
    names: set[str] = set()
    packages: set[str] = set()
    for package in _packages():
        names.add(package)
        packages.add(package)
        module = importlib.import_module(package)  # packages only: light by design
        for info in pkgutil.walk_packages(module.__path__, f"{package}."):
            # __main__ runs the CLI when imported
            if info.name.rsplit(".", 1)[-1] != "__main__":
                names.add(info.name)
            if info.ispkg:
                packages.add(info.name)
    return sorted(names), sorted(packages)


MODULES, PACKAGES = _walk()


def _import(name: str) -> ModuleType:
    """Imports ``name``; skips when what is missing is a third-party package."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        missing = (e.name or "").split(".")[0]
        if missing and missing != "retrieval_kd":
            pytest.skip(f"{name} needs {missing!r}, which is not installed")
        raise


def _examples(module: ModuleType) -> int:
    """Examples doctest will run (not those marked ``+SKIP``)."""
    tests = doctest.DocTestFinder().find(module)
    return sum(1 for t in tests for ex in t.examples if not ex.options.get(doctest.SKIP, False))


def test_walk_finds_the_mapped_folders() -> None:
    for name in ("retrieval_kd.config", "retrieval_kd.teachers.bi_encoder", *MIN_EXAMPLES):
        assert name in MODULES
    assert not any(m.endswith("__main__") for m in MODULES)


def test_pyproject_lists_every_package() -> None:
    """A package missing from ``[tool.setuptools] packages`` works in the editable checkout and
    is absent from a built wheel."""
    assert PACKAGES == _packages()


@pytest.mark.parametrize("name", MODULES)
def test_doctests_pass(name: str) -> None:
    module = _import(name)
    result = doctest.testmod(module, report=True)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed (see stdout)"
    assert result.attempted == _examples(module)


def test_no_example_was_deleted() -> None:
    counts = {}
    for name in MODULES:
        try:
            counts[name] = _examples(importlib.import_module(name))
        except ImportError as e:
            if (e.name or "retrieval_kd").split(".")[0] == "retrieval_kd":
                raise
    fewer = {m: (counts.get(m, 0), n) for m, n in MIN_EXAMPLES.items() if counts.get(m, 0) < n}
    assert fewer == {}, f"modules with fewer examples than before (now, before): {fewer}"
    assert sum(counts.values()) >= MIN_TOTAL
