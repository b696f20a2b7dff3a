"""Class-balanced batches: P identities × M images each.

Metric-learning losses that mine pairs or triplets inside a batch need several images
of each identity in it. :class:`ClassBalancedBatchSampler` yields index batches built
that way; pass it to ``torch.utils.data.DataLoader(batch_sampler=...)`` or index a
decoded tensor with each batch directly. The batches of an epoch are a pure function
of ``(seed, epoch)``, so a resumed run sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from lookalike.errors import DataError

__all__ = ["ClassBalancedBatchSampler"]


class ClassBalancedBatchSampler:
    """Yield batches of ``batch_size // m_per_class`` identities × ``m_per_class`` images.

    Identities are drawn uniformly, cycling through a fresh shuffle of all of them so
    every identity appears about equally often, with no identity twice in a batch.
    An identity with at least ``m_per_class`` images gives that many distinct images;
    one with fewer gives all of its images plus repeats drawn with replacement.
    Identities with a single image are never drawn (they make no positive pair).

    Call :meth:`set_epoch` before each epoch: without it every pass repeats epoch 0.

    Args:
        labels: Identity of each image, integer array of shape (N,).
        m_per_class: Images per identity in a batch, at least 2.
        batch_size: Images per batch, a multiple of ``m_per_class`` holding at least
            2 identities.
        batches_per_epoch: Batches per epoch; default ``max(1, N // batch_size)``.
        seed: Seed; with the epoch it fixes every batch.

    Raises:
        ValueError: ``m_per_class < 2``, ``batch_size`` is not a multiple of it or holds
            fewer than 2 identities, ``batches_per_epoch < 1``, or ``labels`` is not a
            1-D integer array.
        DataError: Fewer than 2 identities have 2 or more images, or fewer than
            ``batch_size // m_per_class`` do.
    """

    def __init__(
        self,
        labels: npt.ArrayLike,
        *,
        m_per_class: int = 4,
        batch_size: int = 32,
        batches_per_epoch: int | None = None,
        seed: int = 0,
    ) -> None:
        values = np.asarray(labels)
        if values.ndim != 1 or values.dtype.kind not in "iu":
            raise ValueError(
                f"labels must be a 1-D integer array, got {values.dtype} {values.shape}"
            )
        if m_per_class < 2:
            raise ValueError(f"m_per_class must be at least 2, got {m_per_class}")
        if batch_size % m_per_class:
            raise ValueError(
                f"batch_size ({batch_size}) must be a multiple of m_per_class ({m_per_class})"
            )
        if batch_size // m_per_class < 2:
            raise ValueError(
                f"batch_size ({batch_size}) must hold at least 2 identities of "
                f"m_per_class={m_per_class} images"
            )
        if batches_per_epoch is not None and batches_per_epoch < 1:
            raise ValueError(f"batches_per_epoch must be at least 1, got {batches_per_epoch}")
        order = np.argsort(values, kind="stable")
        _, counts = np.unique(values[order], return_counts=True)
        groups = np.split(order, np.cumsum(counts)[:-1])
        self._groups: list[npt.NDArray[np.int64]] = [
            g.astype(np.int64) for g in groups if len(g) >= 2
        ]
        if len(self._groups) < 2:
            raise DataError(
                f"class-balanced batches need at least 2 identities with at least 2 images, but "
                f"only {len(self._groups)} have; add images"
            )
        # With fewer identities than a batch asks for, batches hold every identity (smaller batch).
        self.identities_per_batch = min(batch_size // m_per_class, len(self._groups))
        self.m_per_class = m_per_class
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0
        self._len = batches_per_epoch or max(1, len(values) // batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose batches the next iteration yields.

        Args:
            epoch: The epoch number (0 for the first).
        """
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        per_batch = self.identities_per_batch
        queue: list[int] = []
        for _ in range(self._len):
            if len(queue) < per_batch:
                rest = set(queue)
                fresh = [int(g) for g in rng.permutation(len(self._groups)) if int(g) not in rest]
                queue += fresh
            chosen, queue = queue[:per_batch], queue[per_batch:]
            batch: list[int] = []
            for group in chosen:
                batch.extend(int(i) for i in self._pick(self._groups[group], rng))
            yield batch

    def _pick(
        self, members: npt.NDArray[np.int64], rng: np.random.Generator
    ) -> npt.NDArray[np.int64]:
        """Draw ``m_per_class`` images of one identity.

        Args:
            members: The identity's image indexes, at least 2.
            rng: The epoch's generator.

        Returns:
            int64 array of shape (m_per_class,).
        """
        m = self.m_per_class
        if len(members) >= m:
            return rng.choice(members, m, replace=False)
        extra = rng.choice(members, m - len(members), replace=True)
        return rng.permutation(np.concatenate([members, extra]))
