"""Tests of lookalike.training.miners against slow references and pytorch-metric-learning."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
import torch
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import miners as pml_miners
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from lookalike.metrics.distances import EuclideanDistance
from lookalike.training.losses import ContrastiveLoss, TripletMarginLoss
from lookalike.training.miners import all_pairs, mine_pairs, mine_triplets

Triplet = tuple[int, int, int]
CUBE_STRATEGIES = ("all", "all_active", "semihard")
TRIPLET_STRATEGIES = ("all", "all_active", "semihard", "hard", "random")
DISTANCES = ("euclidean", "cosine")
MARGINS = {"euclidean": 0.5, "cosine": 0.2}
"""Margins that make every strategy keep some triplets but not all of them."""


# ------------------------------------------------------------------ slow references


def ref_dissimilarity(x: Sequence[float], y: Sequence[float], distance: str) -> float:
    """Euclidean distance or 1 - cosine, with plain Python arithmetic."""
    if distance == "euclidean":
        return math.sqrt(sum((xi - yi) ** 2 for xi, yi in zip(x, y, strict=True)))
    dot = sum(xi * yi for xi, yi in zip(x, y, strict=True))
    nx = math.sqrt(sum(xi * xi for xi in x))
    ny = math.sqrt(sum(yi * yi for yi in y))
    return 1.0 - dot / (nx * ny)


def ref_matrix(emb: torch.Tensor, distance: str) -> list[list[float]]:
    rows = emb.tolist()
    return [[ref_dissimilarity(x, y, distance) for y in rows] for x in rows]


def ref_valid_triplets(labels: torch.Tensor) -> list[Triplet]:
    """Every (a, p, n) with label[a] == label[p], a != p, label[n] != label[a]."""
    lab = labels.tolist()
    batch = len(lab)
    return [
        (a, p, n)
        for a in range(batch)
        for p in range(batch)
        for n in range(batch)
        if a != p and lab[a] == lab[p] and lab[n] != lab[a]
    ]


def ref_triplets(
    emb: torch.Tensor, labels: torch.Tensor, strategy: str, margin: float, distance: str
) -> set[Triplet]:
    """The cube strategies and batch-hard, straight from their definitions."""
    d = ref_matrix(emb, distance)
    valid = ref_valid_triplets(labels)
    if strategy == "all":
        return set(valid)
    if strategy == "all_active":
        return {(a, p, n) for a, p, n in valid if d[a][n] - d[a][p] <= margin}
    if strategy == "semihard":
        return {(a, p, n) for a, p, n in valid if 0 < d[a][n] - d[a][p] <= margin}
    assert strategy == "hard"
    out = set()
    for a in sorted({t[0] for t in valid}):
        positives = sorted({p for aa, p, _ in valid if aa == a})
        negatives = sorted({n for aa, _, n in valid if aa == a})
        best_p = positives[0]
        for p in positives:  # farthest positive, first index on ties
            if d[a][p] > d[a][best_p]:
                best_p = p
        best_n = negatives[0]
        for n in negatives:  # closest negative, first index on ties
            if d[a][n] < d[a][best_n]:
                best_n = n
        out.add((a, best_p, best_n))
    return out


def ref_pairs(
    emb: torch.Tensor, labels: torch.Tensor, strategy: str, margin: float, distance: str
) -> set[tuple[int, int, float]]:
    d = ref_matrix(emb, distance)
    lab = labels.tolist()
    out = set()
    for i in range(len(lab)):
        for j in range(i + 1, len(lab)):
            same = lab[i] == lab[j]
            if strategy == "all" or (d[i][j] > 0 if same else d[i][j] < margin):
                out.add((i, j, 1.0 if same else 0.0))
    return out


# ------------------------------------------------------------------ helpers


def as_set(*indices: torch.Tensor) -> set[tuple[int, ...]]:
    return set(zip(*(t.tolist() for t in indices), strict=True))


def random_batch(
    seed: int, n_labels: int, batch: int = 12, dim: int = 4
) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 Gaussian embeddings (tie-free) and shuffled balanced labels."""
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(batch, dim, generator=g, dtype=torch.float64)
    labels = (torch.arange(batch) % n_labels)[torch.randperm(batch, generator=g)]
    return emb, labels


