"""The pipelined loader: input order, bad files reported and skipped, bounded, overlapped, draft."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lookalike.errors import DataError, ImageError
from lookalike.imaging.images import ImageSource
from lookalike.imaging.preprocess import Preprocess
from lookalike.inference import TorchEmbedder
from lookalike.inference import pipeline as loader
from lookalike.inference.pipeline import embed_files, load_array
from lookalike.model.network import SiameseModel

DRAFT_COSINE = 0.99
"""Draft-mode JPEG decoding (DCT downscaling by a power of two before the bilinear resize)
changes pixels slightly; embeddings of a photo several times the input size stay at
cosine ≥ 0.99 of the fully decoded one (measured 0.997–0.9998 for MobileNetV2 at 224 px on
0.35–1.5 megapixel photos)."""


@pytest.fixture(scope="module")
def small_model() -> SiameseModel:
    torch.manual_seed(0)
    return SiameseModel.create("small_cnn", pretrained=False, projection=(16,))


@pytest.fixture()
def folder(tmp_path: Path, photos: dict[str, np.ndarray]) -> tuple[list[Path], set[int]]:
    """Nine photos (JPEG and PNG, small) with three bad entries among them."""
    paths: list[Path] = []
    bad: set[int] = set()
    names = list(photos)
    for i in range(12):
        if i == 3:
            path = tmp_path / "corrupt.jpg"
            path.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 3)
            bad.add(i)
        elif i == 7:
            path = tmp_path / "notes.png"
            path.write_text("this is not an image")
            bad.add(i)
        elif i == 10:
            path = tmp_path / "missing.jpg"
            bad.add(i)
        else:
            image = Image.fromarray(photos[names[i % len(names)]]).resize((64 + i, 48))
            path = tmp_path / f"photo{i:02d}.{'jpg' if i % 2 else 'png'}"
            image.save(path)
        paths.append(path)
    return paths, bad


def test_order_failures_and_equality_with_sequential_embedding(
    small_model: SiameseModel, folder: tuple[list[Path], set[int]]
) -> None:
    paths, bad = folder
    good = [i for i in range(len(paths)) if i not in bad]
    result = embed_files(small_model, paths, batch_size=4, workers=3, progress=False)
    assert result.indices == good
    assert result.paths == [str(paths[i]) for i in good]
    assert [p for p, _ in result.failures] == [str(paths[i]) for i in sorted(bad)]
    reasons = dict(result.failures)
    assert "not a recognised image format" in reasons[str(paths[7])]
    assert "corrupt" in reasons[str(paths[3])] and str(paths[3]) in reasons[str(paths[3])]
    assert "missing.jpg" in reasons[str(paths[10])]
    sequential = small_model.embed([paths[i] for i in good])
    assert result.embeddings.shape == (len(good), 16) and result.embeddings.dtype == np.float32
    np.testing.assert_allclose(result.embeddings, sequential, atol=1e-5)
    for batch_size, workers, prefetch in ((1, 1, 0), (3, 2, 1), (64, 8, 4)):
        again = embed_files(
            small_model,
            paths,
            batch_size=batch_size,
            workers=workers,
            prefetch=prefetch,
            progress=False,
        )
        assert again.indices == good
        np.testing.assert_allclose(again.embeddings, sequential, atol=1e-5)


def test_embed_files_uses_the_loader_and_keeps_its_contract(
    small_model: SiameseModel, folder: tuple[list[Path], set[int]]
) -> None:
    paths, bad = folder
    embedded = embed_files(TorchEmbedder(small_model), paths, batch_size=5)
    failed = dict(embedded.failures)
    assert embedded.paths == [str(p) for i, p in enumerate(paths) if i not in bad]
    assert sorted(failed) == sorted(str(paths[i]) for i in bad)
    assert embedded.embeddings.shape == (len(paths) - len(bad), 16)


def test_nothing_readable_and_nothing_at_all(small_model: SiameseModel, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_text("no")
    result = embed_files(small_model, [bad], progress=False)
    assert result.embeddings.shape == (0, 16) and result.paths == []
    assert len(result.failures) == 1
    assert embed_files(small_model, [], progress=False).embeddings.shape == (0, 16)
    with pytest.raises(ValueError, match="batch_size"):
        embed_files(small_model, [bad], batch_size=0)
    with pytest.raises(ValueError, match="workers"):
        embed_files(small_model, [bad], workers=0)


def test_no_progress_output_when_not_a_terminal(
    small_model: SiameseModel,
    folder: tuple[list[Path], set[int]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    embed_files(small_model, folder[0], progress=True)  # stderr is captured: not a TTY
    assert capsys.readouterr().err == ""


class SlowEmbedder:
    """An Embedder whose forward pass sleeps (like a model computing without the GIL)."""

    def __init__(self, seconds: float, started: list[int], lock: threading.Lock) -> None:
        self.preprocess = Preprocess(input_size=(8, 8))
        self.thresholds: dict[str, float] = {}
        self.embedding_dim = 2
        self.seconds = seconds
        self.started = started
        self.lock = lock
        self.embedded = 0
        self.worst_ahead = 0

    def embed(
        self, images: Sequence[ImageSource] | np.ndarray, *, batch_size: int = 32
    ) -> np.ndarray:
        assert isinstance(images, np.ndarray) and images.ndim == 4
        self.embedded += len(images)
        with self.lock:
            self.worst_ahead = max(self.worst_ahead, self.started[0] - self.embedded)
        time.sleep(self.seconds)
        return images[:, 0, 0, :2].astype(np.float32)

    def pair_probability(self, emb_a: np.ndarray, emb_b: np.ndarray) -> np.ndarray | None:
        return None


def test_decoding_overlaps_inference_and_memory_is_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started, lock = [0], threading.Lock()
    decode_s, embed_s, n, batch = 0.02, 0.15, 48, 8

    def slow_load(preprocess: Preprocess, path: str, *, draft: bool = True) -> np.ndarray:
        with lock:
            started[0] += 1
        time.sleep(decode_s)
        return np.full((3, 8, 8), float(path), dtype=np.float32)

    monkeypatch.setattr(loader, "load_array", slow_load)
    model = SlowEmbedder(embed_s, started, lock)
    start = time.perf_counter()
    result = embed_files(
        model,
        [str(i) for i in range(n)],
        batch_size=batch,
        workers=4,
        prefetch=1,
        progress=False,
    )
    elapsed = time.perf_counter() - start
    np.testing.assert_array_equal(result.embeddings[:, 0], np.arange(n))  # input order
    assert model.worst_ahead <= (1 + 1) * batch  # at most prefetch + 1 batches in flight
    sequential = n * decode_s + (n // batch) * embed_s  # 0.96 + 0.90 s
    assert elapsed < 0.8 * sequential, f"{elapsed:.2f} s vs {sequential:.2f} s sequential"


def test_draft_decoding_of_a_large_jpeg_stays_close(
    default_model: SiameseModel, photos: dict[str, np.ndarray], tmp_path: Path
) -> None:
    path = tmp_path / "big.jpg"
    Image.fromarray(photos["astronaut"]).resize((1400, 1050), Image.Resampling.BICUBIC).save(
        path, quality=90
    )
    pre = default_model.preprocess
    fast, full = load_array(pre, str(path), draft=True), load_array(pre, str(path), draft=False)
    assert fast.shape == full.shape == (3, 224, 224)
    assert np.abs(fast - full).max() > 0  # draft mode really changed the decode
    emb_fast = embed_files(default_model, [path], progress=False, draft=True).embeddings
    emb_full = embed_files(default_model, [path], progress=False, draft=False).embeddings
    assert float(emb_fast[0] @ emb_full[0]) >= DRAFT_COSINE


def test_load_array_raises_image_error(tmp_path: Path) -> None:
    bad = tmp_path / "x.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    with pytest.raises(ImageError, match=r"x\.png"):
        load_array(Preprocess(), str(bad), draft=False)


def test_iter_embed_files_yields_each_forward_pass_and_embed_files_joins_them(
    small_model: SiameseModel, folder: tuple[list[Path], set[int]]
) -> None:
    paths, bad = folder
    tail = paths[-1].with_name("tail.png")
    tail.write_text("not an image either")
    chunks = list(loader.iter_embed_files(small_model, [*paths, tail], batch_size=3))
    assert [len(c.paths) for c in chunks] == [3, 3, 3, 0]  # 9 readable files, then one bad
    assert all(len(c.embeddings) == len(c.paths) for c in chunks)
    assert chunks[-1].failures == [(str(tail), chunks[-1].failures[0][1])]
    whole = embed_files(small_model, [*paths, tail], batch_size=3)
    assert [i for c in chunks for i in c.indices] == whole.indices
    assert [f for c in chunks for f in c.failures] == whole.failures
    np.testing.assert_allclose(np.concatenate([c.embeddings for c in chunks]), whole.embeddings)
    assert len(whole.failures) == len(bad) + 1
    with pytest.raises(ValueError, match="prefetch"):
        loader.iter_embed_files(small_model, paths, prefetch=-1)  # checked before any work


def test_embedder_with_the_wrong_row_count_is_refused(tmp_path: Path) -> None:
    class TwoRows(SlowEmbedder):
        def embed(self, images: object, *, batch_size: int = 32) -> np.ndarray:
            return np.zeros((2, 2), np.float32)

    path = tmp_path / "one.png"
    Image.new("RGB", (8, 8)).save(path)
    model = TwoRows(0.0, [0], threading.Lock())
    with pytest.raises(ValueError, match="2 rows for 1 images"):
        embed_files(model, [path])


def test_save_embeddings_npz_and_bad_suffix(
    small_model: SiameseModel, folder: tuple[list[Path], set[int]], tmp_path: Path
) -> None:
    paths, bad = folder
    embedded = embed_files(small_model, paths, batch_size=5)
    out = loader.save_embeddings(tmp_path / "out" / "emb.npz", embedded)
    data = np.load(out)
    np.testing.assert_array_equal(data["embeddings"], embedded.embeddings)
    assert list(data["paths"]) == embedded.paths
    assert list(data["skipped"]) == sorted(str(paths[i]) for i in bad)
    with pytest.raises(DataError, match=r"\.npz or \.parquet"):
        loader.save_embeddings(tmp_path / "emb.csv", embedded)
