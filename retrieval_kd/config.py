"""Recipe configs: one TOML file, one frozen pydantic model per section.

Every published figure comes from one of these files (``configs/``). Each section is a strict,
frozen model: unknown sections or fields, values of the wrong type and values out of range are
refused with one line naming the file, the section, the field, what was expected and what was
found, e.g. ``recipe.toml: [train].lr: expected a number > 0, got 0``.

Example:
    >>> cfg = RecipeConfig.from_dict({"train": {"epochs": 2}}, "demo.toml")
    >>> cfg.train.epochs, cfg.train.batch_size, cfg.name
    (2.0, 32, 'demo')
    >>> RecipeConfig.from_dict({"train": {"batch_size": 0}}, "demo.toml")
    Traceback (most recent call last):
    ...
    retrieval_kd.errors.ConfigError: demo.toml: [train].batch_size: expected an integer >= 1, got 0
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
)

from retrieval_kd.config_errors import translate
from retrieval_kd.errors import ConfigError
from retrieval_kd.fingerprint import hash_json
from retrieval_kd.systems import ROW_NAME

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "SECTIONS",
    "DataConfig",
    "EvalConfig",
    "EvalSystemConfig",
    "IndexConfig",
    "MineConfigSection",
    "RecipeConfig",
    "StudentConfig",
    "TeacherConfig",
    "TeacherMember",
    "TrainConfig",
    "config_from_dict",
    "load_config",
    "validate",
]

# Constrained types shared by the sections. ``allow_inf_nan=False`` refuses inf and nan, which
# TOML can spell (``lr = inf``).
PositiveInt = Annotated[int, Field(ge=1)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Name = Annotated[str, Field(min_length=1)]
Dtype = Literal["float32", "bfloat16", "float16"]
Device = Annotated[str, Field(pattern=r"^(auto|cpu|mps|(cuda|xpu)(:\d+)?)$")]
Options = dict[str, Any]
RERANK_FIELDS = ("rerank", "teacher", "first_stage", "depth")  # [[eval.systems]] re-rank rows only

S = TypeVar("S", bound="_Section")


class _Section(BaseModel):
    """Strict and frozen: an int is accepted where a float is expected, nothing else converts."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    def to_json(self) -> dict[str, Any]:
        """The JSON-able form that fingerprints hash (tuples become lists)."""
        return self.model_dump(mode="json")

    def replace(self: S, **changes: Any) -> S:
        """A copy with ``changes``, checked as a file's values are (``model_copy`` checks nothing).

        Raises:
            ConfigError: ``[train].lr: expected a number > 0, got 0``.
        """
        try:
            return self.model_validate({**dict(self), **changes})
        except ValidationError as e:
            name = next((k for k, v in SECTIONS.items() if v is type(self)), type(self).__name__)
            raise translate(e, type(self), f"[{name}]") from None


class DataConfig(_Section):
    """``[data]``: ir_datasets ids or BEIR folders (``path[:split]``)."""

    train: Name = "beir/scifact/train"
    eval: Name = "beir/scifact/test"
    # hold out this fraction of the judged train queries as a dev split (rkd run --eval-on dev):
    # training never sees them; a recipe is tuned on them and reads [data].eval once
    dev: Annotated[float, Field(ge=0, lt=1)] = 0.0


class TeacherMember(_Section):
    """One ``[[teacher.members]]`` of an ensemble teacher, exactly one of: ``kind`` (a TEACHERS
    name, with ``model`` and the [teacher] settings below), ``retriever`` (a STUDENTS encoder kind:
    its search scores over the whole corpus, e.g. ``"bm25"``; ``options`` go to its index) or
    ``scores`` (an existing store: a teacher folder, or a root holding one teacher)."""

    kind: Name | None = None
    retriever: Name | None = None
    scores: Name | None = None
    model: Name | None = None
    batch_size: PositiveInt = 64
    max_length: PositiveInt | None = None
    dtype: Dtype = "float32"
    device: Device = "auto"
    options: Options = Field(default_factory=dict)


