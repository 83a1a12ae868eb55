"""The pipeline's stages as library functions: mine, score, train, index, evaluate.

Each takes a frozen config (its settings and the paths of its inputs) and returns a
:class:`StageResult`: the output's path and fingerprint, and whether it ran or was already up
to date. A fingerprint hashes the stage's own settings together with the fingerprints of its
inputs, which every artifact records (``.rkd-stage.json``), so a change anywhere reruns exactly
the stages downstream of it, whether they are called one by one (``rkd mine``, ``rkd train``...)
or chained by ``rkd run``. The CLI holds no stage logic: it parses, builds a config, calls one
of these and prints the result.
"""

from __future__ import annotations

from retrieval_kd.stages._common import StageResult
from retrieval_kd.stages.evaluate import EvalStage, evaluate_stage
from retrieval_kd.stages.index import IndexStage, index_stage
from retrieval_kd.stages.mine import MineStage, mine_stage
from retrieval_kd.stages.score import ScoreStage, score_stage
from retrieval_kd.stages.train import InitStage, TrainStage, init_stage, train_stage

__all__ = [
    "EvalStage",
    "IndexStage",
    "InitStage",
    "MineStage",
    "ScoreStage",
    "StageResult",
    "TrainStage",
    "evaluate_stage",
    "index_stage",
    "init_stage",
    "mine_stage",
    "score_stage",
    "train_stage",
]
