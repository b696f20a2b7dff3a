"""Inference engines: ONNX Runtime and torch agree, exports are cached, warm CPU runs skip torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from lookalike.errors import LookalikeError, ModelFolderError
from lookalike.imaging.preprocess import Preprocess
from lookalike.inference import (
    Embedder,
    NumpyPairHead,
    OnnxEmbedder,
    TorchEmbedder,
    export,
    load_embedder,
    select,
)
from lookalike.inference.source import ModelSource
from lookalike.model.backbones import get_spec
from lookalike.model.card import ModelCard
from lookalike.model.folder import read_card, tensors_sha256
from lookalike.model.layers import PairHead
from lookalike.model.network import SiameseModel
from lookalike.samples import sample_paths

SAMPLES = sample_paths()
COSINE_TOL = 1e-4  # torch and ONNX Runtime embeddings: per-row cosine ≥ 1 − 1e-4


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def digit_images(n: int, seed: int = 0) -> list[np.ndarray]:
    """Small grayscale images with structure (blobs), as uint8 arrays."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:28, :28]
    images = []
    for _ in range(n):
        cy, cx, r = rng.uniform(8, 20), rng.uniform(8, 20), rng.uniform(3, 9)
        blob = ((yy - cy) ** 2 + (xx - cx) ** 2 < r**2) * 200 + rng.integers(0, 40, (28, 28))
        images.append(blob.astype(np.uint8))
    return images


@pytest.fixture()
def head_model() -> SiameseModel:
    """small_cnn with a projection and a pair head, random weights (seeded)."""
    torch.manual_seed(0)
    model = SiameseModel.create("small_cnn", pretrained=False, projection=(64, 32), head=True)
    with torch.no_grad():  # a head whose probabilities spread over (0, 1)
        for name, p in model.head.named_parameters():  # type: ignore[union-attr]
            p.mul_(4.0) if name.endswith("weight") else p.zero_()
    return model


