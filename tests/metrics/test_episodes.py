from __future__ import annotations

import json

import numpy as np
import pytest

from lookalike.metrics.episodes import EpisodeReport, n_way_k_shot


def _clusters(
    identities: int, per_identity: int, noise: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings around one orthogonal direction per identity, labels 0..identities−1."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(identities), per_identity)
    embeddings = np.eye(identities)[labels] + rng.normal(0, noise, (labels.size, identities))
    return embeddings, labels


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("shots", [1, 3])
def test_separable_clusters_are_always_right(metric: str, shots: int) -> None:
    embeddings, labels = _clusters(12, 6, noise=0.01)
    report = n_way_k_shot(
        embeddings, labels, ways=5, shots=shots, queries=2, episodes=300, metric=metric
    )  # type: ignore[arg-type]
    assert report.accuracy == 1.0 and report.ci95 == 0.0
    assert (report.ways, report.shots, report.episodes) == (5, shots, 300)
    assert report.queries_per_episode == 10 and report.metric == metric


@pytest.mark.parametrize("ways", [2, 5])
def test_random_embeddings_score_chance(ways: int) -> None:
    rng = np.random.default_rng(1)
    embeddings = rng.normal(size=(600, 32))
    labels = rng.integers(0, 60, 600)
    report = n_way_k_shot(embeddings, labels, ways=ways, episodes=2000, seed=3)
    assert abs(report.accuracy - 1 / ways) < 0.05
    # 95% half-width for 2000 episodes of `ways` Bernoulli(1/ways) queries.
    expected = 1.96 * np.sqrt((1 / ways) * (1 - 1 / ways) / ways) / np.sqrt(2000)
    assert report.ci95 == pytest.approx(expected, rel=0.15)


def test_cosine_ignores_norms_and_euclidean_does_not() -> None:
    # Two identities that differ only in length. Cosine sees identical directions: every query
    # ties and goes to the first-drawn identity, so exactly one of the two queries per episode
    # is right. Euclidean separates them perfectly.
    embeddings = np.array([[1.0, 0.0], [1.1, 0.0], [5.0, 0.0], [5.1, 0.0]])
    labels = np.array(["a", "a", "b", "b"])
    cosine = n_way_k_shot(embeddings, labels, ways=2, episodes=50)
    euclidean = n_way_k_shot(embeddings, labels, ways=2, episodes=50, metric="euclidean")
    assert cosine.accuracy == 0.5 and cosine.ci95 == 0.0
    assert euclidean.accuracy == 1.0


def test_euclidean_uses_the_mean_distance_to_the_supports() -> None:
    # 1-D embeddings. a = {−10, 10, 0}, b = {3, 3, 3.5}; 2 shots + 1 query use all three.
    # a's query 0: mean distance to a's supports (±10) is 10, to b's (two of 3, 3, 3.5) at
    # most 3.25 → b, wrong (the distance to a's *mean*, 0, would have been right).
    # a's query ±10: a's supports {∓10, 0} are 15 away on average, b's at most 13.5 → wrong.
    # b's query: at most 0.5 from b's supports on average, at least 5 from a's → right.
    # So exactly one of the two queries per episode is right, whatever the draw.
    embeddings = np.array([[-10.0], [10.0], [0.0], [3.0], [3.0], [3.5]])
    labels = np.array([0, 0, 0, 1, 1, 1])
    report = n_way_k_shot(
        embeddings, labels, ways=2, shots=2, queries=1, episodes=200, metric="euclidean"
    )
    assert report.accuracy == 0.5


def test_same_seed_same_result_and_seeds_differ() -> None:
    embeddings, labels = _clusters(20, 5, noise=0.8)
    first = n_way_k_shot(embeddings, labels, episodes=200, seed=7)
    assert n_way_k_shot(embeddings, labels, episodes=200, seed=7) == first
    assert n_way_k_shot(embeddings, labels, episodes=200, seed=8) != first
    assert 0.2 < first.accuracy < 1.0  # hard enough that the draw matters


def test_report_to_dict() -> None:
    embeddings, labels = _clusters(6, 3, noise=0.5)
    report = n_way_k_shot(embeddings, labels, ways=3, episodes=1)
    data = report.to_dict()
    assert data["ci95"] is None  # one episode: no spread to estimate
    assert json.loads(json.dumps(data, allow_nan=False)) == data
    assert EpisodeReport(**{**data, "ci95": 0.1}).ci95 == 0.1


def test_too_few_identities_says_how_many_qualify() -> None:
    # Four identities, but only three have the 1 shot + 2 queries = 3 images needed.
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3])
    embeddings = np.random.default_rng(0).normal(size=(labels.size, 4))
    with pytest.raises(ValueError) as info:
        n_way_k_shot(embeddings, labels, ways=4, shots=1, queries=2)
    message = str(info.value)
    assert "4-way episodes need 4 identities with at least 3 images" in message
    assert "only 3 of 4 identities" in message
    assert "1 shots + 2 queries" in message
    assert n_way_k_shot(embeddings, labels, ways=3, queries=2, episodes=5).ways == 3


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"ways": 1}, "ways must be at least 2"),
        ({"shots": 0}, "shots must be at least 1"),
        ({"queries": 0}, "queries must be at least 1"),
        ({"episodes": 0}, "episodes must be at least 1"),
        ({"metric": "manhattan"}, "metric must be"),
    ],
)
def test_bad_settings(settings: dict[str, object], match: str) -> None:
    embeddings, labels = _clusters(6, 3, noise=0.1)
    with pytest.raises(ValueError, match=match):
        n_way_k_shot(embeddings, labels, **settings)  # type: ignore[arg-type]


def test_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"need embeddings \(N, D\)"):
        n_way_k_shot(np.zeros((4, 2)), np.zeros(5))
    with pytest.raises(ValueError, match="finite"):
        n_way_k_shot(np.full((4, 2), np.nan), np.arange(4))
