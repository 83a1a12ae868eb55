"""Padding-free forward passes for small CPU batches: a batch's texts packed into one sequence.

A padded batch computes every layer over ``B × W`` positions (``W`` its longest text). On a CPU
the padding is paid in full: for batches of 7 random SciFact test queries (mean 23 tokens, longest
64) 36% of the positions are padding, and ``rkd serve``'s micro-batches are such batches. Packed,
the texts are laid end to end in one row of ``S = Σ lengths`` positions, with positions that
restart at 0 for each text and an attention mask that keeps each text to itself (block-diagonal),
so each text's outputs are the padded batch's to float rounding (measured 5e-8 on the dense
student); the linear layers then run over ``S`` positions instead of ``B × W``, at the price of
attention over ``S²`` pairs instead of ``B × W²``. Measured on the 2-core EPYC, quiet: 1.25×
faster for batches of 7 SciFact test queries through the dense student, 1.38× for 16
(BENCHMARKS.md, ``benchmarks/bench_packing.py``).

transformers packs sequences only for flash attention on a GPU (``position_ids`` boundaries) and
sentence-transformers not at all, hence this module. It packs only where
:func:`worth_packing`'s FLOP estimate says the packed batch is cheaper, only on a CPU (where it
was measured; a GPU's padded batch of a few queries costs little more than its kernel launches),
and only for a model whose packed outputs
were checked once against its padded ones (:func:`packed_outputs`): a model that ignores
``position_ids`` or 4-D masks stays padded.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import numpy as np
from torch import Tensor

# pack when the packed batch's FLOPs are below this share of the padded batch's: the mask
# building and unpacking cost a little, and an estimate this rough should not flip on a hair
PACK_GAIN = 0.9

Key = tuple[str | None, str | None]  # (prompt, task)
# run(features, start, stop): a model's modules [start:stop] on features, as its forward would
Modules = Callable[[dict[str, Any], int, int | None], dict[str, Any]]
# per model and key: whether packed outputs matched padded ones when first checked
_CHECKED: weakref.WeakKeyDictionary[Any, dict[Key, bool]] = weakref.WeakKeyDictionary()


def flop_costs(model: Any) -> tuple[float, float] | None:
    """FLOPs per position (the linear layers) and per attended pair (scores and weighted sum) of
    ``model``'s transformer, from its config; None where the config lacks them or the model runs
    elsewhere than on a CPU (nothing is packed there).

    >>> class Config: hidden_size, intermediate_size, num_hidden_layers = 4, 16, 2
    >>> class Auto: config = Config()
    >>> class First: auto_model = Auto()
    >>> class Model(list): device = "cpu"
    >>> flop_costs(Model([First()]))  # 2·(4·4² + 2·4·16)·2, 4·4·2
    (768.0, 32.0)
    """
    if str(getattr(model, "device", "cpu")) != "cpu" or not len(model):
        return None
    config = getattr(getattr(model[0], "auto_model", None), "config", None)
    names = ("hidden_size", "intermediate_size", "num_hidden_layers")
    sizes = [getattr(config, name, None) for name in names]
    if not all(isinstance(n, int) and n > 0 for n in sizes):
        return None
    hidden, inner, layers = (float(n) for n in sizes)  # type: ignore[arg-type]
    return 2 * (4 * hidden * hidden + 2 * hidden * inner) * layers, 4 * hidden * layers


def worth_packing(lengths: list[int], costs: tuple[float, float]) -> bool:
    """Whether the texts of these token counts cost fewer FLOPs packed than padded.

    >>> worth_packing([10, 10], (100.0, 1.0))  # no padding to save
    False
    >>> worth_packing([2, 30], (100.0, 1.0))  # 32·100 + 32² against 0.9 × (64·100 + 2·30²)
    True
    >>> worth_packing([200, 300], (100.0, 1.0))  # long texts: the S² attention costs more
    False
    """
    batch, width, total = len(lengths), max(lengths, default=0), sum(lengths)
    if batch < 2 or total == batch * width:
        return False
    per_position, per_pair = costs
    packed = total * per_position + total * total * per_pair
    padded = batch * width * per_position + batch * width * width * per_pair
    return packed < PACK_GAIN * padded


def packed_outputs(
    model: Any,
    ids: list[list[int]],
    padded_features: dict[str, Any],
    key: Key,
    run: Modules,
) -> dict[str, Any] | None:
    """``model``'s output features for the texts of token ids ``ids``, computed packed; None
    where packing was found before to change them (the caller runs the padded batch).

    ``padded_features`` are the padded batch's input features (the outputs are laid back out to
    them, per-token tensors as ``(B, W, ...)``); ``run(features, start, stop)`` runs ``model``'s
    modules ``[start:stop]``, as its forward would. The first call per model and
    ``key`` (prompt, task) also runs the padded batch and keeps packing only if every output
    tensor they share agrees (per-token ones on real tokens only); where they differ it returns
    the padded outputs.
    """
    import torch

    known = _CHECKED.setdefault(model, {})
    if known.get(key) is False:
        return None
    lengths = [len(x) for x in ids]
    batch, width, total = len(ids), max(lengths), sum(lengths)
    segment = torch.from_numpy(np.repeat(np.arange(batch), lengths))
    position = torch.from_numpy(np.concatenate([np.arange(n) for n in lengths]))
    dtype = next(model.parameters()).dtype
    mask = torch.zeros((1, 1, total, total), dtype=dtype)
    mask.masked_fill_(segment[:, None] != segment[None, :], torch.finfo(dtype).min)
    inputs: dict[str, Any] = {
        "input_ids": torch.from_numpy(np.concatenate([np.asarray(x, dtype=np.int64) for x in ids]))[None],
        "attention_mask": mask,
        "position_ids": position[None],
    }
    if "token_type_ids" in padded_features:
        inputs["token_type_ids"] = torch.zeros((1, total), dtype=torch.long)
    inputs.update({k: v for k, v in padded_features.items() if not isinstance(v, Tensor)})
    out = run(dict(inputs), 0, 1)
    features = dict(padded_features)
    for name, value in out.items():
        if name in inputs:
            continue
        if not (isinstance(value, Tensor) and value.shape[:2] == (1, total)):
            known[key] = False  # an output that is not per token (all layers' states): not laid out
            return None
        laid = value.new_zeros((batch, width, *value.shape[2:]))
        laid[segment, position] = value[0]
        features[name] = laid
    got: dict[str, Any] = run(features, 1, None)
    if key not in known:
        want = run(dict(padded_features), 0, None)
        known[key] = _agree(got, want, padded_features["attention_mask"].bool())
        if not known[key]:
            padded: dict[str, Any] = want
            return padded  # computed already: the caller need not run it again
    return got


def _agree(got: dict[str, Any], want: dict[str, Any], real: Tensor) -> bool:
    """Every tensor output of both with one shape equal to float rounding; per-token ones
    (leading ``real``'s shape) on real tokens only."""
    import torch

    shared = [k for k, v in want.items() if isinstance(v, Tensor) and isinstance(got.get(k), Tensor)]
    for name in shared:
        a, b = got[name], want[name]
        if a.shape != b.shape:
            return False
        if a.shape[:2] == real.shape:
            a, b = a[real], b[real]
        if a.is_floating_point():
            scale = float(b.abs().max()) if b.numel() else 0.0
            if not torch.allclose(a.float(), b.float(), rtol=1e-3, atol=1e-4 * max(1.0, scale)):
                return False
        elif not torch.equal(a, b):
            return False
    return bool(shared)
