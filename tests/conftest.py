"""Shared fixtures. Tests run offline: downloads are disabled for the whole session."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ["LOOKALIKE_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture(autouse=True)
def _isolated_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Give every test an empty lookalike cache so nothing leaks between tests or from the user."""
    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def default_model():  # type: ignore[no-untyped-def]
    """The default pretrained model (MobileNetV2), built once per session."""
    from lookalike.model.network import SiameseModel

    return SiameseModel.create()


@pytest.fixture(scope="session")
def photos() -> dict[str, np.ndarray]:
    """A handful of distinct scikit-image sample photos that ship offline, as RGB arrays."""
    from skimage import data

    def rgb(image: np.ndarray) -> np.ndarray:
        return np.stack([image] * 3, axis=-1) if image.ndim == 2 else image[..., :3]

    names = ["chelsea", "coffee", "astronaut", "rocket", "camera", "coins", "hubble_deep_field"]
    return {name: rgb(getattr(data, name)()) for name in names}


@pytest.fixture()
def sample_dir() -> Path:
    """The folder of bundled sample JPEGs."""
    from lookalike.samples import sample_paths

    return next(iter(sample_paths().values())).parent