class CountingExport:
    """Wraps export.export_model to count calls."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        self.real = export.export_model
        monkeypatch.setattr(export, "export_model", self)

    def __call__(self, *args: Any, **kwargs: Any) -> bytes:
        self.calls += 1
        return self.real(*args, **kwargs)


# -- the protocol and the torch-free table -------------------------------------------------------


def test_every_engine_and_siamese_model_is_an_embedder(head_model: SiameseModel) -> None:
    assert isinstance(head_model, Embedder)
    assert isinstance(TorchEmbedder(head_model), Embedder)
    assert isinstance(OnnxEmbedder.from_model(head_model, cache=False), Embedder)


def test_numpy_pair_head_matches_torch_including_extreme_logits() -> None:
    torch.manual_seed(1)
    head = PairHead(16).eval()
    with torch.no_grad():
        head.layers[-1].bias.fill_(0.0)
    a, b = torch.randn(50, 16) * 30, torch.randn(50, 16)  # logits far into both tails
    state = {k: v.numpy() for k, v in head.state_dict().items()}
    ours = NumpyPairHead.from_state(state, prefix="layers.")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow in exp
        got = ours.probability(a.numpy(), b.numpy())
    want = head.probability(a, b).detach().numpy()
    assert got.dtype == np.float32 and got.shape == (50,)
    np.testing.assert_allclose(got, want, atol=1e-5)


# -- torch and ONNX Runtime agree --------------------------------------------------------------


def test_onnx_matches_torch_with_projection_and_head(head_model: SiameseModel) -> None:
    images = digit_images(10)
    onnx_engine = OnnxEmbedder.from_model(head_model)
    want = head_model.embed(images, batch_size=4)
    got = onnx_engine.embed(images, batch_size=3)  # batch sizes differ: dynamic batch axis
    assert got.shape == want.shape == (10, 32) and got.dtype == np.float32
    assert row_cosines(got, want).min() >= 1 - COSINE_TOL
    np.testing.assert_allclose(got, want, atol=1e-4)
    p_onnx = onnx_engine.pair_probability(got[:5], got[5:])
    p_torch = head_model.pair_probability(want[:5], want[5:])
    assert p_onnx is not None and p_torch is not None
    np.testing.assert_allclose(p_onnx, p_torch, atol=1e-4)
    rng = np.random.default_rng(0)  # pairs far apart too, so probabilities spread out
    ea, eb = (rng.standard_normal((20, 32)).astype(np.float32) for _ in range(2))
    p_onnx, p_torch = onnx_engine.pair_probability(ea, eb), head_model.pair_probability(ea, eb)
    assert p_onnx is not None and p_torch is not None
    np.testing.assert_allclose(p_onnx, p_torch, atol=1e-4)
    assert np.ptp(p_torch) > 0.2  # the check above compares something


def test_default_model_onnx_cache_and_torch_free_cold_path(
    default_model: SiameseModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch_engine = TorchEmbedder(default_model)
    counter = CountingExport(monkeypatch)
    engine = load_embedder(device="cpu")  # cache empty: builds, exports, caches
    assert isinstance(engine, OnnxEmbedder) and counter.calls == 1
    spec = get_spec("mobilenet_v2")
    assert spec.pretrained_sha256 is not None
    card = ModelCard.pretrained_backbone(
        "mobilenet_v2",
        feature_dim=spec.feature_dim,
        weights_sha256=spec.pretrained_sha256,
        preprocess=spec.preprocess,
    )
    cached = export.cache_path(card.key())
    assert engine.key is not None and cached == export.cache_path(engine.key) and cached.is_file()
    photos = [SAMPLES["chelsea"], SAMPLES["chelsea_edited"], SAMPLES["coffee"]]
    want, got = torch_engine.embed(photos), engine.embed(photos)
    assert got.shape == (3, 1280)
    assert row_cosines(got, want).min() >= 1 - COSINE_TOL
    torch_cos = float(want[0] @ want[1])

    script = (
        "import json, sys\n"
        "from lookalike.cli import main\n"
        "code = main(['compare', sys.argv[1], sys.argv[2], '--json', '--device', 'cpu'])\n"
        "print(json.dumps({'code': code, 'torch': 'torch' in sys.modules}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(photos[0]), str(photos[1])],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )
    assert proc.returncode == 0, proc.stderr
    result, status = (json.loads(line) for line in proc.stdout.strip().splitlines())
    assert status == {"code": 0, "torch": False}
    assert result["cosine"] == pytest.approx(torch_cos, abs=COSINE_TOL)
    assert result["probability"] is None


# -- model folders: round trip, cache, corruption -------------------------------------------------


def test_folder_round_trips_through_onnx_and_the_cache(
    head_model: SiameseModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    head_model.thresholds = {"cosine": 0.5, "probability": 0.6}
    folder = tmp_path / "model"
    head_model.save(folder)
    counter = CountingExport(monkeypatch)
    images = digit_images(6, seed=3)

    first = load_embedder(folder, engine="onnx")
    assert isinstance(first, OnnxEmbedder) and counter.calls == 1
    assert first.thresholds == head_model.thresholds and first.embedding_dim == 32
    want = head_model.embed(images)
    got = first.embed(images)
    assert row_cosines(got, want).min() >= 1 - COSINE_TOL
    p = first.pair_probability(got[:3], got[3:])
    assert p is not None
    np.testing.assert_allclose(p, head_model.pair_probability(want[:3], want[3:]), atol=1e-4)

    cached = first.path
    assert cached is not None and cached.parent == export.cache_dir() / "onnx"
    stamp = cached.stat().st_mtime_ns

    def no_torch_build(*args: Any, **kwargs: Any) -> SiameseModel:
        raise AssertionError("a warm cache must not build the torch model")

    with monkeypatch.context() as patch:
        patch.setattr(select, "build_model", no_torch_build)
        second = load_embedder(folder, engine="auto", device="cpu")
    assert isinstance(second, OnnxEmbedder) and counter.calls == 1
    assert cached.stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(second.embed(images), got)
    p2 = second.pair_probability(got[:3], got[3:])
    assert p2 is not None
    np.testing.assert_array_equal(p2, p)

    for damage in (b"not an onnx file", cached.read_bytes()[: cached.stat().st_size // 2]):
        cached.write_bytes(damage)
        repaired = load_embedder(folder, engine="onnx")
        np.testing.assert_allclose(repaired.embed(images), got, atol=1e-6)
    assert counter.calls == 3
    assert cached.stat().st_size > 1000
    assert not [p for p in cached.parent.iterdir() if p.name.startswith(".")]  # no temp files


def test_folder_key_follows_the_weights_not_the_thresholds(
    head_model: SiameseModel, tmp_path: Path
) -> None:
    folder = tmp_path / "m"
    head_model.save(folder)
    card, tensors = read_card(folder), tensors_sha256(folder)
    key = card.key(tensors)
    assert replace(card, thresholds={"cosine": 0.1}).key(tensors) == key
    assert card.with_input_size(32).key(tensors) != key
    with torch.no_grad():
        next(head_model.parameters()).add_(0.01)
    head_model.save(folder)
    assert read_card(folder).key(tensors_sha256(folder)) != key


class TinyNet(nn.Module):
    """A user's own backbone: (N, 1, 28, 28) → (N, 8, 7, 7)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, stride=4, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = torch.relu(self.conv(x))
        return out


def test_custom_backbone_folder_exports_with_the_module_and_runs_cached_without(
    tmp_path: Path,
) -> None:
    torch.manual_seed(0)
    pre = Preprocess(input_size=(28, 28), mean=(0.5,), std=(0.5,), channels=1)
    model = SiameseModel.from_module(TinyNet(), pre)
    folder = tmp_path / "custom"
    model.save(folder)
    with pytest.raises(ModelFolderError, match="custom backbone"):
        load_embedder(folder, engine="onnx")  # cold cache, no module: needs torch and the class
    module = TinyNet()
    engine = load_embedder(folder, engine="onnx", module=module)
    images = digit_images(4)
    want = model.embed(images)
    assert row_cosines(engine.embed(images), want).min() >= 1 - COSINE_TOL
    warm = load_embedder(folder, device="cpu")  # no module: the cached export is enough
    assert isinstance(warm, OnnxEmbedder)
    assert row_cosines(warm.embed(images), want).min() >= 1 - COSINE_TOL


