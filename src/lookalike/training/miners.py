"""Online mining of pairs and triplets from a class-balanced batch.

A batch of ``B`` embeddings with identity labels holds ``B(B-1)/2`` pairs and
``O(B³)`` triplets for the price of ``B`` forward passes. The functions here
choose which of them to train on. Mining is separate from the loss: they return
**indices** into the batch, to hand to
:meth:`lookalike.training.losses.TripletMarginLoss.forward_mined` (triplets) or to
:class:`lookalike.training.losses.ContrastiveLoss` as ``loss(emb[i], emb[j], y)``
(pairs)::

    triplets = mine_triplets(emb, labels, strategy="semihard", margin=0.2)
    loss = TripletMarginLoss(margin=0.2).forward_mined(emb, triplets)

Conventions:

* Mining runs under :func:`torch.no_grad` and returns int64 index tensors on
  the embeddings' device (pair labels ``y`` are float32). A batch with nothing
  to mine gives empty tensors, never an error; the losses give 0 on them.
* Decisions use a **dissimilarity** ``d`` (larger = farther), the same one the
  losses use: the Euclidean distance, or ``1 − cos`` (in ``[0, 2]``) for
  ``distance="cosine"``. Margins are in units of ``d``. The ``(B, B)`` matrix is
  computed once with :meth:`lookalike.metrics.distances.Distance.matrix`; triplet
  ``(a, p, n)`` uses the anchor's row: ``d_ap = d[a, p]``, ``d_an = d[a, n]``.
* A **valid triplet** has ``labels[a] == labels[p]``, ``a != p`` and
  ``labels[n] != labels[a]``. Only anchors with at least one positive and one
  negative take part (a singleton identity is only ever a negative).

Triplet strategies (:func:`mine_triplets`):

=============== ============================================== =================
strategy        keeps                                          memory
=============== ============================================== =================
``all``         every valid triplet                            ``B³`` bytes
``all_active``  ``d_an <= d_ap + margin`` (loss > 0, or 0 at   ``B³`` bytes
                the boundary)
``semihard``    ``d_ap < d_an <= d_ap + margin``               ``B³`` bytes
``hard``        per anchor: farthest positive, closest         ``O(B²)``
                negative (batch-hard, Hermans et al. 2017)
``random``      per anchor: a uniformly random positive and    ``O(B²)``
                a uniformly random negative
=============== ============================================== =================

The first three build a ``(B, B, B)`` boolean cube (two at a time at peak):
512³ bytes = 134 MB for ``B = 512``; the returned indices cost 24 bytes per
triplet on top (``"all"`` keeps ``O(B³)`` of them).

Relation to pytorch-metric-learning (pml 2.9), checked in
``tests/test_miners.py`` (as sets of index tuples):

* ``"all_active"`` = pml ``TripletMarginMiner(margin, type_of_triplets="all")``,
  which despite its name keeps only ``d_an - d_ap <= margin`` (boundary
  triplets with zero loss included). ``"semihard"`` = pml
  ``type_of_triplets="semihard"`` (``0 < d_an - d_ap <= margin``). pml's
  ``type_of_triplets="hard"`` is **not** batch-hard: it keeps every triplet
  with ``d_an <= d_ap``. Ours compare ``d_an <= d_ap + margin`` where pml
  compares ``d_an - d_ap <= margin``; they can differ only by rounding exactly
  at the boundary.
* ``"hard"`` = pml ``BatchHardMiner``: same anchors (those with a positive and
  a negative), ties broken towards the lowest index in both.
* :func:`mine_pairs` ``"hard"`` = pml ``PairMarginMiner(pos_margin=0,
  neg_margin=margin)``, whose pairs come in both orders ``(i, j)`` and
  ``(j, i)``; ours are unordered (``i < j``).
* pml's ``LpDistance`` L2-normalises by default: compare ours with
  ``LpDistance(normalize_embeddings=False)``. With pml's ``CosineSimilarity``
  triplet margins are differences of similarities, which equal differences of
  ``1 − cos``, so the same ``margin`` selects the same triplets; pair margins
  are similarity *thresholds*: our ``margin=m`` is pml's
  ``PairMarginMiner(pos_margin=1, neg_margin=1 - m)``.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch
from torch import Tensor

from lookalike.metrics.distances import Distance, DistanceName, get_distance

__all__ = [
    "PairStrategy",
    "TripletStrategy",
    "all_pairs",
    "mine_pairs",
    "mine_triplets",
]

PairStrategy = Literal["all", "hard"]
"""The strategies :func:`mine_pairs` accepts."""

TripletStrategy = Literal["all", "all_active", "semihard", "hard", "random"]
"""The strategies :func:`mine_triplets` accepts."""


# --------------------------------------------------------------------------- helpers


def _check_labels(fn: str, labels: Tensor, batch: int | None) -> None:
    """Raises ValueError unless ``labels`` is a 1-D tensor (of ``batch`` entries)."""
    if not isinstance(labels, Tensor) or labels.ndim != 1:
        shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(
            f"{fn}: labels must be a 1-D tensor of shape (B,), got {shape}; "
            "flatten (B, 1) labels with labels.view(-1)"
        )
    if batch is not None and labels.shape[0] != batch:
        raise ValueError(
            f"{fn}: labels must have one entry per embedding, got {labels.shape[0]} "
            f"labels for {batch} embeddings"
        )


def _check_batch(fn: str, embeddings: Tensor, labels: Tensor) -> Tensor:
    """Validates a ``(B, D)`` batch and ``(B,)`` labels; returns the labels on its device."""
    if not isinstance(embeddings, Tensor) or embeddings.ndim != 2:
        shape = tuple(embeddings.shape) if isinstance(embeddings, Tensor) else None
        raise ValueError(
            f"{fn}: embeddings must be a tensor of shape (B, D), got "
            f"{shape if shape is not None else type(embeddings).__name__}"
        )
    _check_labels(fn, labels, embeddings.shape[0])
    return labels.to(embeddings.device)


def _check_margin(fn: str, margin: float, *, allow_zero: bool) -> float:
    """Returns ``margin`` as a float; ValueError unless finite and > 0 (or >= 0)."""
    ok = isinstance(margin, (int, float)) and not isinstance(margin, bool) and math.isfinite(margin)
    if ok:
        ok = margin >= 0 if allow_zero else margin > 0
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(
            f"{fn}: margin must be a finite number {bound} (in units of the dissimilarity: "
            f"Euclidean distance, or 1 - cos for cosine), got {margin!r}"
        )
    return float(margin)


def _check_strategy(fn: str, strategy: str, choices: tuple[str, ...]) -> None:
    """Raises ValueError naming the valid strategies unless ``strategy`` is one."""
    if not isinstance(strategy, str) or strategy not in choices:
        raise ValueError(
            f"{fn}: strategy must be one of {', '.join(map(repr, choices))}, got {strategy!r}"
        )


def _resolve_distance(fn: str, distance: DistanceName | Distance) -> Distance:
    """Returns ``distance`` as a :class:`Distance` object (built from its name)."""
    if isinstance(distance, Distance):
        return distance
    try:
        return get_distance(distance)
    except ValueError as exc:
        raise ValueError(f"{fn}: {exc}") from None


def _dissimilarity_matrix(distance: Distance, embeddings: Tensor) -> Tensor:
    """The ``(B, B)`` dissimilarity (larger = farther): the distance, or ``1 - cos``."""
    values = distance.matrix(embeddings, embeddings)
    if distance.higher_is_closer:
        dissimilarity: Tensor = 1.0 - values
        return dissimilarity
    return values


def _positive_negative_masks(labels: Tensor) -> tuple[Tensor, Tensor]:
    """Boolean ``(B, B)`` masks: ``pos[i, j]`` same label and ``i != j``; ``neg[i, j]`` not."""
    same = labels[:, None] == labels[None, :]
    positive = same.clone()
    positive.fill_diagonal_(False)
    return positive, ~same


def _random_column(mask: Tensor, generator: torch.Generator | None) -> Tensor:
    """Per row of a ``(B, B)`` mask, a uniformly random column where it is True.

    Rows without a True entry get an arbitrary column (callers drop them). The
    random numbers are drawn on the generator's device (the mask's without one)
    so that a CPU generator works for CUDA embeddings.
    """
    if generator is None:
        scores = torch.rand(mask.shape, device=mask.device)
    else:
        scores = torch.rand(mask.shape, generator=generator, device=generator.device)
        scores = scores.to(mask.device)
    return scores.masked_fill(~mask, -1.0).argmax(dim=1)


def _empty_like_indices(device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Three empty int64 tensors on ``device``."""
    empty = torch.empty(0, dtype=torch.int64, device=device)
    return empty, empty.clone(), empty.clone()


