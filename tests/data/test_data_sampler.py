"""ClassBalancedBatchSampler."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from lookalike.data import ClassBalancedBatchSampler
from lookalike.errors import DataError

# Identity k has k + 1 images (identity 0 has one and must never be drawn).
LABELS = np.repeat(np.arange(10), np.arange(1, 11))


def _epoch(sampler: ClassBalancedBatchSampler, epoch: int) -> list[list[int]]:
    sampler.set_epoch(epoch)
    return list(sampler)


def test_every_batch_has_m_images_per_identity() -> None:
    sampler = ClassBalancedBatchSampler(LABELS, m_per_class=4, batch_size=12, seed=0)
    assert len(sampler) == len(LABELS) // 12
    batches = _epoch(sampler, 0)
    assert len(batches) == len(sampler)
    for batch in batches:
        assert len(batch) == 12
        per_identity = Counter(LABELS[batch].tolist())
        assert len(per_identity) == 3
        assert set(per_identity.values()) == {4}
        assert 0 not in per_identity
        for identity in per_identity:
            members = [i for i in batch if LABELS[i] == identity]
            if identity + 1 >= 4:  # enough images: drawn without replacement
                assert len(set(members)) == 4
            else:  # every image of a small identity is used
                assert len(set(members)) == identity + 1


def test_order_is_a_function_of_seed_and_epoch() -> None:
    sampler = ClassBalancedBatchSampler(LABELS, m_per_class=2, batch_size=8, seed=7)
    first = _epoch(sampler, 0)
    second = _epoch(sampler, 1)
    assert first != second
    assert _epoch(sampler, 0) == first
    resumed = ClassBalancedBatchSampler(LABELS, m_per_class=2, batch_size=8, seed=7)
    assert _epoch(resumed, 1) == second
    other_seed = ClassBalancedBatchSampler(LABELS, m_per_class=2, batch_size=8, seed=8)
    assert _epoch(other_seed, 0) != first


def test_identities_are_covered_evenly() -> None:
    sampler = ClassBalancedBatchSampler(LABELS, m_per_class=2, batch_size=6, batches_per_epoch=30)
    assert len(sampler) == 30
    seen = Counter(int(LABELS[b[k]]) for b in _epoch(sampler, 0) for k in range(0, 6, 2))
    assert set(seen) == set(range(1, 10))
    assert max(seen.values()) - min(seen.values()) <= 2


def test_invalid_settings() -> None:
    with pytest.raises(ValueError, match="multiple"):
        ClassBalancedBatchSampler(LABELS, m_per_class=4, batch_size=10)
    with pytest.raises(ValueError, match="at least 2"):
        ClassBalancedBatchSampler(LABELS, m_per_class=1, batch_size=4)
    with pytest.raises(ValueError, match="2 identities"):
        ClassBalancedBatchSampler(LABELS, m_per_class=4, batch_size=4)
    with pytest.raises(DataError, match="only 1 have"):
        ClassBalancedBatchSampler(np.array([0, 0, 1, 2]), m_per_class=2, batch_size=4)
    # More identities asked for than exist: every batch holds all of them (a smaller batch).
    few = ClassBalancedBatchSampler(LABELS, m_per_class=2, batch_size=40)
    ids, counts = np.unique(LABELS, return_counts=True)
    usable = set(ids[counts >= 2].tolist())
    assert few.identities_per_batch == len(usable)
    assert all(set(LABELS[b].tolist()) == usable for b in few)
    assert len(ClassBalancedBatchSampler(np.array([0, 0, 1, 1]), m_per_class=2, batch_size=4)) == 1