def test_warm_folder_in_a_subprocess_never_imports_torch(
    head_model: SiameseModel, tmp_path: Path
) -> None:
    folder = tmp_path / "model"
    head_model.save(folder)
    load_embedder(folder, engine="onnx")  # populate the cache
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    for path, array in zip((a, b), digit_images(2, seed=5), strict=True):
        Image.fromarray(array).save(path)
    script = (
        "import json, sys\n"
        "from lookalike.inference import load_embedder\n"
        "e = load_embedder(sys.argv[1], device='cpu')\n"
        "emb = e.embed(sys.argv[2:])\n"
        "p = e.pair_probability(emb[:1], emb[1:])\n"
        "print(json.dumps({'engine': e.engine, 'emb': emb.tolist(), 'p': p.tolist(),\n"
        "                  'torch': 'torch' in sys.modules}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(folder), str(a), str(b)],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["engine"] == "onnx" and out["torch"] is False
    want = head_model.embed([a, b])
    got = np.asarray(out["emb"], dtype=np.float32)
    assert row_cosines(got, want).min() >= 1 - COSINE_TOL
    p_torch = head_model.pair_probability(want[:1], want[1:])
    assert p_torch is not None
    assert out["p"][0] == pytest.approx(float(p_torch[0]), abs=1e-4)


# -- choosing the engine ----------------------------------------------------------------------


def test_engine_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    random_model = load_embedder(ModelSource(backbone="small_cnn"), device="cpu")
    assert isinstance(random_model, TorchEmbedder)  # random weights: nothing to cache
    assert isinstance(load_embedder(ModelSource(backbone="small_cnn"), engine="onnx"), OnnxEmbedder)
    assert not list((export.cache_dir() / "onnx").glob("*.onnx"))  # uncached export
    with pytest.raises(LookalikeError, match="ONNX engine runs on CPU"):
        load_embedder(ModelSource(backbone="small_cnn"), engine="onnx", device="cuda")
    with pytest.raises(LookalikeError, match="engine must be one of"):
        load_embedder(ModelSource(backbone="small_cnn"), engine="tensorrt")
    with pytest.raises(LookalikeError, match="threads"):
        load_embedder(ModelSource(backbone="small_cnn"), threads=0)
    with pytest.raises(LookalikeError, match="not both"):
        ModelSource(folder="somewhere", backbone="small_cnn")

    monkeypatch.setattr(select, "_onnxruntime_installed", lambda: False)
    with pytest.warns(RuntimeWarning, match=r"pip install lookalike\[onnx\]"):
        fallback = load_embedder(ModelSource(backbone="small_cnn"), engine="onnx")
    assert isinstance(fallback, TorchEmbedder)
    monkeypatch.undo()

    monkeypatch.setattr(select, "_gpu_hint", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select.choose_engine("auto", "auto") == "onnx"  # a GPU node without CUDA torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select.choose_engine("auto", "auto") == "torch"
    assert select.choose_engine("auto", "cpu") == "onnx"


def test_export_failure_falls_back_to_torch_under_auto_only(
    head_model: SiameseModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "model"
    head_model.save(folder)

    def broken(*args: Any, **kwargs: Any) -> bytes:
        raise export.ExportError("cannot export the model to ONNX: unsupported operator")

    monkeypatch.setattr(export, "export_model", broken)
    with pytest.warns(RuntimeWarning, match="running in torch instead"):
        engine = load_embedder(folder, device="cpu")
    assert isinstance(engine, TorchEmbedder) and engine.thresholds == head_model.thresholds
    with pytest.raises(export.ExportError):
        load_embedder(folder, engine="onnx")


def test_write_atomic_leaves_nothing_behind_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "onnx" / "k.onnx"
    export.write_atomic(target, b"old")

    def killed(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", killed)
    with pytest.raises(KeyboardInterrupt):
        export.write_atomic(target, b"new contents")
    assert target.read_bytes() == b"old"
    assert [p.name for p in target.parent.iterdir()] == ["k.onnx"]


def test_an_unwritable_cache_costs_speed_not_the_result(
    head_model: SiameseModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    def read_only(path: Path, data: bytes) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(export, "write_atomic", read_only)
    with pytest.warns(RuntimeWarning, match="cannot cache the ONNX export"):
        engine = OnnxEmbedder.from_model(head_model)
    assert engine.path is None
    images = digit_images(3)
    assert row_cosines(engine.embed(images), head_model.embed(images)).min() >= 1 - COSINE_TOL
