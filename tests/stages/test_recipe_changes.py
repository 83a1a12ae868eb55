"""`rkd run` chains the fingerprints its stages return: change one setting of the recipe and
exactly the stages downstream of it rerun, every other one says "up to date"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from retrieval_kd.config import RecipeConfig, load_config
from retrieval_kd.pipeline import run_recipe

STAGES = {
    "mine",
    "score",
    "init",
    "train",
    *(
        f"{s} {system}"
        for s in ("index", "eval")
        for system in ("teacher", "student_before", "student_after")
    ),
}
AFTER = {"index student_after", "eval student_after"}
BEFORE = {"index student_before", "eval student_before"}
TEACHER = {"index teacher", "eval teacher"}


def change(config: RecipeConfig, section: str, **values: Any) -> RecipeConfig:
    updated = getattr(config, section).model_copy(update=values)
    return config.model_copy(update={section: updated})


def reran(config: RecipeConfig, out: Path) -> set[str]:
    report = run_recipe(config, out)
    assert set(report["stages"]) == STAGES
    return {name for name, ran in report["stages"].items() if ran}


CHANGES: list[tuple[str, dict[str, Any], set[str]]] = [
    ("teacher", {"max_length": 24}, {"score", "train", *AFTER}),
    ("mine", {"negatives": 5}, {"mine", "score", "train", *AFTER}),
    ("student", {"num_layers": 2}, {"init", "train", *BEFORE, *AFTER}),
    ("train", {"lr": 1e-3}, {"train", *AFTER}),
    ("index", {"options": {"factory": "HNSW16"}}, {*BEFORE, *AFTER}),  # [mine] sets the teacher's
    ("mine", {"index": {"factory": "HNSW16"}}, {"mine", "score", "train", *TEACHER, *AFTER}),
    ("eval", {"k": 5, "metrics": ("ndcg@5",)}, {"eval teacher", "eval student_before", "eval student_after"}),
]


def test_each_change_reruns_exactly_downstream(tiny_recipe: Path, tmp_path: Path) -> None:
    config = load_config(tiny_recipe)
    out = tmp_path / "run"
    assert reran(config, out) == STAGES
    assert reran(config, out) == set()  # unchanged: every stage, index and eval included, up to date
    for section, values, expected in CHANGES:  # one setting at a time, on top of the last
        config = change(config, section, **values)
        assert reran(config, out) == expected, (section, values)
    assert reran(config, out) == set()
