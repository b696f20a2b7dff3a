"""Fuzzing config.json loading: random JSON values per field, and mutated valid configs, give
only a :class:`~lookalike.errors.ModelFolderError` or a valid, bounded card (issue 14)."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lookalike.errors import ModelFolderError
from lookalike.imaging.preprocess import Preprocess
from lookalike.model.card import (
    MAX_EMBEDDING_DIM,
    MAX_INPUT_SIDE,
    MAX_LAYERS,
    MAX_WIDTH,
    BackboneWeights,
    ModelCard,
    implied_tensors,
)
from lookalike.model.folder import read_card

VALID = ModelCard(
    backbone="small_cnn",
    feature_dim=128,
    embedding_dim=8,
    preprocess=Preprocess(input_size=(28, 28), mean=(0.5,), std=(0.5,), channels=1),
    pooling="gem",
    projection=(16, 8),
    head={"embedding_dim": 8, "hidden": [256, 64], "dropout": 0.25},
    backbone_weights=BackboneWeights(stored=True),
    thresholds={"cosine": 0.7},
    metrics={"roc_auc": 0.9},
).to_dict()

# Every place a value can be replaced: top-level fields and the nested records' fields.
PLACES: list[tuple[str, ...]] = [(k,) for k in VALID] + [
    (outer, inner) for outer in ("preprocess", "head", "backbone_weights") for inner in VALID[outer]
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([10**400, -(10**400), 2**53 + 1])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([0, 1, -1, 3, 28, 128, 16384, 16385, 2048, 2049, 10**9, 0.5, 1.0])
    | st.text(max_size=12)
    | st.sampled_from(["small_cnn", "custom", "timm:x", "gem", "flatten", "squash", "bicubic"]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=8,
)


def check_card(card: ModelCard) -> None:
    """What a card that loads must satisfy: every size bounded, the tensors computable."""
    assert 1 <= card.feature_dim <= MAX_WIDTH
    assert 1 <= card.embedding_dim <= MAX_EMBEDDING_DIM
    assert len(card.projection) <= MAX_LAYERS
    assert all(1 <= w <= MAX_WIDTH for w in card.projection)
    assert all(1 <= s <= MAX_INPUT_SIDE for s in card.preprocess.input_size)
    assert all(math.isfinite(v) for v in (*card.preprocess.mean, *card.preprocess.std))
    assert all(math.isfinite(v) for v in card.thresholds.values())
    if card.head is not None:
        assert card.head["embedding_dim"] == card.embedding_dim
        assert len(card.head["hidden"]) <= MAX_LAYERS
    for shape in implied_tensors(card).values():
        assert all(d == -1 or 1 <= d <= max(MAX_WIDTH, card.embedding_dim) for d in shape)
    assert ModelCard.from_dict(card.to_dict()) == card
    assert len(card.key("0" * 64)) == 64


def load(config: Any) -> None:
    try:
        card = ModelCard.from_dict(config)
    except ModelFolderError as exc:
        assert "\n" not in str(exc)
        return
    check_card(card)


def test_the_valid_config_is_valid() -> None:
    check_card(ModelCard.from_dict(VALID))


@settings(max_examples=400, deadline=1000, database=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(PLACES), st.one_of(json_values, st.just(KeyError))),
        min_size=1,
        max_size=3,
    )
)
def test_random_values_per_field(changes: list[tuple[tuple[str, ...], Any]]) -> None:
    config = copy.deepcopy(VALID)
    for place, value in changes:
        node = config
        for key in place[:-1]:
            node = node.get(key) if isinstance(node, dict) else None  # type: ignore[assignment]
        if not isinstance(node, dict):
            continue
        if value is KeyError:
            node.pop(place[-1], None)
        else:
            node[place[-1]] = value
    load(config)


@settings(max_examples=100, deadline=1000, database=None)
@given(json_values)
def test_any_json_document(document: Any) -> None:
    load(document)


@settings(
    max_examples=200,
    deadline=2000,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(
        st.tuples(st.integers(0, 10_000), st.sampled_from(["delete", "insert", "replace"])),
        min_size=1,
        max_size=4,
    ),
    st.text(alphabet='{}[]",:0123456789.-eEaflnrstu \\', min_size=1, max_size=3),
)
def test_mutated_config_text(tmp_path: Path, edits: list[tuple[int, str]], fragment: str) -> None:
    """Byte-level edits of a valid config.json, read the way `lookalike info` reads it."""
    text = json.dumps(VALID, indent=2)
    for at, kind in edits:
        at %= len(text) + 1
        if kind == "delete":
            text = text[:at] + text[at + len(fragment) :]
        elif kind == "insert":
            text = text[:at] + fragment + text[at:]
        else:
            text = text[:at] + fragment + text[at + len(fragment) :]
    folder = tmp_path / "m"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(text)
    try:
        card = read_card(folder)
    except ModelFolderError:
        return
    check_card(card)


@pytest.mark.parametrize("place", PLACES, ids=["/".join(p) for p in PLACES])
def test_removing_any_field_is_handled(place: tuple[str, ...]) -> None:
    config = copy.deepcopy(VALID)
    node = config
    for key in place[:-1]:
        node = node[key]
    if isinstance(node, dict):
        node.pop(place[-1])
    load(config)
