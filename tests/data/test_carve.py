"""The dev carve: disjoint, complete, stable under reordering, and wired through `rkd run`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retrieval_kd.data import load_dataset
from retrieval_kd.data.carve import dev_ids, sample_ids
from retrieval_kd.errors import DataError


def test_carve_splits_judged_queries(tiny_beir: Path) -> None:
    base = load_dataset(f"{tiny_beir}:train")
    dev = load_dataset(f"{tiny_beir}:train#dev:0.25")
    rest = load_dataset(f"{tiny_beir}:train#train:0.25")
    judged = set(base.queries)
    assert len(dev.queries) == round(0.25 * len(judged))
    assert set(dev.queries).isdisjoint(rest.queries)
    assert set(dev.queries) | set(rest.queries) == judged
    assert set(dev.qrels) == set(dev.queries) and set(rest.qrels) == set(rest.queries)
    assert dev.docs == base.docs  # the whole corpus stays retrievable
    assert dev.fingerprint()["carved_from"] == base.fingerprint()


def test_membership_depends_on_the_id_only() -> None:
    ids = [f"q{i}" for i in range(200)]
    assert dev_ids(ids, 0.2) == dev_ids(list(reversed(ids)), 0.2)
    assert len(dev_ids(ids, 0.2)) == 40
    assert dev_ids(ids, 0.1) < dev_ids(ids, 0.2)  # a larger carve only adds queries


def test_a_sample_is_a_stable_subset_and_nests_with_the_dev_carve(tiny_beir: Path) -> None:
    base = load_dataset(f"{tiny_beir}:train")
    sample = load_dataset(f"{tiny_beir}:train#sample:4")
    assert set(sample.queries) == sample_ids(sorted(base.queries), 4) and len(sample.queries) == 4
    assert set(sample.qrels) == set(sample.queries) and sample.docs == base.docs
    assert sample_ids([f"q{i}" for i in range(50)], 5) < sample_ids([f"q{i}" for i in range(50)], 9)
    assert sample_ids([f"q{i}" for i in range(50)], 5) != dev_ids([f"q{i}" for i in range(50)], 0.1)
    dev = load_dataset(f"{tiny_beir}:train#sample:4#dev:0.25")
    rest = load_dataset(f"{tiny_beir}:train#sample:4#train:0.25")
    assert len(dev.queries) == 1 and len(rest.queries) == 3
    assert set(dev.queries) | set(rest.queries) == set(sample.queries)
    with pytest.raises(DataError, match=r"a sample of 99 queries; .* has 8 judged queries"):
        _ = load_dataset(f"{tiny_beir}:train#sample:99").queries


@pytest.mark.parametrize(
    "spec", ["X#test:0.2", "X#dev:1", "X#dev:0", "X#dev:abc", "#dev:0.2", "X#sample:0", "X#sample:1.5"]
)
def test_bad_carve_specs(spec: str) -> None:
    with pytest.raises(DataError, match="BASE#dev:FRACTION"):
        load_dataset(spec)


def test_run_on_dev_never_trains_on_dev(tiny_recipe: Path, tmp_path: Path) -> None:
    from retrieval_kd.config import load_config
    from retrieval_kd.pipeline import run_recipe

    recipe = tiny_recipe.read_text().replace("[teacher]", "dev = 0.25\n[teacher]")
    (tmp_path / "dev.toml").write_text(recipe)
    config = load_config(tmp_path / "dev.toml")
    report = run_recipe(config, tmp_path / "run", eval_on="dev")
    assert report["eval_dataset"].endswith("#dev:0.25")
    assert (tmp_path / "run" / "report-dev.json").is_file()
    assert not (tmp_path / "run" / "report.json").exists()
    dev = set(load_dataset(report["eval_dataset"]).queries)
    mined = {json.loads(line)["query_id"] for line in (tmp_path / "run" / "mine" / "candidates.jsonl").open()}
    assert mined and mined.isdisjoint(dev)
    # the test read reuses every stage but evaluation
    test = run_recipe(config, tmp_path / "run", eval_on="test")
    ran = {stage for stage, did in test["stages"].items() if did}
    assert ran == {"eval teacher", "eval student_before", "eval student_after"}


def test_a_dataset_missing_from_the_cache_is_one_line(tmp_path: Path) -> None:
    """Offline, ir_datasets' download fails deep in requests; rkd says where the cache is."""
    import os
    import subprocess
    import sys

    code = (
        "from retrieval_kd.data import load_dataset\n"
        "from retrieval_kd.errors import DataError\n"
        "try:\n    load_dataset('beir/scifact/test').queries\n"
        "except DataError as e:\n    print(e)\n"
    )
    env = {**os.environ, "IR_DATASETS_HOME": str(tmp_path / "empty")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.stdout.startswith(
        f"dataset 'beir/scifact/test' is not in the ir_datasets cache at {tmp_path / 'empty'} "
        "and could not be downloaded"
    ), done.stdout + done.stderr
