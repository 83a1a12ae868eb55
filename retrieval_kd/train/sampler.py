"""Data-parallel batches that are the one-process run's batches, cut into one slice per rank.

Under torchrun the Trainer (through accelerate) deals the batches of ``batch_size`` groups to
the ranks in turn, so global step ``k`` trains batches ``k·N .. k·N + N-1`` of the one-process
permutation: the same groups as one process at ``batch_size × N``, except at the end. There
sentence-transformers sets ``dataloader_drop_last=True`` under DDP (uneven batch counts would
leave a rank waiting in an all-reduce), so the groups that do not fill every rank were dropped:
10 groups on 2 ranks of 2 trained 2 steps of 4, the one-process run 3 steps (4, 4, 2).

:class:`RankSlicedBatchSampler` yields, for every global batch of ``batch_size × N`` groups of
the same seeded permutation, one contiguous slice per rank; the last, short global batch is
split as evenly as it goes, and a rank left without a group gets the weight-0 padding row that
:func:`~retrieval_kd.train.trainer.make_dataset` appends. The loss adapter then scales each
rank's mean loss by ``n_rank × N / n_step`` (one scalar all-reduce per step), so the averaged
gradient is the mean over the step's groups, as in one process.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sentence_transformers.base.sampler import DefaultBatchSampler
from torch.utils.data import RandomSampler


def split_evenly(items: list[int], parts: int) -> list[list[int]]:
    """Contiguous slices whose sizes differ by at most one, the longer first.

    Example:
        >>> split_evenly([0, 1, 2, 3, 4], 2), split_evenly([7], 3)
        ([[0, 1, 2], [3, 4]], [[7], [], []])
    """
    q, r = divmod(len(items), parts)
    bounds = [i * q + min(i, r) for i in range(parts + 1)]
    return [items[bounds[i] : bounds[i + 1]] for i in range(parts)]


class RankSlicedBatchSampler(DefaultBatchSampler):  # type: ignore[misc]
    """Yields ``world`` per-rank batches per global step, in the order accelerate deals them.

    Args:
        dataset: the training dataset: ``groups`` real rows, then one weight-0 padding row.
        batch_size: groups per rank and step.
        drop_last: ignored: sentence-transformers forces it on under DDP; every rank gets the
            same number of batches here, so nothing can hang.
        world: the number of ranks.
        groups: the real rows; the permutation runs over these only, so it equals the
            one-process run's (the same seeded generator over the same length).
        drop_tail: drop the last, short global batch (``[train.args] dataloader_drop_last``).
        generator: the Trainer's seeded generator.
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int,
        drop_last: bool,
        *,
        world: int,
        groups: int,
        drop_tail: bool = False,
        generator: Any = None,
        **kwargs: Any,
    ) -> None:
        # accelerate swaps `sampler` for its SeedableRandomSampler over the same range
        super().__init__(
            RandomSampler(range(groups), generator=generator),  # type: ignore[arg-type]
            batch_size=batch_size,
            drop_last=drop_tail,  # accelerate reads it too: True would drop the short last step
            generator=generator,
            **kwargs,
        )
        self.world = world
        self.groups = groups
        self.padding = len(dataset) - 1

    def __len__(self) -> int:
        size = self.batch_size * self.world
        steps = self.groups // size if self.drop_last else -(-self.groups // size)
        return steps * self.world

    def __iter__(self) -> Iterator[list[int]]:
        order = [int(i) for i in self.sampler]
        size = self.batch_size * self.world
        for start in range(0, len(order), size):
            step = order[start : start + size]
            if len(step) < size and self.drop_last:
                return
            for part in split_evenly(step, self.world):
                yield part or [self.padding]
