"""Training losses for Siamese and metric-learning models.

Losses take **embeddings** (or pair-head logits), never models: the training
loop runs the model and hands the outputs here. All are ``torch.nn.Module``
subclasses with no parameters. Distances come from :mod:`lookalike.metrics.distances`,
the one place they are computed.

* :class:`ContrastiveLoss`: pairs of embeddings with a same/different label.
* :class:`TripletMarginLoss`: (anchor, positive, negative) triplets, given as
  embeddings or as indices into a batch (from a miner).
* :class:`PairBCELoss`: binary cross-entropy on the logits of a pair head.
* :func:`make_loss`: builds one of them from a name and options (configs, CLI).

Relation to pytorch-metric-learning (pml), checked in ``tests/test_losses.py``:

* pml's ``ContrastiveLoss(pos_margin=0, neg_margin=m)`` is **not squared**: its
  per-pair terms are ``d`` and ``relu(m - d)``. Ours with ``squared=False`` gives
  exactly those terms (``reduction="none"``); the default ``squared=True`` gives
  their squares (Hadsell et al.). pml's ``LpDistance(power=2)`` is not the same
  thing: it squares ``d`` in both terms, giving ``relu(m - d²)`` for negatives.
* pml reduces contrastive losses as ``reduce(positive terms) + reduce(negative
  terms)``, by default with ``AvgNonZeroReducer`` (mean over the non-zero terms
  of each kind), not as one mean over all pairs as ours does.
* pml's ``TripletMarginLoss`` terms equal ours; its default reducer
  (``AvgNonZeroReducer``) is our ``reduction="mean_positive"``, its
  ``MeanReducer`` our ``"mean"``.
* pml's distances L2-normalise embeddings by default
  (``LpDistance(normalize_embeddings=True)``); ours never normalise for the
  Euclidean distance; normalise in the model if you want that.
"""

from __future__ import annotations

import inspect
import math
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lookalike.metrics.distances import Distance, DistanceName, get_distance

__all__ = [
    "ContrastiveLoss",
    "LossName",
    "PairBCELoss",
    "Reduction",
    "TripletMarginLoss",
    "TripletReduction",
    "make_loss",
]

Reduction = Literal["mean", "sum", "none"]
"""How per-sample losses are combined: average, total, or kept per sample."""

TripletReduction = Literal["mean", "sum", "none", "mean_positive"]
""":data:`Reduction` plus ``"mean_positive"``: average over the terms that are > 0."""

LossName = Literal["contrastive", "triplet", "bce"]
"""The names :func:`make_loss` accepts."""

_DISTANCE_NAMES: tuple[str, ...] = get_args(DistanceName)


