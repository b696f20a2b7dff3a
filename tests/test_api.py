"""The public face: every name ``lookalike`` promises resolves, lazily, to the owner's object."""

from __future__ import annotations

import importlib

import pytest

import lookalike


@pytest.mark.parametrize("name", sorted(lookalike.__all__))
def test_every_public_name_resolves(name: str) -> None:
    value = getattr(lookalike, name)
    assert value is not None
    owner = getattr(value, "__module__", "") or ""
    if owner.startswith("lookalike."):  # a class or function: the owner module exports it
        assert getattr(importlib.import_module(owner), name) is value


def test_the_curated_api_holds_every_everyday_command() -> None:
    for name in ("compare", "embed_files", "train_model", "train_head_on_pairs", "evaluate"):
        assert callable(getattr(lookalike, name))
    for name in ("Index", "find_duplicates", "explain", "ModelSource", "ModelCard"):
        assert name in lookalike.__all__
    with pytest.raises(AttributeError, match="no attribute"):
        _ = lookalike.embed_paths  # merged into embed_files