def line_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 points on a line at integers with mean 0: every distance is exact.

    Anchor 0 (x=0) has one positive, 1 (x=1, d_ap=1); its negatives are at
    d_an = 2 (idx 2, 4: on the margin-1 boundary), 1 (idx 3: d_an == d_ap) and
    3 (idx 5, 6: easy).
    """
    x = torch.tensor([0.0, 1.0, 2.0, -1.0, -2.0, 3.0, -3.0])
    return x[:, None], torch.tensor([0, 0, 1, 1, 2, 2, 1])


def pml_distance(distance: str) -> pml_distances.BaseDistance:
    if distance == "euclidean":
        return pml_distances.LpDistance(normalize_embeddings=False)
    return pml_distances.CosineSimilarity()


def check_indices(out: tuple[torch.Tensor, ...], device: torch.device | str = "cpu") -> None:
    for t in out:
        assert t.dtype == torch.int64
        assert t.ndim == 1
        assert t.device.type == torch.device(device).type
        assert not t.requires_grad
    assert len({t.shape for t in out}) == 1


def assert_valid(triplets: set[Triplet], labels: torch.Tensor) -> None:
    assert triplets <= set(ref_valid_triplets(labels))


BATCHES = [(seed, n_labels) for seed in (0, 1, 2) for n_labels in (3, 4)]


# ------------------------------------------------------------------ against the references


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize(("seed", "n_labels"), BATCHES)
def test_cube_strategies_match_reference(seed: int, n_labels: int, distance: str) -> None:
    emb, labels = random_batch(seed, n_labels)
    margin = MARGINS[distance]
    found = {}
    for strategy in CUBE_STRATEGIES:
        out = mine_triplets(emb, labels, strategy=strategy, margin=margin, distance=distance)
        check_indices(out)
        found[strategy] = as_set(*out)
        assert len(found[strategy]) == out[0].numel()  # no duplicates
        assert found[strategy] == ref_triplets(emb, labels, strategy, margin, distance)
    # The margins make the subsets proper and non-empty, so the test is not vacuous.
    assert set() < found["semihard"] < found["all_active"] < found["all"]


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize(("seed", "n_labels"), BATCHES)
def test_batch_hard_matches_reference(seed: int, n_labels: int, distance: str) -> None:
    emb, labels = random_batch(seed, n_labels)
    out = mine_triplets(emb, labels, strategy="hard", distance=distance)
    check_indices(out)
    assert out[0].tolist() == sorted(set(out[0].tolist()))  # one per anchor, in order
    assert as_set(*out) == ref_triplets(emb, labels, "hard", 0.0, distance)


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize(("seed", "n_labels"), BATCHES)
def test_pairs_match_reference(seed: int, n_labels: int, distance: str) -> None:
    emb, labels = random_batch(seed, n_labels)
    margin = {"euclidean": 2.5, "cosine": 0.8}[distance]
    for strategy in ("all", "hard"):
        i, j, y = mine_pairs(emb, labels, strategy=strategy, margin=margin, distance=distance)
        check_indices((i, j))
        assert y.dtype == torch.float32
        assert bool((i < j).all())
        got = as_set(i, j, y)
        assert len(got) == i.numel()
        assert got == ref_pairs(emb, labels, strategy, margin, distance)
    # The margins keep some negatives but not all, so the test is not vacuous.
    assert 0 < int((y == 0).sum()) < int((all_pairs(labels)[2] == 0).sum())


def test_line_boundaries() -> None:
    """Exact distances: d_an - d_ap == margin is kept (as pml), == 0 is not semihard."""
    emb, labels = line_batch()
    rows = {}
    for strategy in CUBE_STRATEGIES:
        out = mine_triplets(emb, labels, strategy=strategy, margin=1.0)
        assert as_set(*out) == ref_triplets(emb, labels, strategy, 1.0, "euclidean")
        rows[strategy] = {n for a, p, n in as_set(*out) if (a, p) == (0, 1)}
    assert rows["all"] == {2, 3, 4, 5, 6}
    assert rows["all_active"] == {2, 3, 4}
    assert rows["semihard"] == {2, 4}
    a, p, n = mine_triplets(emb, labels, strategy="hard")
    hard = {int(ai): (int(pi), int(ni)) for ai, pi, ni in zip(a, p, n, strict=True)}
    assert hard[0] == (1, 3)
    assert hard[2] == (6, 1)  # negatives 1 and 5 tie at d=1: the lower index wins
    assert set(hard) == set(range(7))  # every point has a positive and a negative
    # margin 0: all_active keeps d_an <= d_ap, semihard keeps nothing.
    zero = as_set(*mine_triplets(emb, labels, strategy="all_active", margin=0.0))
    assert zero == ref_triplets(emb, labels, "all_active", 0.0, "euclidean")
    assert mine_triplets(emb, labels, strategy="semihard", margin=0.0)[0].numel() == 0
    # Pairs: negatives strictly closer than the margin (as pml); the closest are at d = 1.
    for margin, expected in ((1.0, set()), (1.5, {(0, 3), (1, 2), (2, 5), (3, 4), (4, 6)})):
        i, j, y = mine_pairs(emb, labels, strategy="hard", margin=margin)
        assert as_set(i[y == 0], j[y == 0]) == expected
        assert as_set(i, j, y) == ref_pairs(emb, labels, "hard", margin, "euclidean")
        pml = pml_miners.PairMarginMiner(0.0, margin, distance=pml_distance("euclidean"))
        _, _, a2, n = pml(emb, labels)
        assert as_set(torch.minimum(a2, n), torch.maximum(a2, n)) == expected


def test_cosine_hand_built() -> None:
    """Unit vectors at known angles: anchor 0° and positive 60° (d_ap = 1 - cos 60° = 0.5)."""
    angles = [0.0, 60.0, 90.0, 45.0, 70.0, 180.0]
    emb = torch.tensor([[math.cos(math.radians(t)), math.sin(math.radians(t))] for t in angles])
    labels = torch.tensor([0, 0, 1, 2, 3, 4])
    # d_an - d_ap for n = 2..5: 0.5, -0.21, 0.16, 1.5
    rows = {}
    for strategy in CUBE_STRATEGIES:
        out = mine_triplets(emb, labels, strategy=strategy, margin=0.2, distance="cosine")
        rows[strategy] = {n for a, p, n in as_set(*out) if (a, p) == (0, 1)}
    assert rows == {"all": {2, 3, 4, 5}, "all_active": {3, 4}, "semihard": {4}}
    out = mine_triplets(emb, labels, strategy="hard", distance="cosine")
    assert as_set(*out) == {(0, 1, 3), (1, 0, 4)}


# ------------------------------------------------------------------ against pml


PML_CASES = [
    *((seed, n_labels, distance) for seed, n_labels in BATCHES[:4] for distance in DISTANCES),
    ("line", 0, "euclidean"),  # exact ties at the margin and between negatives
]


@pytest.mark.parametrize(("seed", "n_labels", "distance"), PML_CASES)
def test_triplets_match_pml(seed: int | str, n_labels: int, distance: str) -> None:
    if seed == "line":
        emb, labels = line_batch()
        margin = 1.0
    else:
        assert isinstance(seed, int)
        emb, labels = random_batch(seed, n_labels)
        margin = MARGINS[distance]
    pml_all = pml_miners.TripletMarginMiner(
        margin=margin, type_of_triplets="all", distance=pml_distance(distance)
    )
    pml_semihard = pml_miners.TripletMarginMiner(
        margin=margin, type_of_triplets="semihard", distance=pml_distance(distance)
    )
    pml_hard = pml_miners.BatchHardMiner(distance=pml_distance(distance))

    def ours(strategy: str) -> set[tuple[int, ...]]:
        return as_set(
            *mine_triplets(emb, labels, strategy=strategy, margin=margin, distance=distance)
        )

    assert ours("all") == as_set(*lmu.get_all_triplets_indices(labels))
    assert ours("all_active") == as_set(*pml_all(emb, labels))
    assert ours("semihard") == as_set(*pml_semihard(emb, labels))
    assert ours("hard") == as_set(*pml_hard(emb, labels))


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize(("seed", "n_labels"), BATCHES[:4])
def test_pairs_match_pml(seed: int, n_labels: int, distance: str) -> None:
    emb, labels = random_batch(seed, n_labels)
    margin = {"euclidean": 2.5, "cosine": 0.8}[distance]
    # pml's cosine margins are similarity thresholds: d = 1 - s > 0 <=> s < 1, etc.
    pos_margin, neg_margin = (0.0, margin) if distance == "euclidean" else (1.0, 1.0 - margin)
    miner = pml_miners.PairMarginMiner(
        pos_margin=pos_margin, neg_margin=neg_margin, distance=pml_distance(distance)
    )
    a1, p, a2, n = miner(emb, labels)

    def unordered(x: torch.Tensor, y: torch.Tensor) -> set[tuple[int, ...]]:
        return as_set(torch.minimum(x, y), torch.maximum(x, y))

    assert len(a1) == 2 * len(unordered(a1, p))  # pml lists both orders
    i, j, y = mine_pairs(emb, labels, strategy="hard", margin=margin, distance=distance)
    assert as_set(i[y == 1], j[y == 1]) == unordered(a1, p)
    assert as_set(i[y == 0], j[y == 0]) == unordered(a2, n)
    assert 0 < len(a2) // 2 < int((all_pairs(labels)[2] == 0).sum())


# ------------------------------------------------------------------ random


def test_random_is_valid_one_per_anchor_and_deterministic() -> None:
    emb, labels = random_batch(0, 4)
    labels[0] = 99  # a singleton identity: never an anchor, sometimes a negative
    eligible = [a for a in range(12) if a != 0]
    seen: set[Triplet] = set()
    for seed in range(100):
        out = mine_triplets(
            emb, labels, strategy="random", generator=torch.Generator().manual_seed(seed)
        )
        check_indices(out)
        assert out[0].tolist() == eligible
        triplets = as_set(*out)
        assert_valid(triplets, labels)
        again = mine_triplets(
            emb, labels, strategy="random", generator=torch.Generator().manual_seed(seed)
        )
        assert all(torch.equal(x, y) for x, y in zip(out, again, strict=True))
        seen |= triplets
    # Every positive and every negative of every anchor gets drawn.
    valid = ref_valid_triplets(labels)
    assert {(a, p) for a, p, _ in seen} == {(a, p) for a, p, _ in valid}
    assert {(a, n) for a, _, n in seen} == {(a, n) for a, _, n in valid}
    # Successive draws from one generator differ; without a generator the global RNG is used.
    g = torch.Generator().manual_seed(0)
    first, second = (mine_triplets(emb, labels, strategy="random", generator=g) for _ in range(2))
    assert not all(torch.equal(x, y) for x, y in zip(first, second, strict=True))
    torch.manual_seed(3)
    x = mine_triplets(emb, labels, strategy="random")
    torch.manual_seed(3)
    y = mine_triplets(emb, labels, strategy="random")
    assert all(torch.equal(u, v) for u, v in zip(x, y, strict=True))


# ------------------------------------------------------------------ edge cases


NO_TRIPLET_LABELS = {
    "one identity": torch.zeros(6, dtype=torch.int64),
    "all distinct": torch.arange(6),
    "single sample": torch.tensor([3]),
    "empty batch": torch.zeros(0, dtype=torch.int64),
}


@pytest.mark.parametrize("case", list(NO_TRIPLET_LABELS))
@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("strategy", TRIPLET_STRATEGIES)
def test_no_valid_triplet_gives_empty_and_zero_loss(
    case: str, distance: str, strategy: str
) -> None:
    labels = NO_TRIPLET_LABELS[case]
    emb = torch.randn(labels.shape[0], 5, requires_grad=True)
    out = mine_triplets(emb, labels, strategy=strategy, distance=distance)
    check_indices(out)
    assert out[0].numel() == 0
    for reduction in ("mean", "mean_positive", "sum"):
        loss = TripletMarginLoss(distance=distance, reduction=reduction).forward_mined(emb, out)
        assert loss.item() == 0.0
        loss.backward()
        assert emb.grad is not None
        assert bool(torch.isfinite(emb.grad).all())
        assert bool((emb.grad == 0).all())


def test_no_pairs_and_single_identity_pairs() -> None:
    for labels in (torch.tensor([1]), torch.zeros(0, dtype=torch.int64)):
        emb = torch.randn(labels.shape[0], 3)
        for strategy in ("all", "hard"):
            i, j, y = mine_pairs(emb, labels, strategy=strategy)
            assert i.numel() == j.numel() == y.numel() == 0
            assert i.dtype == torch.int64
            assert y.dtype == torch.float32
    labels = torch.zeros(5, dtype=torch.int64)
    i, j, y = mine_pairs(torch.randn(5, 3), labels, strategy="hard")
    assert i.numel() == 10
    assert bool((y == 1).all())


def test_singleton_identity_is_only_a_negative() -> None:
    emb, labels = random_batch(1, 3, batch=11)
    labels = torch.cat([labels, torch.tensor([7])])
    emb = torch.cat([emb, torch.randn(1, 4, dtype=torch.float64)])
    for strategy in TRIPLET_STRATEGIES:
        a, p, n = mine_triplets(emb, labels, strategy=strategy, margin=5.0)
        assert 11 not in a.tolist()
        assert 11 not in p.tolist()
        assert_valid(as_set(a, p, n), labels)
        if strategy != "hard":  # the (far) singleton need not be anyone's closest negative
            assert 11 in n.tolist()


def test_mined_triplets_train() -> None:
    """Mined indices feed the losses; gradients flow to the embeddings only through the loss."""
    emb64, labels = random_batch(0, 3)
    emb = emb64.float().requires_grad_(True)
    for strategy in TRIPLET_STRATEGIES:
        triplets = mine_triplets(emb, labels, strategy=strategy, margin=0.5)
        loss = TripletMarginLoss(margin=0.5).forward_mined(emb, triplets)
        loss.backward()
        assert emb.grad is not None
        assert bool(torch.isfinite(emb.grad).all())
        emb.grad = None
    i, j, y = mine_pairs(emb, labels, strategy="hard", margin=2.5)
    ContrastiveLoss(margin=2.5)(emb[i], emb[j], y).backward()
    assert emb.grad is not None


def test_all_pairs() -> None:
    labels = torch.tensor([0, 1, 0, 2, 1])
    i, j, y = all_pairs(labels)
    assert i.dtype == j.dtype == torch.int64
    assert y.dtype == torch.float32
    assert list(zip(i.tolist(), j.tolist(), strict=True)) == [
        (a, b) for a in range(5) for b in range(a + 1, 5)
    ]
    assert as_set(i, j, y) == {
        (a, b, float(labels[a] == labels[b])) for a, b in zip(i.tolist(), j.tolist(), strict=True)
    }
    assert y.sum().item() == 2


def test_distance_object_and_low_precision() -> None:
    emb, labels = random_batch(2, 4)
    for strategy in TRIPLET_STRATEGIES[:4]:
        by_name = mine_triplets(emb, labels, strategy=strategy, margin=0.5)
        by_object = mine_triplets(
            emb, labels, strategy=strategy, margin=0.5, distance=EuclideanDistance()
        )
        assert as_set(*by_name) == as_set(*by_object)
    half = mine_triplets(emb.half(), labels, strategy="hard")
    check_indices(half)
    assert_valid(as_set(*half), labels)


def test_bad_arguments() -> None:
    emb, labels = random_batch(0, 3)
    with pytest.raises(ValueError, match="strategy must be one of 'all', 'all_active'"):
        mine_triplets(emb, labels, strategy="batch_hard")
    with pytest.raises(ValueError, match="strategy must be one of 'all', 'hard'"):
        mine_pairs(emb, labels, strategy="semihard")
    for margin in (-0.1, math.nan, math.inf, True):
        with pytest.raises(ValueError, match="margin must be a finite number >= 0"):
            mine_triplets(emb, labels, margin=margin)
    with pytest.raises(ValueError, match="margin must be a finite number > 0"):
        mine_pairs(emb, labels, margin=0.0)
    with pytest.raises(ValueError, match="unknown distance 'l1'"):
        mine_triplets(emb, labels, distance="l1")
    with pytest.raises(ValueError, match=r"labels.view\(-1\)"):
        mine_triplets(emb, labels[:, None])
    with pytest.raises(ValueError, match="11 labels for 12 embeddings"):
        mine_pairs(emb, labels[:11])
    with pytest.raises(ValueError, match=r"shape \(B, D\)"):
        mine_triplets(emb[0], labels)
    with pytest.raises(ValueError, match="1-D tensor"):
        all_pairs(labels.view(3, 4))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    emb, labels = random_batch(1, 4)
    cuda_emb = emb.cuda()
    for strategy in TRIPLET_STRATEGIES:
        for distance in DISTANCES:
            gen = torch.Generator().manual_seed(0)  # a CPU generator with CUDA embeddings
            out = mine_triplets(
                cuda_emb, labels, strategy=strategy, distance=distance, generator=gen
            )
            check_indices(out, "cuda")
            cpu = mine_triplets(
                emb,
                labels,
                strategy=strategy,
                distance=distance,
                generator=torch.Generator().manual_seed(0),
            )
            assert all(torch.equal(x.cpu(), y) for x, y in zip(out, cpu, strict=True))
    i, j, y = mine_pairs(cuda_emb, labels, strategy="hard", margin=2.5)
    assert i.device.type == j.device.type == y.device.type == "cuda"