class TeacherConfig(_Section):
    """``[teacher]``: the model whose scores the student learns; ``kind`` is a TEACHERS name.

    ``kind = "ensemble"`` fuses its ``members`` (:mod:`retrieval_kd.scores.ensemble`): per-query
    ``normalisation``, then a sum with fixed ``weights`` (one per member; default equal) or,
    with ``tune = true``, the weights (a grid of step ``tune_step``) that score best on the
    training split's qrels, never the evaluation split's."""

    kind: Name = "bi-encoder"
    model: Name = "sentence-transformers/all-MiniLM-L6-v2"
    batch_size: PositiveInt = 64
    max_length: PositiveInt | None = None
    dtype: Dtype = "float32"
    device: Device = "auto"
    options: Options = Field(default_factory=dict)  # teacher-specific extras
    # the score store root (default <out>/scores). A store is keyed by the teacher's fingerprint,
    # so recipes with one teacher share it: a second recipe scores nothing already scored
    store: Name | None = None
    members: tuple[TeacherMember, ...] = ()
    normalisation: Literal["zscore", "minmax", "rank", "none"] = "zscore"
    weights: tuple[NonNegativeFloat, ...] | None = None
    tune: bool = False
    tune_step: Annotated[float, Field(gt=0, le=0.5)] = 0.1

    @field_validator("members", "weights", mode="before")
    @classmethod
    def _tuples(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value  # TOML arrays are lists


class MineConfigSection(_Section):
    """``[mine]``: the first-stage retriever that mines negatives; ``kind`` is a STUDENTS name."""

    kind: Name = "dense"
    model: Name | None = None  # default: the teacher when it is a bi-encoder
    negatives: PositiveInt = 30
    batch_size: PositiveInt = 32
    max_seq_length: PositiveInt | None = None
    index: Options = Field(default_factory=dict)  # options for the retriever's index class
    # candidates folders of other runs to adopt (hard-linked) when they are this exact mining
    reuse: tuple[Name, ...] = ()
    # false-negative filtering (dense retrievers; off by default): drop a mined negative that the
    # mining model scores above positive - absolute_margin, or above positive - |positive| * relative_margin
    absolute_margin: NonNegativeFloat | None = None
    relative_margin: Annotated[float, Field(ge=0, le=1)] | None = None

    @field_validator("reuse", mode="before")
    @classmethod
    def _reuse_tuple(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value  # TOML arrays are lists


class StudentConfig(_Section):
    """``[student]``: the model trained from the teacher's scores; ``kind`` is a STUDENTS name."""

    kind: Name = "dense"
    model: Name = "sentence-transformers/all-MiniLM-L6-v2"
    num_layers: PositiveInt | None = None  # keep the first N layers
    max_seq_length: PositiveInt | None = None
    options: Options = Field(default_factory=dict)


class TrainConfig(_Section):
    """``[train]``: the loss and the optimiser; ``[train.args]`` passes anything else through to
    the Hugging Face ``TrainingArguments`` (see :func:`retrieval_kd.train.args.check_trainer_args`)."""

    loss: Name = "kl"
    loss_options: Options = Field(default_factory=dict)
    negatives: PositiveInt = 7
    negative_pool: PositiveInt | None = None  # sample `negatives` from the top `negative_pool` each epoch
    epochs: PositiveFloat = 1.0
    batch_size: PositiveInt = 32
    lr: PositiveFloat = 5e-5
    warmup: NonNegativeFloat = 0.1  # below 1: a share of the steps; from 1: a number of steps
    weight_decay: NonNegativeFloat = 0.01
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 42
    max_steps: int = -1  # -1: as many as the epochs make
    bf16: bool = False
    deterministic: bool = True  # torch's deterministic kernels (a GPU run is slower with them)
    max_queries: PositiveInt | None = None  # train on the first N queries only (smoke runs)
    save_steps: PositiveInt = 200  # checkpoint every N steps
    save_total_limit: PositiveInt | None = 2
    args: Options = Field(default_factory=dict)

    @field_validator("max_steps")
    @classmethod
    def _max_steps(cls, value: int) -> int:
        if value != -1 and value < 1:
            raise ValueError("-1 (no limit) or an integer >= 1")
        return value


class IndexConfig(_Section):
    """``[index]``: the index over the student's documents; ``kind`` defaults to the student's
    own index kind, ``options`` go to the index class (``[index.options] factory = "Flat"``)."""

    kind: Name | None = None
    batch_size: PositiveInt = 32
    options: Options = Field(default_factory=dict)
    dtype: Dtype = "float32"  # the students' weights while encoding (queries follow the index)


class EvalSystemConfig(_Section):
    """One more row of a recipe's comparison (``[[eval.systems]]``), beside the teacher and the
    student before and after: a model (a student folder, a hub id, or a retriever without
    weights such as ``"bm25"``) indexed over the eval corpus, or an index folder that records its
    query encoder. Paths are relative to where ``rkd run`` is started.

    Or a re-rank row (:mod:`retrieval_kd.stages.teacher_rerank`): a teacher reorders the top
    ``depth`` (default ``[eval].k``) of an earlier row's run (``first_stage``, default the
    recipe's first-stage row). The teacher is ``rerank = "teacher"`` (the recipe's ``[teacher]``,
    an ensemble with its tuned weights), ``rerank = "teacher.members[i]"`` (one member), or an
    inline ``teacher`` table with the ``[teacher]`` schema (members included, fixed weights)."""

    name: Name
    model: Name | None = None
    index: Name | None = None
    kind: Name | None = None  # the STUDENTS kind to open ``model`` as (default: as saved, or dense)
    index_kind: Name | None = None
    index_options: Options = Field(default_factory=dict)
    rerank: Name | None = None
    teacher: TeacherConfig | None = None
    first_stage: Name | None = None
    depth: PositiveInt | None = None

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # a row that re-ranks nothing dumps (and so hashes) as it did before re-rank rows existed
        dumped: dict[str, Any] = handler(self)
        return {k: v for k, v in dumped.items() if k not in RERANK_FIELDS or v is not None}

    @field_validator("name")
    @classmethod
    def _one_word(cls, value: str) -> str:
        if not re.fullmatch(ROW_NAME, value):
            # it names a folder and a TREC run tag
            raise ValueError("one word of letters, digits and _ . + - (e.g. 'bm25', 'dense-student')")
        return value


class EvalConfig(_Section):
    """``[eval]``: metric names as ``rkd eval`` takes them, the retrieval depth, more systems to
    compare, and the paired test with its multiple-comparison correction."""

    metrics: tuple[Name, ...] = ("ndcg@10", "recall@100", "mrr@10")
    k: PositiveInt = 100
    max_queries: PositiveInt | None = None
    systems: tuple[EvalSystemConfig, ...] = ()
    stat_test: Literal["student", "fisher"] = "student"
    correction: Literal["holm", "bonferroni", "none"] = "holm"

    @field_validator("systems", mode="before")
    @classmethod
    def _systems_tuple(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value

    @field_validator("metrics", mode="before")
    @classmethod
    def _list_to_tuple(cls, value: Any) -> Any:
        if isinstance(value, list | tuple) and not value:
            raise ValueError("a non-empty list")
        return tuple(value) if isinstance(value, list) else value  # TOML arrays are lists


SECTIONS: dict[str, type[_Section]] = {
    "data": DataConfig,
    "teacher": TeacherConfig,
    "mine": MineConfigSection,
    "student": StudentConfig,
    "train": TrainConfig,
    "index": IndexConfig,
    "eval": EvalConfig,
}


class RecipeConfig(BaseModel):
    """A whole recipe: ``name``, ``source`` (the file it came from) and one model per section."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: str = "recipe"
    data: DataConfig = Field(default_factory=DataConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    mine: MineConfigSection = Field(default_factory=MineConfigSection)
    student: StudentConfig = Field(default_factory=StudentConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    index: IndexConfig = Field(default_factory=IndexConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        """Every section's settings, JSON-able."""
        return self.model_dump(mode="json")

    def section_hash(self, *names: str) -> str:
        """Hash of the named sections' settings: a stage's share of the fingerprint."""
        return hash_json({n: getattr(self, n).to_json() for n in names})

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], source: str | Path) -> RecipeConfig:
        """Builds and checks a recipe from parsed TOML; see :func:`config_from_dict`."""
        return config_from_dict(raw, source)


def config_from_dict(raw: Mapping[str, Any], source: str | Path) -> RecipeConfig:
    """Builds a :class:`RecipeConfig` from parsed TOML and checks it (types, ranges, registries).

    Args:
        raw: the parsed file: ``name`` and one table per section.
        source: where it came from; every error message starts with it.

    Raises:
        ConfigError: one line naming ``source``, the section and the field.
    """
    raw = dict(raw)
    name = raw.pop("name", Path(str(source)).stem)
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ConfigError(
            f"{source}: unknown section(s) {unknown}; valid sections: {sorted(SECTIONS)} and 'name'"
        )
    if not isinstance(name, str):
        raise ConfigError(f"{source}: name: expected a string, got {name!r}")
    sections: dict[str, _Section] = {}
    for key, cls in SECTIONS.items():
        value = raw.get(key, {})
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: [{key}]: expected a table, got {value!r}")
        try:
            sections[key] = cls.model_validate(value)
        except ValidationError as e:
            raise translate(e, cls, f"{source}: [{key}]") from None
    config = RecipeConfig.model_validate({"name": name, "source": str(source), **sections})
    validate(config, source)
    return config


def load_config(path: Path) -> RecipeConfig:
    """Reads a recipe TOML; the registries validate kinds and loss names up front, so a typo
    fails in a second, not after an hour of teacher scoring.

    Raises:
        ConfigError: a missing file, invalid TOML, or any bad section, field or value.
    """
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML ({e})") from None
    return config_from_dict(raw, path)


from retrieval_kd.config_checks import validate  # noqa: E402  (needs the sections above only to type-check)
