"""``[train.args]``: what passes through to the Hugging Face ``TrainingArguments``.

Anything rkd does not name goes to the Trainer as it is; the keys rkd sets itself are refused
with the recipe setting to use instead, and unknown keys with the closest real ones.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from retrieval_kd.errors import ConfigError

#: TrainingArguments that rkd sets itself, and the setting a recipe uses instead.
TRAINER_ARGS_OWNED: dict[str, str] = {
    "output_dir": "the stage's output folder (--out)",
    "per_device_train_batch_size": "[train].batch_size",
    "learning_rate": "[train].lr",
    "num_train_epochs": "[train].epochs",
    "max_steps": "[train].max_steps",
    "seed": "[train].seed",
    "data_seed": "[train].seed",
    "save_steps": "[train].save_steps",
    "save_total_limit": "[train].save_total_limit",
    "save_strategy": "[train].save_steps",
    "warmup_steps": "[train].warmup",
    "warmup_ratio": "[train].warmup",
    "weight_decay": "[train].weight_decay",
    "bf16": "[train].bf16",
    "logging_steps": "rkd's own log (every step, train_log.jsonl)",
    "report_to": "rkd's own log (train_log.jsonl)",
    "disable_tqdm": "rkd's own progress display",
    "use_cpu": "rkd's device choice (CUDA when present)",
}


def check_trainer_args(args: Mapping[str, Any], where: str) -> None:
    """Refuses ``[train.args]`` keys that ``transformers.TrainingArguments`` does not have, or
    that rkd sets itself (naming the rkd setting to use instead). Imports transformers.

    Args:
        args: the ``[train.args]`` table.
        where: the config file that error messages start with ("" for none).

    Raises:
        ConfigError: e.g. ``x.toml: [train.args].learning_rate: set by rkd; use [train].lr``.
    """
    import dataclasses

    from transformers import TrainingArguments

    prefix = f"{where}: " if where else ""
    fields = {f.name for f in dataclasses.fields(TrainingArguments) if f.init}
    for key in args:
        if key in TRAINER_ARGS_OWNED:
            raise ConfigError(f"{prefix}[train.args].{key}: set by rkd; use {TRAINER_ARGS_OWNED[key]}")
        if key not in fields:
            near = difflib.get_close_matches(key, sorted(fields), n=3)
            hint = f"; close matches: {near}" if near else ""
            raise ConfigError(f"{prefix}[train.args].{key}: not a TrainingArguments field{hint}")
