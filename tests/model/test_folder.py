from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lookalike.errors import ModelFolderError
from lookalike.imaging.preprocess import Preprocess
from lookalike.model.folder import describe
from lookalike.model.network import SiameseModel


def _images(n: int = 3, size: int = 28, channels: int = 1) -> np.ndarray:
    return np.random.default_rng(0).random((n, channels, size, size), dtype=np.float32)


def test_saved_folder_loads_to_identical_embeddings(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = SiameseModel.create("small_cnn", pooling="gem", projection=(32, 16), head=True)
    model.thresholds = {"cosine": 0.7}
    model.metrics = {"roc_auc": 0.9}
    model.save(tmp_path / "m")
    loaded = SiameseModel.load(tmp_path / "m")
    x = _images()
    np.testing.assert_array_equal(model.embed(x), loaded.embed(x))
    assert loaded.thresholds == {"cosine": 0.7} and loaded.metrics == {"roc_auc": 0.9}
    ea, eb = model.embed(x[:2]), model.embed(x[1:])
    np.testing.assert_array_equal(model.pair_probability(ea, eb), loaded.pair_probability(ea, eb))
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["provenance"]["torch_version"] == torch.__version__
    assert "lookalike_version" in config["provenance"]


def test_pretrained_backbone_by_reference(tmp_path: Path) -> None:
    model = SiameseModel.create("mobilenet_v2", input_size=64, head=True)
    model.save(tmp_path / "ref", include_backbone=False)
    model.save(tmp_path / "full")
    small = (tmp_path / "ref" / "model.safetensors").stat().st_size
    full = (tmp_path / "full" / "model.safetensors").stat().st_size
    assert small < full / 5
    loaded = SiameseModel.load(tmp_path / "ref")
    x = np.random.default_rng(1).random((2, 3, 64, 64), dtype=np.float32)
    np.testing.assert_allclose(model.embed(x), loaded.embed(x), atol=1e-6)
    info = describe(tmp_path / "ref")
    assert info["backbone_weights"]["stored"] is False
    assert info["backbone_weights"]["pretrained_sha256"].startswith("b0353104")


class MyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x))


def test_custom_module_round_trip_needs_the_module(tmp_path: Path) -> None:
    pre = Preprocess(input_size=(20, 20), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    model = SiameseModel.from_module(MyNet(), pre, projection=(4,))
    assert model.feature_dim == 8
    model.save(tmp_path / "c")
    with pytest.raises(ModelFolderError, match=r"MyNet.*module="):
        SiameseModel.load(tmp_path / "c")
    loaded = SiameseModel.load(tmp_path / "c", module=MyNet())
    x = _images(2, 20, 3)
    np.testing.assert_array_equal(model.embed(x), loaded.embed(x))
    assert loaded.preprocess == pre


def test_bad_folders_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelFolderError, match="no such directory"):
        SiameseModel.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFolderError, match=r"no config\.json"):
        SiameseModel.load(tmp_path / "empty")
    bad = tmp_path / "badjson"
    bad.mkdir()
    (bad / "config.json").write_text("{nope")
    with pytest.raises(ModelFolderError, match="not valid JSON"):
        SiameseModel.load(bad)
    model = SiameseModel.create("small_cnn")
    model.save(tmp_path / "ok")
    (tmp_path / "ok" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ModelFolderError, match="safetensors"):
        SiameseModel.load(tmp_path / "ok")
    (tmp_path / "ok" / "model.safetensors").unlink()
    with pytest.raises(ModelFolderError, match="incomplete"):
        SiameseModel.load(tmp_path / "ok")