# --------------------------------------------------------------------------- pairs


def all_pairs(labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Every unordered pair of a batch, with its same/different label.

    Args:
        labels: Identity labels, shape ``(B,)`` (any dtype compared with ``==``).

    Returns:
        ``(i, j, y)``: int64 tensors ``i`` and ``j`` of shape ``(B(B-1)/2,)`` with
        ``i < j``, in row-major order, and float32 ``y`` of the same shape, 1 where
        ``labels[i] == labels[j]`` and 0 otherwise; all on ``labels``' device.

    Raises:
        ValueError: If ``labels`` is not a 1-D tensor.
    """
    _check_labels("all_pairs", labels, None)
    batch = labels.shape[0]
    i, j = torch.triu_indices(batch, batch, offset=1, device=labels.device)
    y = (labels[i] == labels[j]).to(torch.float32)
    return i, j, y


def mine_pairs(
    embeddings: Tensor,
    labels: Tensor,
    *,
    strategy: PairStrategy = "all",
    margin: float = 1.0,
    distance: DistanceName | Distance = "euclidean",
) -> tuple[Tensor, Tensor, Tensor]:
    """Mines unordered pairs ``i < j`` from a batch, for a contrastive loss.

    Strategies:

    * ``"all"``: every pair (:func:`all_pairs`); ``margin`` is not used.
    * ``"hard"``: the pairs a contrastive loss with ``pos_margin = 0`` and
      ``neg_margin = margin`` would still move: positives with ``d > 0`` (in
      practice every positive: under the Euclidean distance ``d >= sqrt(eps)``
      even for duplicates) and negatives with ``d < margin``. This is pml's
      ``PairMarginMiner(pos_margin=0, neg_margin=margin)``.

    Args:
        embeddings: The batch, shape ``(B, D)``.
        labels: Identity labels, shape ``(B,)``; moved to the embeddings' device.
        strategy: ``"all"`` or ``"hard"``.
        margin: Negatives closer than this are kept by ``"hard"``; in units of
            ``d`` (Euclidean distance, or ``1 - cos`` in ``[0, 2]``); > 0.
        distance: ``"euclidean"``, ``"cosine"`` or a
            :class:`~lookalike.metrics.distances.Distance` object.

    Returns:
        ``(i, j, y)``: int64 ``(P,)`` indices with ``i < j`` in row-major order
        and float32 ``(P,)`` labels (1 = same identity, 0 = different), on the
        embeddings' device. Use them as ``ContrastiveLoss()(emb[i], emb[j], y)``.

    Raises:
        ValueError: If the shapes are wrong, ``strategy`` or ``distance`` is
            unknown, or ``margin`` is not a finite number > 0.
    """
    fn = "mine_pairs"
    labels = _check_batch(fn, embeddings, labels)
    _check_strategy(fn, strategy, get_args(PairStrategy))
    margin = _check_margin(fn, margin, allow_zero=False)
    dist = _resolve_distance(fn, distance)
    with torch.no_grad():
        i, j, y = all_pairs(labels)
        if strategy == "all":
            return i, j, y
        d = _dissimilarity_matrix(dist, embeddings)[i, j]
        keep = torch.where(y == 1, d > 0, d < margin)
        return i[keep], j[keep], y[keep]


# --------------------------------------------------------------------------- triplets


def mine_triplets(
    embeddings: Tensor,
    labels: Tensor,
    *,
    strategy: TripletStrategy = "all",
    margin: float = 0.2,
    distance: DistanceName | Distance = "euclidean",
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Mines ``(anchor, positive, negative)`` triplets from a batch.

    See the module docstring for the strategies, their memory cost and their
    pml equivalents. In short, with ``d_ap = d[a, p]`` and ``d_an = d[a, n]``:
    ``"all"`` every valid triplet; ``"all_active"`` those with
    ``d_an <= d_ap + margin``; ``"semihard"`` those with
    ``d_ap < d_an <= d_ap + margin``; ``"hard"`` one per anchor, its farthest
    positive and closest negative (lowest index on ties); ``"random"`` one per
    anchor, a uniformly random positive and negative.

    Args:
        embeddings: The batch, shape ``(B, D)``.
        labels: Identity labels, shape ``(B,)``; moved to the embeddings' device.
        strategy: ``"all"``, ``"all_active"``, ``"semihard"``, ``"hard"`` or
            ``"random"``.
        margin: In units of ``d`` (Euclidean distance, or ``1 - cos`` in
            ``[0, 2]``); >= 0. Used by ``"all_active"`` and ``"semihard"``; use
            the loss's margin.
        distance: ``"euclidean"``, ``"cosine"`` or a
            :class:`~lookalike.metrics.distances.Distance` object.
        generator: Random source for ``"random"`` (the global one when None);
            a seeded generator makes it deterministic on a given device.

    Returns:
        ``(a, p, n)``: three int64 tensors of shape ``(T,)`` on the embeddings'
        device; lexicographically sorted for the cube strategies, one per
        eligible anchor in increasing anchor order for ``"hard"`` and
        ``"random"``. All three are empty when the batch has no valid triplet
        (a single identity, or all identities distinct).

    Raises:
        ValueError: If the shapes are wrong, ``strategy`` or ``distance`` is
            unknown, or ``margin`` is not a finite number >= 0.
    """
    fn = "mine_triplets"
    labels = _check_batch(fn, embeddings, labels)
    _check_strategy(fn, strategy, get_args(TripletStrategy))
    margin = _check_margin(fn, margin, allow_zero=True)
    dist = _resolve_distance(fn, distance)
    device = embeddings.device
    with torch.no_grad():
        positive, negative = _positive_negative_masks(labels)
        if strategy in ("hard", "random"):
            anchors = torch.nonzero(positive.any(dim=1) & negative.any(dim=1)).squeeze(1)
            if anchors.numel() == 0:
                return _empty_like_indices(device)
            if strategy == "random":
                p = _random_column(positive, generator)[anchors]
                n = _random_column(negative, generator)[anchors]
                return anchors, p, n
            d = _dissimilarity_matrix(dist, embeddings)[anchors]
            p = d.masked_fill(~positive[anchors], -math.inf).argmax(dim=1)
            n = d.masked_fill(~negative[anchors], math.inf).argmin(dim=1)
            return anchors, p, n

        cube = positive[:, :, None] & negative[:, None, :]  # (B, B, B): [a, p, n]
        if strategy != "all" and bool(cube.any()):
            d = _dissimilarity_matrix(dist, embeddings)
            d_an = d[:, None, :]  # (B, 1, B)
            cube &= d_an <= (d + margin)[:, :, None]
            if strategy == "semihard":
                cube &= d_an > d[:, :, None]
        a, p, n = torch.nonzero(cube, as_tuple=True)
        return a, p, n
