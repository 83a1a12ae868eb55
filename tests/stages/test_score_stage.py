"""The score stage with a damaged part: training refuses to read it, the next scoring run sets
it aside, scores exactly its pairs again, and the store equals the undamaged one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from retrieval_kd.config import StudentConfig, TrainConfig
from retrieval_kd.errors import RkdError
from retrieval_kd.scores.store import ScoreStore
from retrieval_kd.stages import MineStage, ScoreStage, TrainStage, mine_stage, score_stage, train_stage


def test_flipped_byte_is_refused_then_rescored(tiny_beir: Path, tiny_model: Path, tmp_path: Path) -> None:
    train = f"{tiny_beir}:train"
    mined = mine_stage(MineStage(train, str(tiny_model), tmp_path / "cands", negatives=4))
    config = ScoreStage(
        mined.path, train, "bi-encoder", str(tiny_model), tmp_path / "store", batch_size=1, part_size=8
    )
    first = score_stage(config)
    assert first.ran and "scored 40 pairs" in first.summary
    store = ScoreStore.load(tmp_path / "store")
    original = store.to_table()
    parts = sorted(store.path.glob("part-*.parquet"))
    assert len(parts) == 5  # 40 pairs in parts of 8
    data = bytearray(parts[2].read_bytes())
    data[len(data) // 2] ^= 0x01
    parts[2].write_bytes(bytes(data))

    with pytest.raises(RkdError, match=parts[2].name):
        train_stage(
            TrainStage(
                mined.path,
                tmp_path / "store",
                None,
                train,
                StudentConfig(model=str(tiny_model)),
                TrainConfig(negatives=3, batch_size=4),
                tmp_path / "student",
            )
        )
    assert not (tmp_path / "student").exists()

    again = score_stage(config)
    assert again.ran and "scored 8 pairs, 32 already stored" in again.summary
    assert (store.path / "quarantine" / parts[2].name).is_file()  # set aside, not deleted
    assert ScoreStore.load(tmp_path / "store").to_table().equals(original)
    assert not score_stage(config).ran  # and now up to date


@pytest.mark.parametrize("teacher", ["bi-encoder", "cross-encoder"])
def test_scoring_says_where_the_time_went(
    teacher: str, tiny_beir: Path, tiny_model: Path, tmp_path: Path
) -> None:
    """Pairs per second and the shares of tokenizing, computing and writing, printed and returned:
    the bi-encoder tokenizes through sentence-transformers' ``preprocess``, the cross-encoder in its
    own tokenize-once assembler; both are counted apart from computing."""
    from retrieval_kd.testing import tiny_cross_encoder_folder

    train = f"{tiny_beir}:train"
    mined = mine_stage(MineStage(train, str(tiny_model), tmp_path / "cands", negatives=4))
    model = tiny_model if teacher == "bi-encoder" else tiny_cross_encoder_folder(tmp_path / "ce", tiny_model)
    config = ScoreStage(mined.path, train, teacher, str(model), tmp_path / "store", batch_size=4, part_size=8)
    result = score_stage(config)
    timing = result.extra["timing"]
    assert timing["items"] == 40 and set(timing["phases"]) == {"tokenize", "compute", "write"}
    assert all(seconds > 0 for seconds in timing["phases"].values())
    assert sum(timing["phases"].values()) <= timing["seconds"] + 0.002  # total rounded to 1 ms
    assert timing["per_s"] == round(40 / timing["seconds"], 1)
    assert re.search(
        r"\n  40 pairs in [\d.]+ s \([\d.,]+ pairs/s\): tokenize \d+%, compute \d+%, write \d+%, other \d+%$",
        result.summary,
    ), result.summary
    assert "timing" not in score_stage(config).extra  # up to date: nothing scored, nothing timed


def test_tokenizing_is_moved_out_of_computing_by_hand() -> None:
    """The compute span covered teacher.score whole: the tokenizing inside it (1.0 s through
    preprocess, 0.5 s in the teacher's own timings since the run began) leaves compute."""
    from retrieval_kd.stages.score import _tokenizing_apart
    from retrieval_kd.timing import Phases

    phases = Phases()
    phases.add("compute", 5.0)
    phases.add("tokenize", 1.0)
    phases.add("write", 0.25)
    _tokenizing_apart(phases, {"tokenize": 2.5, "compute": 9.0}, {"tokenize": 2.0})
    assert phases.seconds == {"compute": 3.5, "tokenize": 1.5, "write": 0.25}
