"""N-way K-shot evaluation (Koch et al., 2015) on identity-labelled embeddings.

Each episode draws `ways` identities, `shots` support images of each and `queries` further
images of each as queries; every query is assigned to one of the drawn identities from the
supports alone, as a one-shot learner would. Accuracy is averaged over all queries of all
episodes, with a 95% confidence interval from the spread of per-episode accuracies.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from lookalike.metrics.distances import EMBEDDING_SCORES, DistanceName, Score, unit_rows

_CHUNK = 256  # episodes scored at once: bounds memory at chunk × ways × (shots+queries) × D


@dataclass(frozen=True)
class EpisodeReport:
    """The result of `n_way_k_shot`.

    Attributes:
        ways: Identities per episode (chance accuracy is 1 / ways).
        shots: Support images per identity.
        episodes: Number of episodes.
        accuracy: Fraction of queries assigned to their own identity.
        ci95: Half-width of the 95% confidence interval of `accuracy`
            (1.96 × sample std of per-episode accuracies / √episodes; NaN for one episode).
        queries_per_episode: Queries per episode (ways × queries per identity).
        metric: "cosine" or "euclidean".
    """

    ways: int
    shots: int
    episodes: int
    accuracy: float
    ci95: float
    queries_per_episode: int
    metric: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (a NaN ci95 becomes None)."""
        data = asdict(self)
        if not np.isfinite(self.ci95):
            data["ci95"] = None
        return data


def _sample(
    members: list[np.ndarray],
    eligible: np.ndarray,
    ways: int,
    per_class: int,
    episodes: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Image indices (episodes, ways, per_class), distinct identities and distinct images."""
    out = np.empty((episodes, ways, per_class), dtype=np.int64)
    for e in range(episodes):
        for w, c in enumerate(rng.choice(eligible, ways, replace=False)):
            out[e, w] = rng.choice(members[c], per_class, replace=False)
    return out


def _predict(support: np.ndarray, query: np.ndarray, metric: Score) -> np.ndarray:
    """Predicted way of each query (E, M) from support (E, W, S, D) and query (E, M, D)."""
    if metric == Score.COSINE:
        mean = support.mean(axis=2)
        proto = unit_rows(mean.reshape(-1, mean.shape[-1])).reshape(mean.shape)
        best: np.ndarray = np.einsum("emd,ewd->emw", query, proto).argmax(axis=-1)
        return best
    e, w, s, d = support.shape
    flat = support.reshape(e, w * s, d)
    squared = (
        np.einsum("emd,emd->em", query, query)[:, :, None]
        + np.einsum("end,end->en", flat, flat)[:, None, :]
        - 2 * np.einsum("emd,end->emn", query, flat)
    )
    distance = np.sqrt(np.maximum(squared, 0)).reshape(e, -1, w, s).mean(axis=-1)
    nearest: np.ndarray = distance.argmin(axis=-1)
    return nearest


def n_way_k_shot(
    embeddings: np.ndarray,
    labels: np.ndarray,
    *,
    ways: int = 5,
    shots: int = 1,
    queries: int = 1,
    episodes: int = 400,
    seed: int = 0,
    metric: Score | DistanceName = "cosine",
) -> EpisodeReport:
    """N-way K-shot accuracy of embeddings: can `shots` examples pick out the right identity?

    Only identities with at least shots + queries images take part; each episode draws
    `ways` of them, then for each `shots` support and `queries` query images, all distinct.
    With "cosine", embeddings are L2-normalised, each identity's prototype is the mean of its
    support embeddings (renormalised) and a query goes to the prototype with the highest cosine
    similarity (for one shot, the support image itself). With "euclidean", embeddings are used
    as given and a query goes to the identity whose supports are nearest on average (mean
    euclidean distance). Exact score ties go to the first-drawn identity.

    Args:
        embeddings: One embedding per image (N, D).
        labels: Identity of each image (N,), any hashable values.
        ways: Identities per episode, ≥ 2.
        shots: Support images per identity, ≥ 1.
        queries: Query images per identity, ≥ 1.
        episodes: Number of episodes, ≥ 1.
        seed: Seed for the episode draw; the same seed gives the same episodes.
        metric: "cosine" or "euclidean", as a string or a `Score`.

    Returns:
        Accuracy over all queries and its 95% confidence interval.

    Raises:
        ValueError: Bad shapes or settings, or fewer than `ways` identities with enough images.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    y = np.asarray(labels).ravel()
    if x.ndim != 2 or x.shape[0] != y.size:
        raise ValueError(f"need embeddings (N, D) and labels (N,), got {x.shape} and {y.shape}")
    if not np.isfinite(x).all():
        raise ValueError("embeddings must be finite; found NaN or infinity")
    score = Score.parse(metric, among=EMBEDDING_SCORES, what="metric")
    for name, value, least in (
        ("ways", ways, 2),
        ("shots", shots, 1),
        ("queries", queries, 1),
        ("episodes", episodes, 1),
    ):
        if value < least:
            raise ValueError(f"{name} must be at least {least}, got {value}")
    per_class = shots + queries
    classes, inverse, sizes = np.unique(y, return_inverse=True, return_counts=True)
    eligible = np.flatnonzero(sizes >= per_class)
    if eligible.size < ways:
        raise ValueError(
            f"{ways}-way episodes need {ways} identities with at least {per_class} images "
            f"({shots} shots + {queries} queries) each, but only {eligible.size} of "
            f"{classes.size} identities have that many: lower ways, shots or queries, or add images"
        )
    if score == Score.COSINE:
        x = unit_rows(x)
    members = np.split(np.argsort(inverse, kind="stable"), np.cumsum(sizes)[:-1])
    drawn = _sample(members, eligible, ways, per_class, episodes, np.random.default_rng(seed))
    truth = np.repeat(np.arange(ways), queries)  # queries are laid out way by way
    per_episode = np.empty(episodes)
    for start in range(0, episodes, _CHUNK):
        chunk = drawn[start : start + _CHUNK]
        support = x[chunk[:, :, :shots]]
        query = x[chunk[:, :, shots:]].reshape(len(chunk), ways * queries, -1)
        right = _predict(support, query, score) == truth
        per_episode[start : start + len(chunk)] = right.mean(axis=1)
    ci95 = 1.96 * per_episode.std(ddof=1) / np.sqrt(episodes) if episodes > 1 else float("nan")
    return EpisodeReport(
        ways=ways,
        shots=shots,
        episodes=episodes,
        accuracy=float(per_episode.mean()),
        ci95=float(ci95),
        queries_per_episode=ways * queries,
        metric=score.value,
    )
