"""The teacher's label row of each training group, by the score store's judgement kind.

A loss declares the kind of judgements its labels come from (a ``judgements`` class attribute;
``"pointwise"`` when it names none) and the trainer builds the rows with :data:`LABELS` of the
store's kind, after :func:`check_judgements` has refused a loss that does not fit the store:

- ``pointwise``: one score per document, ``(1+n)`` per group;
- ``pairwise``: the row-major ``(1+n) × (1+n)`` matrix of the teacher's position-debiased
  preference logits between the group's documents, NaN where it compared a pair in neither
  order (:class:`~retrieval_kd.losses.preference.Preference` trains on it).

Another judgement kind adds a builder here and a loss that names it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from retrieval_kd.errors import ConfigError
from retrieval_kd.protocols import ScoreStore
from retrieval_kd.types import Pair

Layout = list[tuple[str, tuple[str, ...]]]  # (query id, its group's documents), one per group


def pointwise_labels(store: ScoreStore, layout: Layout) -> list[tuple[float, ...]]:
    """Each group's teacher scores, one per document (one vectorised store lookup).

    Shapes:
        layout[G] groups of w documents → G rows of w scores
    """
    if not layout:
        return []
    keys = [Pair(q, d) for q, docs in layout for d in docs]
    scores = store.lookup(keys).reshape(len(layout), len(layout[0][1]))  # (groups, 1+n)
    return [tuple(float(s) for s in row) for row in scores]


def pairwise_labels(store: ScoreStore, layout: Layout) -> list[tuple[float, ...]]:
    """Each group's row-major ``w × w`` matrix of position-debiased preference logits between
    its documents: ``p(a, b)`` at ``[a·w + b]``, the mean of ``v(a, b)`` and ``−v(b, a)`` over
    the orders the store holds (the rule of :func:`~retrieval_kd.scores.targets.combine`), so
    ``p(b, a) = −p(a, b)``; NaN where it holds neither order, and on the diagonal. One join of
    every group's ordered pairs against the store's table.

    Shapes:
        layout[G] groups of w documents → G rows of w·w logits

    Example:
        ``a`` over ``b`` by 3 shown first, by 1 shown second: (3 + 1) / 2 = 2; ``c`` never compared.

        >>> import numpy as np, tempfile
        >>> from retrieval_kd.scores.store import ScoreStore
        >>> from retrieval_kd.types import Judgement
        >>> store = ScoreStore.open(Path(tempfile.mkdtemp()), "t", kind="pairwise")
        >>> store.add([Judgement("q", "a", "b"), Judgement("q", "b", "a")], np.array([3.0, -1.0]))
        >>> pairwise_labels(store, [("q", ("a", "b", "c"))])
        [(nan, 2.0, nan, -2.0, nan, nan, nan, nan, nan)]
    """
    import numpy as np
    import pyarrow as pa

    if not layout:
        return []
    groups, width = len(layout), len(layout[0][1])
    first, second = np.nonzero(~np.eye(width, dtype=bool))  # every ordered pair a ≠ b: (w(w−1),)
    docs = np.array([ds for _, ds in layout], dtype=object)  # (G, w)
    wanted = pa.table(
        {
            "query_id": pa.array(np.repeat(np.array([q for q, _ in layout], dtype=object), len(first))),
            "doc_a": pa.array(docs[:, first].ravel(), pa.string()),
            "doc_b": pa.array(docs[:, second].ravel(), pa.string()),
            "row": pa.array(np.arange(groups * len(first))),
        }
    )
    stored = store.to_table()  # type: ignore[attr-defined]  # rkd's store; not in the protocol
    found = wanted.join(stored, keys=["query_id", "doc_a", "doc_b"], join_type="inner")
    group, pair = np.divmod(found.column("row").to_numpy(), len(first))
    ordered = np.full((groups, width, width), np.nan)  # v(a, b): a shown first
    ordered[group, first[pair], second[pair]] = found.column("value").to_numpy()
    sides = np.stack([ordered, -ordered.transpose(0, 2, 1)])  # v(a, b) and −v(b, a)
    held = np.isfinite(sides).sum(axis=0)
    prefs = np.where(held > 0, np.nansum(sides, axis=0) / np.maximum(held, 1), np.nan)
    return [tuple(row) for row in prefs.reshape(groups, width * width).tolist()]


# the store's judgement kind → the label rows of a loss that trains on that kind
LABELS: dict[str, Callable[[ScoreStore, Layout], list[tuple[float, ...]]]] = {
    "pointwise": pointwise_labels,
    "pairwise": pairwise_labels,
}


def loss_judgements(name: str) -> str:
    """The judgement kind the labels of the registered loss ``name`` come from.

    Example:
        >>> loss_judgements("kl"), loss_judgements("preference")
        ('pointwise', 'pairwise')
    """
    from retrieval_kd.losses import LOSSES

    return str(getattr(LOSSES.get(name), "judgements", "pointwise"))


def store_for_loss(store: ScoreStore, loss: str) -> ScoreStore:
    """The store ``loss`` trains from: ``store``, or, when the loss takes pairwise judgements
    and ``store`` holds the pointwise targets derived from a pairwise store (what the score
    stage of an ``llm-pairwise`` teacher hands on), that pairwise store, read from beside it.

    Example:
        >>> import numpy as np, tempfile
        >>> from retrieval_kd.scores.store import ScoreStore
        >>> from retrieval_kd.scores.targets import derive_store
        >>> from retrieval_kd.types import Judgement
        >>> root = Path(tempfile.mkdtemp())
        >>> prefs = ScoreStore.open(root, "t", kind="pairwise")
        >>> prefs.add([Judgement("q", "a", "b")], np.array([1.0]))
        >>> derived = derive_store(root, prefs, {"q": ["a", "b"]}, "win-rate", {})
        >>> store_for_loss(derived, "preference").fingerprint, store_for_loss(derived, "kl") is derived
        ('t', True)
    """
    source = _derived_from(store)
    if source is None or store.kind != "pointwise" or loss_judgements(loss) != "pairwise":
        return store
    from retrieval_kd.scores.store import ScoreStore as Store

    return Store.load(Path(getattr(store, "path", ".")).parent, source)


def check_judgements(loss: str, store: ScoreStore) -> None:
    """Refuses a loss whose labels come from another judgement kind than the store holds.

    The message names ``[train].loss``, both kinds, the losses that fit the store and the other
    route: the pointwise targets ``rkd score-teacher`` derives from pairwise preferences (by
    fingerprint when they are already beside the store), or the pairwise store that derived
    targets came from.

    Raises:
        ConfigError: the kinds differ, or no label builder knows the store's kind.
    """
    from retrieval_kd.losses import LOSSES

    wanted = loss_judgements(loss)
    where = getattr(store, "path", store.fingerprint)
    if store.kind == wanted and wanted in LABELS:
        return
    if store.kind not in LABELS:
        raise ConfigError(
            f"score store {where} holds {store.kind} judgements; training reads {sorted(LABELS)}"
        )
    fits = [n for n in LOSSES.names() if loss_judgements(n) == store.kind]
    if store.kind == "pairwise":
        other = _derived_route(loss, store)
    else:
        source = _derived_from(store)
        other = (
            f"or train it on the pairwise store these targets were derived from (--teacher {source})"
            if source
            else "or train it on a pairwise teacher's store (`rkd score-teacher --teacher llm-pairwise`)"
        )
    raise ConfigError(
        f"[train].loss = {loss!r} trains on {wanted} judgements, but score store {where} holds "
        f"{store.kind} judgements; losses that fit it: {fits}, {other}"
    )


def _derived_from(store: ScoreStore) -> str | None:
    """The pairwise store a derived pointwise store was made from (its manifest says), if any."""
    spec = store.manifest.get("teacher")
    if not isinstance(spec, dict) or spec.get("kind") != "derived" or not spec.get("from"):
        return None
    return str(spec["from"])


def _derived_route(loss: str, store: ScoreStore) -> str:
    """How a pointwise loss trains on pairwise preferences: their derived targets."""
    from retrieval_kd.scores.targets import METHODS, derived_fingerprint

    path = getattr(store, "path", None)
    beside = [derived_fingerprint(store.fingerprint, m) for m in METHODS]
    found = [fp for fp in beside if path is not None and (Path(path).parent / fp).is_dir()]
    if found:
        return f"or train {loss!r} on the pointwise targets derived from them (--teacher {found[0]})"
    return (
        f"or train {loss!r} on pointwise targets derived from them (`rkd score-teacher --teacher "
        "llm-pairwise` writes Bradley-Terry targets beside the preferences)"
    )
