"""Recipe configs: one TOML file, one frozen dataclass per section.

Every published figure comes from one of these files (``configs/``). Unknown sections or
fields, and values of the wrong type, are refused with the file, the field and the valid names.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

import tomllib

from retrieval_kd.errors import ConfigError
from retrieval_kd.fingerprint import hash_json


@dataclass(frozen=True)
class DataConfig:
    train: str = "beir/scifact/train"
    eval: str = "beir/scifact/test"


@dataclass(frozen=True)
class TeacherConfig:
    kind: str = "bi-encoder"
    model: str = "sentence-transformers/all-MiniLM-L6-v2"
    batch_size: int = 64
    max_length: int | None = None
    dtype: str = "float32"
    device: str = "auto"


@dataclass(frozen=True)
class MineConfigSection:
    model: str | None = None  # first-stage retriever; default: the teacher when it is a bi-encoder
    negatives: int = 30
    factory: str = "Flat"
    batch_size: int = 32
    max_seq_length: int | None = None


@dataclass(frozen=True)
class StudentConfig:
    kind: str = "dense"
    model: str = "sentence-transformers/all-MiniLM-L6-v2"
    num_layers: int | None = None
    max_seq_length: int | None = None


@dataclass(frozen=True)
class TrainConfig:
    loss: str = "kl"
    loss_options: dict[str, Any] = field(default_factory=dict)
    negatives: int = 7
    negative_pool: int | None = None  # sample `negatives` from the top `negative_pool` each epoch
    epochs: float = 1.0
    batch_size: int = 32
    lr: float = 5e-5
    warmup: float = 0.1
    weight_decay: float = 0.01
    seed: int = 42
    max_steps: int = -1
    bf16: bool = False
    max_queries: int | None = None  # train on the first N queries only (smoke runs)


@dataclass(frozen=True)
class IndexConfig:
    factory: str = "Flat"
    batch_size: int = 32


@dataclass(frozen=True)
class EvalConfig:
    metrics: tuple[str, ...] = ("ndcg@10", "recall@100", "mrr@10")
    k: int = 100
    max_queries: int | None = None


@dataclass(frozen=True)
class RecipeConfig:
    name: str = "recipe"
    data: DataConfig = DataConfig()
    teacher: TeacherConfig = TeacherConfig()
    mine: MineConfigSection = MineConfigSection()
    student: StudentConfig = StudentConfig()
    train: TrainConfig = TrainConfig()
    index: IndexConfig = IndexConfig()
    eval: EvalConfig = EvalConfig()
    source: str = ""

    def section_hash(self, *names: str) -> str:
        return hash_json({n: dataclasses.asdict(getattr(self, n)) for n in names})


T = TypeVar("T")


def _check_type(value: Any, hint: Any, where: str) -> Any:
    text = str(hint)
    if value is None:
        if "None" in text:
            return None
        raise ConfigError(f"{where}: must not be empty")
    if "tuple" in text:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return tuple(value)
    if "dict" in text:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return value
    if text.startswith("float") or hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if text.startswith("int") or hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if text.startswith("bool") or hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def build(cls: type[T], values: dict[str, Any], where: str) -> T:
    """``cls(**values)`` with every field checked; the message names ``where`` and the field."""
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; valid fields: {names}")
    kwargs = {k: _check_type(v, hints[k], f"{where}.{k}") for k, v in values.items()}
    return cls(**kwargs)


SECTIONS: dict[str, type[Any]] = {
    "data": DataConfig,
    "teacher": TeacherConfig,
    "mine": MineConfigSection,
    "student": StudentConfig,
    "train": TrainConfig,
    "index": IndexConfig,
    "eval": EvalConfig,
}


def load_config(path: Path) -> RecipeConfig:
    """Reads a recipe TOML; the registries validate kinds and loss names up front, so a typo
    fails in a second, not after an hour of teacher scoring."""
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML ({e})") from None
    name = raw.pop("name", path.stem)
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ConfigError(
            f"{path}: unknown section(s) {unknown}; valid sections: {sorted(SECTIONS)} and 'name'"
        )
    sections = {}
    for key, cls in SECTIONS.items():
        value = raw.get(key, {})
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: [{key}] must be a table")
        sections[key] = build(cls, value, f"{path}: [{key}]")
    config = RecipeConfig(name=str(name), source=str(path), **sections)
    validate(config, path)
    return config


def validate(config: RecipeConfig, path: Path | str) -> None:
    from retrieval_kd.eval.metrics import parse_metric
    from retrieval_kd.losses import LOSSES
    from retrieval_kd.students import STUDENTS
    from retrieval_kd.teachers import TEACHERS

    for registry, value, fieldname in (
        (TEACHERS, config.teacher.kind, "[teacher].kind"),
        (STUDENTS, config.student.kind, "[student].kind"),
        (LOSSES, config.train.loss, "[train].loss"),
    ):
        if value not in registry:
            raise ConfigError(f"{path}: {fieldname} = {value!r} is unknown; choose from {registry.names()}")
    try:
        [parse_metric(m) for m in config.eval.metrics]
    except Exception as e:
        raise ConfigError(f"{path}: [eval].metrics: {e}") from None
    if config.train.negatives < 1:
        raise ConfigError(f"{path}: [train].negatives must be >= 1")
    if config.train.negative_pool is not None and config.train.negative_pool < config.train.negatives:
        raise ConfigError(f"{path}: [train].negative_pool must be >= negatives ({config.train.negatives})")
    if config.mine.negatives < config.train.negatives:
        raise ConfigError(
            f"{path}: [mine].negatives ({config.mine.negatives}) is below "
            f"[train].negatives ({config.train.negatives})"
        )
