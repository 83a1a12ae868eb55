"""A recipe that cannot train is refused before any stage spends time."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_recipe_with_untrainable_student_is_refused_up_front(tiny_recipe: Path, tmp_path: Path) -> None:
    from retrieval_kd.config import load_config
    from retrieval_kd.errors import ConfigError
    from retrieval_kd.pipeline import run_recipe

    recipe = tiny_recipe.read_text().replace("[student]\n", '[student]\nkind = "bm25"\n')
    (tmp_path / "bm25.toml").write_text(recipe)
    with pytest.raises(
        ConfigError, match=r"\[student\].kind = 'bm25' has no weights to train; choose from \["
    ):
        run_recipe(load_config(tmp_path / "bm25.toml"), tmp_path / "run")
    assert not (tmp_path / "run").exists()  # nothing mined, nothing scored
