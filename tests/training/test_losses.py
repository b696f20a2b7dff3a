"""Tests of lookalike.training.losses against slow references and pytorch-metric-learning."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
import torch
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import reducers as pml_reducers

from lookalike.training.losses import ContrastiveLoss, PairBCELoss, TripletMarginLoss, make_loss


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# ------------------------------------------------------------------ slow references


def ref_dissimilarity(x: Sequence[float], y: Sequence[float], distance: str) -> float:
    """Euclidean distance or 1 - cosine, with plain Python arithmetic."""
    if distance == "euclidean":
        return math.sqrt(sum((xi - yi) ** 2 for xi, yi in zip(x, y, strict=True)))
    dot = sum(xi * yi for xi, yi in zip(x, y, strict=True))
    nx = math.sqrt(sum(xi * xi for xi in x))
    ny = math.sqrt(sum(yi * yi for yi in y))
    return 1.0 - dot / (nx * ny)


def ref_contrastive(
    a: torch.Tensor,
    b: torch.Tensor,
    labels: torch.Tensor,
    margin: float,
    *,
    similar_label: int = 1,
    distance: str = "euclidean",
    half: bool = False,
    squared: bool = True,
) -> list[float]:
    """Per-pair contrastive terms written straight from the formula."""
    power = 2 if squared else 1
    out = []
    for x, y, label in zip(a.tolist(), b.tolist(), labels.tolist(), strict=True):
        d = ref_dissimilarity(x, y, distance)
        term = d**power if label == similar_label else max(0.0, margin - d) ** power
        out.append(0.5 * term if half else term)
    return out


def ref_triplet(
    a: torch.Tensor,
    p: torch.Tensor,
    n: torch.Tensor,
    margin: float,
    *,
    distance: str = "euclidean",
    swap: bool = False,
) -> list[float]:
    """Per-triplet margin terms written straight from the formula."""
    out = []
    for x, y, z in zip(a.tolist(), p.tolist(), n.tolist(), strict=True):
        d_ap = ref_dissimilarity(x, y, distance)
        d_an = ref_dissimilarity(x, z, distance)
        if swap:
            d_an = min(d_an, ref_dissimilarity(y, z, distance))
        out.append(max(0.0, d_ap - d_an + margin))
    return out


def reduce_list(terms: list[float], reduction: str) -> float | list[float]:
    if reduction == "none":
        return terms
    if reduction == "sum":
        return sum(terms)
    if reduction == "mean":
        return sum(terms) / len(terms)
    positive = [t for t in terms if t > 0]
    return sum(positive) / len(positive) if positive else 0.0


def assert_matches(actual: torch.Tensor, expected: float | list[float], tol: float = 1e-6) -> None:
    if isinstance(expected, list):
        assert actual.shape == (len(expected),)
        assert actual.tolist() == pytest.approx(expected, abs=tol, rel=tol)
    else:
        assert actual.shape == ()
        assert actual.item() == pytest.approx(expected, abs=tol, rel=tol)


def pair_batch(n: int = 10, dim: int = 6) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pairs with a mix of close, far, similar and dissimilar cases (float64)."""
    a = torch.randn(n, dim, dtype=torch.float64)
    b = a + torch.randn(n, dim, dtype=torch.float64) * torch.linspace(0.05, 1.0, n)[:, None]
    labels = torch.tensor([1, 0] * (n // 2))
    return a, b, labels


# ------------------------------------------------------------------ contrastive


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
@pytest.mark.parametrize("similar_label", [0, 1])
@pytest.mark.parametrize(("half", "squared"), [(False, True), (True, True), (False, False)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_contrastive_matches_reference(
    distance: str, similar_label: int, half: bool, squared: bool, reduction: str
) -> None:
    a, b, labels = pair_batch()
    margin = 1.5 if distance == "euclidean" else 0.1
    loss = ContrastiveLoss(
        margin,
        similar_label=similar_label,  # type: ignore[arg-type]
        distance=distance,  # type: ignore[arg-type]
        reduction=reduction,  # type: ignore[arg-type]
        half=half,
        squared=squared,
    )
    terms = ref_contrastive(
        a,
        b,
        labels,
        margin,
        similar_label=similar_label,
        distance=distance,
        half=half,
        squared=squared,
    )
    # The batch must exercise every branch: active and inactive hinge terms.
    dissimilar = [t for t, y in zip(terms, labels.tolist(), strict=True) if y != similar_label]
    assert any(t == 0 for t in dissimilar)
    assert any(t > 0 for t in dissimilar)
    assert_matches(loss(a, b, labels), reduce_list(terms, reduction))


def test_contrastive_label_conventions_agree_when_flipped() -> None:
    a, b, labels = pair_batch()
    keras = ContrastiveLoss(1.5, similar_label=1, half=True)
    hadsell = ContrastiveLoss(1.5, similar_label=0, half=True)
    torch.testing.assert_close(keras(a, b, labels), hadsell(a, b, 1 - labels))
    torch.testing.assert_close(keras(a, b, labels.bool()), hadsell(a, b, (1 - labels).float()))
    assert not torch.allclose(keras(a, b, labels), hadsell(a, b, labels))


def test_contrastive_hadsell_formula_explicitly() -> None:
    # Hadsell et al.: L = (1 - Y) * 1/2 * D^2 + Y * 1/2 * max(0, m - D)^2, Y = 0 similar.
    a = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    b = torch.tensor([[3.0, 4.0], [0.3, 0.4], [3.0, 4.0]])
    Y = torch.tensor([0, 1, 1])  # D = 5, 0.5, 5
    loss = ContrastiveLoss(2.0, similar_label=0, half=True, reduction="none")
    expected = [0.5 * 25.0, 0.5 * (2.0 - 0.5) ** 2, 0.0]
    assert loss(a, b, Y).tolist() == pytest.approx(expected, abs=1e-5)


def test_contrastive_accepts_column_labels_and_float_labels() -> None:
    a, b, labels = pair_batch()
    loss = ContrastiveLoss()
    torch.testing.assert_close(loss(a, b, labels[:, None].float()), loss(a, b, labels))


def pml_pair_indices(
    labels: torch.Tensor, n: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """indices_tuple (a1, p, a2, n) for pairs (i, n + i) of torch.cat([a, b])."""
    rows = torch.arange(n)
    sim, dis = rows[labels == 1], rows[labels == 0]
    return sim, sim + n, dis, dis + n


def test_contrastive_terms_match_pml_unsquared_and_squared() -> None:
    a, b, labels = pair_batch(n=10)  # 20 rows: cdist stays exact (no matmul path)
    margin = 1.5
    pml = pml_losses.ContrastiveLoss(
        pos_margin=0,
        neg_margin=margin,
        distance=pml_distances.LpDistance(normalize_embeddings=False),
        reducer=pml_reducers.DoNothingReducer(),
    )
    out = pml(torch.cat([a, b]), indices_tuple=pml_pair_indices(labels, len(a)))
    pml_pos, pml_neg = out["pos_loss"]["losses"], out["neg_loss"]["losses"]

    ours = ContrastiveLoss(margin, squared=False, reduction="none")(a, b, labels)
    torch.testing.assert_close(ours[labels == 1], pml_pos)
    torch.testing.assert_close(ours[labels == 0], pml_neg)

    # pml does not square; ours (Hadsell) squares each term.
    squared = ContrastiveLoss(margin, reduction="none")(a, b, labels)
    torch.testing.assert_close(squared[labels == 1], pml_pos**2)
    torch.testing.assert_close(squared[labels == 0], pml_neg**2)


def test_contrastive_pml_default_reduction_is_separate_nonzero_means() -> None:
    a, b, labels = pair_batch(n=10)
    margin = 1.5
    pml = pml_losses.ContrastiveLoss(
        pos_margin=0,
        neg_margin=margin,
        distance=pml_distances.LpDistance(normalize_embeddings=False),
    )
    pml_value = pml(torch.cat([a, b]), indices_tuple=pml_pair_indices(labels, len(a)))
    terms = ContrastiveLoss(margin, squared=False, reduction="none")(a, b, labels)
    pos, neg = terms[labels == 1], terms[labels == 0]
    expected = pos[pos > 0].mean() + neg[neg > 0].mean()
    torch.testing.assert_close(pml_value, expected)
    # ... which is not our mean over all pairs.
    mean_all = ContrastiveLoss(margin, squared=False)(a, b, labels)
    assert not torch.allclose(pml_value, mean_all)


def test_contrastive_cosine_matches_pml_cosine_similarity() -> None:
    # Ours: d = 1 - cos, terms d and relu(m - d) = relu(cos - (1 - m)).
    # pml with CosineSimilarity (inverted): relu(pos_margin - cos), relu(cos - neg_margin).
    a, b, labels = pair_batch(n=10)
    margin = 0.4
    pml = pml_losses.ContrastiveLoss(
        pos_margin=1,
        neg_margin=1 - margin,
        distance=pml_distances.CosineSimilarity(),
        reducer=pml_reducers.DoNothingReducer(),
    )
    out = pml(torch.cat([a, b]), indices_tuple=pml_pair_indices(labels, len(a)))
    ours = ContrastiveLoss(margin, distance="cosine", squared=False, reduction="none")(a, b, labels)
    torch.testing.assert_close(ours[labels == 1], out["pos_loss"]["losses"])
    torch.testing.assert_close(ours[labels == 0], out["neg_loss"]["losses"])


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_contrastive_gradient_finite_at_identical_pairs(distance: str) -> None:
    a = torch.randn(4, 5, requires_grad=True)
    b = a.detach().clone().requires_grad_(True)
    loss = ContrastiveLoss(distance=distance)(a, b, torch.tensor([1, 0, 1, 0]))  # type: ignore[arg-type]
    loss.backward()
    assert a.grad is not None
    assert torch.isfinite(a.grad).all()
    assert torch.isfinite(loss)


def test_contrastive_empty_batch_is_zero() -> None:
    a = torch.randn(0, 5, requires_grad=True)
    loss = ContrastiveLoss()(a, a.detach(), torch.zeros(0))
    assert loss.item() == 0.0
    loss.backward()


@pytest.mark.parametrize("bad", [[0, 2, 1], [-1, 0, 1], [0.5, 1, 0]])
def test_contrastive_rejects_non_binary_labels(bad: list[float]) -> None:
    a, b = torch.randn(3, 4), torch.randn(3, 4)
    with pytest.raises(ValueError, match="0 or 1"):
        ContrastiveLoss()(a, b, torch.tensor(bad))


def test_contrastive_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(3, 5\)"):
        ContrastiveLoss()(torch.randn(3, 4), torch.randn(3, 5), torch.ones(3))
    with pytest.raises(ValueError, match="labels"):
        ContrastiveLoss()(torch.randn(3, 4), torch.randn(3, 4), torch.ones(2))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"margin": 0.0}, "margin"),
        ({"margin": -1.0}, "margin"),
        ({"margin": math.nan}, "margin"),
        ({"margin": math.inf}, "margin"),
        ({"similar_label": 2}, "similar_label"),
        ({"similar_label": True}, "similar_label"),
        ({"distance": "manhattan"}, "distance"),
        ({"reduction": "avg"}, "reduction"),
        ({"reduction": "mean_positive"}, "reduction"),
    ],
)
def test_contrastive_rejects_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ContrastiveLoss(**kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------ triplet


def triplet_batch(
    b: int = 16, dim: int = 6, t: int = 24
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """A batch of embeddings and ``t`` triplets of three distinct rows each (float64)."""
    emb = torch.randn(b, dim, dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    rows = torch.stack([torch.randperm(b, generator=g)[:3] for _ in range(t)])
    triplets = (rows[:, 0], rows[:, 1], rows[:, 2])
    return emb, triplets


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
@pytest.mark.parametrize("swap", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none", "mean_positive"])
def test_triplet_matches_reference(distance: str, swap: bool, reduction: str) -> None:
    emb, (ai, pi, ni) = triplet_batch()
    margin = 0.5 if distance == "euclidean" else 0.1
    loss = TripletMarginLoss(margin, distance=distance, swap=swap, reduction=reduction)  # type: ignore[arg-type]
    terms = ref_triplet(emb[ai], emb[pi], emb[ni], margin, distance=distance, swap=swap)
    assert any(t == 0 for t in terms)
    assert any(t > 0 for t in terms)
    expected = reduce_list(terms, reduction)
    assert_matches(loss(emb[ai], emb[pi], emb[ni]), expected)
    assert_matches(loss.forward_mined(emb, (ai, pi, ni)), expected)


@pytest.mark.parametrize("swap", [False, True])
@pytest.mark.parametrize(
    ("reducer", "reduction"),
    [
        (pml_reducers.MeanReducer, "mean"),
        (pml_reducers.AvgNonZeroReducer, "mean_positive"),
        (pml_reducers.SumReducer, "sum"),
    ],
)
def test_triplet_matches_pml(swap: bool, reducer: type, reduction: str) -> None:
    emb, triplets = triplet_batch(b=16)  # < 25 rows: pml's cdist stays exact
    margin = 0.5
    pml = pml_losses.TripletMarginLoss(
        margin=margin,
        swap=swap,
        distance=pml_distances.LpDistance(normalize_embeddings=False),
        reducer=reducer(),
    )
    ours = TripletMarginLoss(margin, swap=swap, reduction=reduction)  # type: ignore[arg-type]
    torch.testing.assert_close(ours.forward_mined(emb, triplets), pml(emb, indices_tuple=triplets))


def test_triplet_pml_default_reducer_is_mean_positive() -> None:
    emb, triplets = triplet_batch(b=16)
    pml = pml_losses.TripletMarginLoss(
        margin=0.5, distance=pml_distances.LpDistance(normalize_embeddings=False)
    )
    ours = TripletMarginLoss(0.5, reduction="mean_positive")
    torch.testing.assert_close(ours.forward_mined(emb, triplets), pml(emb, indices_tuple=triplets))


def test_triplet_cosine_matches_pml_cosine_similarity() -> None:
    emb, triplets = triplet_batch(b=16)
    pml = pml_losses.TripletMarginLoss(
        margin=0.1,
        distance=pml_distances.CosineSimilarity(),
        reducer=pml_reducers.DoNothingReducer(),
    )
    expected = pml(emb, indices_tuple=triplets)["loss"]["losses"]
    ours = TripletMarginLoss(0.1, distance="cosine", reduction="none").forward_mined(emb, triplets)
    torch.testing.assert_close(ours, expected)


@pytest.mark.parametrize("reduction", ["mean", "sum", "mean_positive"])
def test_triplet_no_triplets_gives_connected_zero(reduction: str) -> None:
    emb = torch.randn(8, 4, requires_grad=True)
    empty = torch.zeros(0, dtype=torch.long)
    loss = TripletMarginLoss(reduction=reduction).forward_mined(emb, (empty, empty, empty))  # type: ignore[arg-type]
    assert loss.shape == ()
    assert loss.item() == 0.0
    assert loss.requires_grad
    loss.backward()
    assert emb.grad is not None
    assert torch.equal(emb.grad, torch.zeros_like(emb))


def test_triplet_no_triplets_never_nan_even_with_inf_embeddings() -> None:
    # pml's zero loss (embeddings * 0).sum() is NaN here; ours must not be.
    emb = torch.randn(4, 3)
    emb[0, 0] = math.inf
    emb.requires_grad_(True)
    empty = torch.zeros(0, dtype=torch.long)
    loss = TripletMarginLoss().forward_mined(emb, (empty, empty, empty))
    assert loss.item() == 0.0
    loss.backward()
    assert emb.grad is not None
    assert torch.isfinite(emb.grad).all()


def test_triplet_no_triplets_none_reduction_is_empty() -> None:
    emb = torch.randn(8, 4)
    empty = torch.zeros(0, dtype=torch.long)
    out = TripletMarginLoss(reduction="none").forward_mined(emb, (empty, empty, empty))
    assert out.shape == (0,)


def test_triplet_all_satisfied_mean_positive_is_zero_not_nan() -> None:
    anchor = torch.zeros(3, 2, requires_grad=True)
    positive = torch.zeros(3, 2)
    negative = torch.full((3, 2), 10.0)
    loss = TripletMarginLoss(0.2, reduction="mean_positive")(anchor, positive, negative)
    assert loss.item() == 0.0
    loss.backward()
    assert anchor.grad is not None
    assert torch.isfinite(anchor.grad).all()


def test_triplet_mean_averages_over_all_triplets() -> None:
    # One violated triplet (loss 1.2) and one satisfied: mean = 0.6, mean_positive = 1.2.
    anchor = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    positive = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    negative = torch.tensor([[0.0, 0.0], [5.0, 0.0]])
    assert TripletMarginLoss(0.2)(anchor, positive, negative).item() == pytest.approx(0.6, abs=1e-5)
    loss = TripletMarginLoss(0.2, reduction="mean_positive")(anchor, positive, negative)
    assert loss.item() == pytest.approx(1.2, abs=1e-5)


def test_triplet_rejects_bad_inputs() -> None:
    emb = torch.randn(5, 3)
    idx = torch.tensor([0, 1])
    loss = TripletMarginLoss()
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        loss.forward_mined(emb, (idx, idx, torch.tensor([0, 5])))
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        loss.forward_mined(emb, (idx, idx, torch.tensor([0, -1])))
    with pytest.raises(ValueError, match="integer"):
        loss.forward_mined(emb, (idx, idx, idx.float()))
    with pytest.raises(ValueError, match="one shape"):
        loss.forward_mined(emb, (idx, idx, torch.tensor([0])))
    with pytest.raises(ValueError, match="tuple"):
        loss.forward_mined(emb, (idx, idx))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        loss.forward_mined(torch.randn(5), (idx, idx, idx))
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        loss(torch.randn(2, 3), torch.randn(2, 3), torch.randn(2, 4))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"margin": -0.1}, "margin"),
        ({"margin": math.nan}, "margin"),
        ({"distance": "dot"}, "distance"),
        ({"reduction": "avg_nonzero"}, "reduction"),
    ],
)
def test_triplet_rejects_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TripletMarginLoss(**kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------ BCE


@pytest.mark.parametrize("shape", [(12,), (12, 1)])
def test_bce_matches_bce_on_sigmoid(shape: tuple[int, ...]) -> None:
    logits = torch.randn(shape, dtype=torch.float64) * 3
    labels = torch.randint(0, 2, shape)
    expected = torch.nn.BCELoss()(torch.sigmoid(logits), labels.to(torch.float64))
    torch.testing.assert_close(PairBCELoss()(logits, labels), expected)
    per_pair = torch.nn.BCELoss(reduction="none")(torch.sigmoid(logits), labels.double()).reshape(
        -1
    )
    torch.testing.assert_close(PairBCELoss(reduction="none")(logits, labels), per_pair)


def test_bce_pos_weight_matches_formula() -> None:
    logits = torch.randn(10, dtype=torch.float64)
    labels = torch.randint(0, 2, (10,))
    w = 3.0
    terms = [
        -(w * y * math.log(1 / (1 + math.exp(-z))) + (1 - y) * math.log(1 - 1 / (1 + math.exp(-z))))
        for z, y in zip(logits.tolist(), labels.tolist(), strict=True)
    ]
    assert PairBCELoss(pos_weight=w)(logits, labels).item() == pytest.approx(
        sum(terms) / 10, rel=1e-9
    )


def test_bce_is_stable_for_large_logits() -> None:
    logits = torch.tensor([100.0, -100.0, 60.0], requires_grad=True)
    labels = torch.tensor([0, 1, 1])
    loss = PairBCELoss(reduction="none")(logits, labels)
    assert loss.tolist() == pytest.approx([100.0, 100.0, 0.0], abs=1e-6)
    loss.sum().backward()
    assert logits.grad is not None
    assert torch.isfinite(logits.grad).all()


def test_bce_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        PairBCELoss()(torch.zeros(3), torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="labels"):
        PairBCELoss()(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="logits"):
        PairBCELoss()(torch.zeros(3, 2), torch.zeros(3))
    for bad in (0.0, -1.0, math.inf):
        with pytest.raises(ValueError, match="pos_weight"):
            PairBCELoss(pos_weight=bad)
    with pytest.raises(ValueError, match="reduction"):
        PairBCELoss(reduction="mean_positive")  # type: ignore[arg-type]


# ------------------------------------------------------------------ factory


def test_make_loss() -> None:
    contrastive = make_loss("contrastive", margin=2.0, similar_label=0)
    assert isinstance(contrastive, ContrastiveLoss)
    assert contrastive.margin == 2.0
    assert contrastive.similar_label == 0
    triplet = make_loss("triplet", margin=0.3, reduction="mean_positive")
    assert isinstance(triplet, TripletMarginLoss)
    assert triplet.reduction == "mean_positive"
    assert isinstance(make_loss("bce", pos_weight=2.0), PairBCELoss)
    assert list(make_loss("triplet").parameters()) == []


def test_make_loss_rejects_unknown_name_and_options() -> None:
    with pytest.raises(ValueError, match=r"'arcface'.*contrastive, triplet, bce"):
        make_loss("arcface")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"'triplet'.*margin"):
        make_loss("triplet", alpha=0.2)
    with pytest.raises(ValueError, match="margin"):
        make_loss("triplet", margin=-1.0)