def _check_choice(owner: str, arg: str, value: object, choices: tuple[str, ...]) -> None:
    """Raises ValueError naming the valid choices unless ``value`` is one of them."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(
            f"{owner}: {arg} must be one of {', '.join(map(repr, choices))}, got {value!r}"
        )


def _check_margin(owner: str, margin: float, *, allow_zero: bool) -> float:
    """Returns ``margin`` as a float, raising ValueError unless finite and > 0 (or >= 0)."""
    ok = isinstance(margin, (int, float)) and not isinstance(margin, bool) and math.isfinite(margin)
    if ok:
        ok = margin >= 0 if allow_zero else margin > 0
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{owner}: margin must be a finite number {bound}, got {margin!r}")
    return float(margin)


def _dissimilarity(distance: Distance, a: Tensor, b: Tensor) -> Tensor:
    """Row-wise dissimilarity ``(N,)`` (lower = closer): the distance, or ``1 - cos``."""
    values: Tensor = distance.pairwise(a, b)
    if distance.higher_is_closer:
        dissimilarity: Tensor = 1.0 - values
        return dissimilarity
    return values


def _reduce(losses: Tensor, reduction: str) -> Tensor:
    """Reduces per-sample losses ``(N,)``; empty input gives a graph-connected 0, never NaN.

    ``"mean_positive"`` divides the total by the number of terms > 0 (at least
    1), which for non-negative losses is the mean over the positive terms.
    """
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    if reduction == "mean":
        return losses.sum() if losses.numel() == 0 else losses.mean()
    count = (losses > 0).sum().clamp_min(1).to(losses.dtype)
    return losses.sum() / count


def _check_embedding_pair(owner: str, names: tuple[str, ...], *tensors: Tensor) -> None:
    """Raises ValueError unless all tensors are 2-D ``(N, D)`` with one shape."""
    first = tensors[0]
    if first.ndim != 2 or any(tuple(t.shape) != tuple(first.shape) for t in tensors[1:]):
        shapes = ", ".join(
            f"{n}.shape={tuple(t.shape)}" for n, t in zip(names, tensors, strict=True)
        )
        raise ValueError(
            f"{owner}: {', '.join(names)} must all have the same shape (N, D), got {shapes}"
        )


def _flatten_column(owner: str, name: str, x: Tensor, n: int | None) -> Tensor:
    """Returns ``x`` of shape ``(N,)`` or ``(N, 1)`` as ``(N,)``; ValueError otherwise."""
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 1 or (n is not None and x.shape[0] != n):
        expected = "(N,) or (N, 1)" if n is None else f"({n},) or ({n}, 1)"
        raise ValueError(f"{owner}: {name} must have shape {expected}, got {tuple(x.shape)}")
    return x


class ContrastiveLoss(nn.Module):
    r"""Contrastive loss of Hadsell, Chopra & LeCun (2006) on pairs of embeddings.

    For a pair with dissimilarity ``d`` (Euclidean distance, or ``1 - cos`` for
    ``distance="cosine"``), margin ``m`` and ``s = 1`` for a similar pair, ``0``
    for a dissimilar one::

        L = s · d² + (1 − s) · max(0, m − d)²           (squared=True, default)
        L = s · d  + (1 − s) · max(0, m − d)            (squared=False)

    multiplied by ½ when ``half=True``. Similar pairs are pulled together;
    dissimilar pairs are pushed apart until they are ``m`` apart, and ignored
    beyond that.

    Which label value means "similar" is explicit, because the two common
    formulations disagree:

    * ``similar_label=1`` (default; seed 001's Keras convention, ``y = 1`` for
      similar): ``L = y · d² + (1 − y) · max(0, m − d)²``.
    * ``similar_label=0`` (seed 004's and Hadsell et al.'s convention, ``Y = 0``
      for similar): ``L = (1 − Y) · ½ · D² + Y · ½ · max(0, m − D)²``; use it with
      ``half=True`` to get that formula exactly.

    The two conventions give the same loss when the labels are flipped.

    ``squared=False`` gives pytorch-metric-learning's
    ``ContrastiveLoss(pos_margin=0, neg_margin=m)`` terms exactly (pml does not
    square); note pml reduces positives and negatives separately (see the
    module docstring).

    Args:
        margin: ``m``, in the units of the dissimilarity (embedding units for
            Euclidean; for cosine ``1 - cos`` lies in ``[0, 2]``). Must be > 0.
        similar_label: The label value (0 or 1) that marks a similar pair.
        distance: ``"euclidean"`` or ``"cosine"``.
        reduction: ``"mean"`` (over all pairs), ``"sum"``, or ``"none"`` (per pair).
        half: Multiply by ½ (Hadsell et al.'s formula).
        squared: Square both terms (Hadsell et al.); False gives pml's terms.

    Raises:
        ValueError: If an argument is out of range or not one of its choices.
    """

    def __init__(
        self,
        margin: float = 1.0,
        *,
        similar_label: Literal[0, 1] = 1,
        distance: DistanceName = "euclidean",
        reduction: Reduction = "mean",
        half: bool = False,
        squared: bool = True,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.margin = _check_margin(owner, margin, allow_zero=False)
        if similar_label not in (0, 1) or isinstance(similar_label, bool):
            raise ValueError(
                f"{owner}: similar_label must be 1 (y=1 marks similar pairs) or 0 "
                f"(Hadsell's Y=0 marks similar pairs), got {similar_label!r}"
            )
        _check_choice(owner, "distance", distance, _DISTANCE_NAMES)
        _check_choice(owner, "reduction", reduction, get_args(Reduction))
        self.similar_label = similar_label
        self.distance_name = distance
        self.distance = get_distance(distance)
        self.reduction = reduction
        self.halved = bool(half)
        self.squared = bool(squared)

    def forward(self, emb_a: Tensor, emb_b: Tensor, labels: Tensor) -> Tensor:
        """Computes the loss of ``N`` pairs.

        Args:
            emb_a: First embeddings of the pairs, shape ``(N, D)``.
            emb_b: Second embeddings, shape ``(N, D)``.
            labels: Pair labels, shape ``(N,)`` or ``(N, 1)``, values 0 or 1
                (any dtype); ``similar_label`` marks similar pairs.

        Returns:
            A scalar tensor, or shape ``(N,)`` for ``reduction="none"``. An empty
            batch gives 0 (connected to the graph, never NaN).

        Raises:
            ValueError: If the shapes do not match or a label is not 0 or 1.
        """
        owner = type(self).__name__
        _check_embedding_pair(owner, ("emb_a", "emb_b"), emb_a, emb_b)
        labels = _flatten_column(owner, "labels", labels, emb_a.shape[0])
        if not bool(((labels == 0) | (labels == 1)).all()):
            bad = labels[(labels != 0) & (labels != 1)][:5].tolist()
            raise ValueError(
                f"{owner}: labels must be 0 or 1 (similar_label={self.similar_label} marks "
                f"similar pairs), got values such as {bad}"
            )
        similar = labels == self.similar_label
        d = _dissimilarity(self.distance, emb_a, emb_b)
        pull = d
        push = F.relu(self.margin - d)
        if self.squared:
            pull = pull * pull
            push = push * push
        losses = torch.where(similar, pull, push)
        if self.halved:
            losses = 0.5 * losses
        return _reduce(losses, self.reduction)

    def extra_repr(self) -> str:
        return (
            f"margin={self.margin}, similar_label={self.similar_label}, "
            f"distance={self.distance_name!r}, reduction={self.reduction!r}, "
            f"half={self.halved}, squared={self.squared}"
        )


class TripletMarginLoss(nn.Module):
    r"""Triplet margin loss: ``max(0, d(a, p) − d(a, n) + m)`` per triplet.

    ``d`` is the Euclidean distance, or ``1 - cos`` for ``distance="cosine"``.
    With ``swap=True`` (Balntas et al., 2016) ``d(a, n)`` is replaced by
    ``min(d(a, n), d(p, n))``, the harder of the two negatives distances.

    Reductions: ``"mean"`` averages over **all** triplets given, including those
    already satisfied (loss 0); ``"mean_positive"`` averages over the triplets
    with loss > 0 only (pytorch-metric-learning's default ``AvgNonZeroReducer``)
    and gives 0 when there are none; ``"sum"`` and ``"none"`` as usual. The
    per-triplet terms equal pml's ``TripletMarginLoss(margin=m)`` with
    ``LpDistance(normalize_embeddings=False)``.

    Args:
        margin: ``m``, in the units of the dissimilarity; must be >= 0.
        distance: ``"euclidean"`` or ``"cosine"``.
        swap: Use the distance swap of Balntas et al.
        reduction: ``"mean"``, ``"mean_positive"``, ``"sum"`` or ``"none"``.

    Raises:
        ValueError: If an argument is out of range or not one of its choices.
    """

    def __init__(
        self,
        margin: float = 0.2,
        *,
        distance: DistanceName = "euclidean",
        swap: bool = False,
        reduction: TripletReduction = "mean",
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.margin = _check_margin(owner, margin, allow_zero=True)
        _check_choice(owner, "distance", distance, _DISTANCE_NAMES)
        _check_choice(owner, "reduction", reduction, get_args(TripletReduction))
        self.distance_name = distance
        self.distance = get_distance(distance)
        self.swap = bool(swap)
        self.reduction = reduction

    def forward(self, anchor: Tensor, positive: Tensor, negative: Tensor) -> Tensor:
        """Computes the loss of ``N`` triplets given as embeddings.

        Args:
            anchor: Anchor embeddings, shape ``(N, D)``.
            positive: Embeddings similar to the anchors, shape ``(N, D)``.
            negative: Embeddings dissimilar to the anchors, shape ``(N, D)``.

        Returns:
            A scalar tensor, or shape ``(N,)`` for ``reduction="none"``. No
            triplets (``N = 0``) gives 0, connected to the graph, never NaN.

        Raises:
            ValueError: If the shapes are not all the same ``(N, D)``.
        """
        _check_embedding_pair(
            type(self).__name__, ("anchor", "positive", "negative"), anchor, positive, negative
        )
        return _reduce(self._per_triplet(anchor, positive, negative), self.reduction)

    def forward_mined(self, embeddings: Tensor, triplets: tuple[Tensor, Tensor, Tensor]) -> Tensor:
        """Computes the loss of triplets given as indices into a batch (from a miner).

        Args:
            embeddings: The batch, shape ``(B, D)``.
            triplets: ``(anchor_idx, positive_idx, negative_idx)``, three integer
                tensors of shape ``(T,)`` with values in ``[0, B)``.

        Returns:
            A scalar tensor, or shape ``(T,)`` for ``reduction="none"``. With no
            triplets (``T = 0``) the loss is a real 0 connected to the graph
            (``requires_grad`` when ``embeddings`` does; zero gradient), never NaN.

        Raises:
            ValueError: If ``embeddings`` is not 2-D, ``triplets`` is not three
                integer tensors of one length ``(T,)``, or an index is out of range.
        """
        owner = f"{type(self).__name__}.forward_mined"
        if embeddings.ndim != 2:
            raise ValueError(
                f"{owner}: embeddings must have shape (B, D), got {tuple(embeddings.shape)}"
            )
        if not isinstance(triplets, (tuple, list)) or len(triplets) != 3:
            raise ValueError(
                f"{owner}: triplets must be a tuple (anchor_idx, positive_idx, negative_idx) "
                "of three index tensors"
            )
        a_idx, p_idx, n_idx = triplets
        shapes = [tuple(t.shape) for t in triplets]
        if any(t.ndim != 1 for t in triplets) or len(set(shapes)) != 1:
            raise ValueError(
                f"{owner}: the three index tensors must have one shape (T,), got {shapes}"
            )
        if any(
            t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool
            for t in triplets
        ):
            raise ValueError(
                f"{owner}: indices must be integer tensors, got {[t.dtype for t in triplets]}"
            )
        batch = embeddings.shape[0]
        if a_idx.numel() > 0:
            stacked = torch.stack([a_idx, p_idx, n_idx])
            low, high = int(stacked.min()), int(stacked.max())
            if low < 0 or high >= batch:
                raise ValueError(
                    f"{owner}: indices must be in [0, {batch}) for a batch of {batch} "
                    f"embeddings, got values in [{low}, {high}]"
                )
        per_triplet = self._per_triplet(embeddings[a_idx], embeddings[p_idx], embeddings[n_idx])
        return _reduce(per_triplet, self.reduction)

    def _per_triplet(self, anchor: Tensor, positive: Tensor, negative: Tensor) -> Tensor:
        """Per-triplet losses ``(N,)`` of validated ``(N, D)`` inputs."""
        d_ap = _dissimilarity(self.distance, anchor, positive)
        d_an = _dissimilarity(self.distance, anchor, negative)
        if self.swap:
            d_an = torch.minimum(d_an, _dissimilarity(self.distance, positive, negative))
        return F.relu(d_ap - d_an + self.margin)

    def extra_repr(self) -> str:
        return (
            f"margin={self.margin}, distance={self.distance_name!r}, swap={self.swap}, "
            f"reduction={self.reduction!r}"
        )


class PairBCELoss(nn.Module):
    """Binary cross-entropy for a pair head that outputs **logits**.

    The pair head scores a pair with an unbounded logit ``z``;
    ``torch.sigmoid(z)`` is P(same). The loss is
    ``−w·y·log σ(z) − (1 − y)·log(1 − σ(z))`` with ``y = 1`` for "same" and
    ``w = pos_weight`` (1 when None), computed by
    :func:`torch.nn.functional.binary_cross_entropy_with_logits`, which is
    numerically stable for large ``|z|`` (do not apply ``sigmoid`` first).

    Args:
        pos_weight: Weight ``w`` of the "same" class, e.g.
            ``n_different / n_same`` for unbalanced pairs; must be > 0, or None.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Raises:
        ValueError: If ``pos_weight`` is not a finite number > 0, or
            ``reduction`` is not one of its choices.
    """

    def __init__(self, pos_weight: float | None = None, *, reduction: Reduction = "mean") -> None:
        super().__init__()
        owner = type(self).__name__
        if pos_weight is not None and not (
            isinstance(pos_weight, (int, float))
            and not isinstance(pos_weight, bool)
            and math.isfinite(pos_weight)
            and pos_weight > 0
        ):
            raise ValueError(
                f"{owner}: pos_weight must be a finite number > 0 "
                f"(e.g. n_different / n_same) or None, got {pos_weight!r}"
            )
        _check_choice(owner, "reduction", reduction, get_args(Reduction))
        self.pos_weight = None if pos_weight is None else float(pos_weight)
        self.reduction = reduction

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Computes the loss of ``N`` pairs.

        Args:
            logits: Pair-head logits, shape ``(N,)`` or ``(N, 1)``.
            labels: Targets, shape ``(N,)`` or ``(N, 1)``: 1 = same, 0 =
                different (values in ``[0, 1]``, so smoothed labels work).

        Returns:
            A scalar tensor (nats), or shape ``(N,)`` for ``reduction="none"``;
            float32 for 16-bit logits. An empty batch gives 0, connected to the
            graph.

        Raises:
            ValueError: If the shapes do not match or a label is outside ``[0, 1]``.
        """
        owner = type(self).__name__
        logits = _flatten_column(owner, "logits", logits, None)
        labels = _flatten_column(owner, "labels", labels, logits.shape[0])
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()
        target = labels.to(logits.dtype)
        if not bool(((target >= 0) & (target <= 1)).all()):
            raise ValueError(f"{owner}: labels must be in [0, 1] (1 = same, 0 = different)")
        weight = (
            None
            if self.pos_weight is None
            else torch.tensor(self.pos_weight, dtype=logits.dtype, device=logits.device)
        )
        losses = F.binary_cross_entropy_with_logits(
            logits, target, pos_weight=weight, reduction="none"
        )
        return _reduce(losses, self.reduction)

    def extra_repr(self) -> str:
        return f"pos_weight={self.pos_weight}, reduction={self.reduction!r}"


_LOSSES: dict[str, type[nn.Module]] = {
    "contrastive": ContrastiveLoss,
    "triplet": TripletMarginLoss,
    "bce": PairBCELoss,
}


def make_loss(name: LossName, **options: object) -> nn.Module:
    """Builds a loss from its name and constructor options.

    Args:
        name: ``"contrastive"`` (:class:`ContrastiveLoss`), ``"triplet"``
            (:class:`TripletMarginLoss`) or ``"bce"`` (:class:`PairBCELoss`).
        **options: Keyword arguments of that class's constructor.

    Returns:
        The loss module.

    Raises:
        ValueError: If ``name`` is unknown (the valid names are listed), an
            option is not accepted by that loss (the accepted ones are listed),
            or an option's value is invalid.
    """
    cls = _LOSSES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"unknown loss {name!r}; use one of: {', '.join(_LOSSES)}")
    signature = inspect.signature(cls)
    try:
        signature.bind(**options)
    except TypeError as exc:
        accepted = ", ".join(signature.parameters)
        raise ValueError(
            f"invalid options for loss {name!r} ({exc}); it accepts: {accepted}"
        ) from exc
    return cls(**options)
