"""Score-space distillation losses: ``(student[B, 1+n], teacher[B, 1+n]) -> scalar``.

A loss never sees a model, so one implementation serves dense, SPLADE, ColBERT and
cross-encoder students. Column 0 holds the positive. A loss that trains on pairwise judgements
says so (``judgements = "pairwise"``) and takes the teacher's ``(B, (1+n)²)`` preference matrix
instead (:mod:`retrieval_kd.train.labels`).
"""

from __future__ import annotations

from typing import Any

from retrieval_kd.registry import Registry

LOSSES: Registry[Any] = Registry(
    "loss",
    {
        "bce": "retrieval_kd.losses.bce:BinaryCrossEntropy",
        "kl": "retrieval_kd.losses.kl:KLDiv",
        "margin_mse": "retrieval_kd.losses.margin_mse:MarginMSE",
        "pairwise": "retrieval_kd.losses.pairwise:Pairwise",
        "preference": "retrieval_kd.losses.preference:Preference",
    },
)


def build_loss(name: str, **options: Any) -> Any:
    """The loss ``name`` with its options; bad options raise with the accepted ones."""
    import inspect

    from retrieval_kd.errors import ConfigError

    cls = LOSSES.get(name)
    accepted = [p for p in inspect.signature(cls).parameters if p != "self"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(f"loss {name!r} has no option(s) {unknown}; it accepts {accepted}")
    return cls(**options)


__all__ = ["LOSSES", "build_loss"]
