"""Standalone ONNX export: plain ONNX Runtime runs it without lookalike, and it matches torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from lookalike.inference import export, standalone
from lookalike.inference.source import ModelSource
from lookalike.model.network import SiameseModel

# Run by a fresh interpreter in which lookalike cannot be imported (blocked before anything
# runs: the environment may have it installed): it reads the metadata, preprocesses with NumPy
# as the metadata says, runs both files and writes what it got.
PLAIN_ORT = r"""
import json, sys
sys.modules["lookalike"] = None  # any import of lookalike now fails
import numpy as np
import onnxruntime as ort

model_file, head_file, batch_file, out_file = sys.argv[1:5]
session = ort.InferenceSession(model_file, providers=["CPUExecutionProvider"])
meta = session.get_modelmeta().custom_metadata_map
batch = np.load(batch_file)
emb = session.run([meta["lookalike.output"]], {meta["lookalike.input"]: batch})[0]
result = {"meta": dict(meta), "emb": emb.tolist()}
if head_file != "-":
    head = ort.InferenceSession(head_file, providers=["CPUExecutionProvider"])
    result["p"] = head.run(["probability"], {"emb_a": emb[:-1], "emb_b": emb[1:]})[0].tolist()
    result["head_meta"] = dict(head.get_modelmeta().custom_metadata_map)
try:
    import lookalike  # noqa: F401
    result["lookalike_importable"] = True
except ImportError:
    result["lookalike_importable"] = False
json.dump(result, open(out_file, "w"))
"""


def _plain_ort(
    tmp: Path, model_file: Path, head_file: Path | None, batch: np.ndarray
) -> dict[str, Any]:
    """Run the exported files in a subprocess that cannot import lookalike (and checks so)."""
    script, batch_file, out_file = tmp / "run.py", tmp / "batch.npy", tmp / "out.json"
    script.write_text(PLAIN_ORT)
    np.save(batch_file, batch)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    args = [str(model_file), str(head_file or "-"), str(batch_file), str(out_file)]
    subprocess.run([sys.executable, str(script), *args], check=True, env=env, cwd=tmp, timeout=120)
    data: dict[str, Any] = json.loads(out_file.read_text())
    return data


@pytest.fixture()
def head_folder(tmp_path: Path) -> Path:
    """A small_cnn model folder with a projection, a pair head and a calibrated threshold."""
    torch.manual_seed(0)
    model = SiameseModel.create(
        "small_cnn", pretrained=False, projection=(64, 32), head=True, input_size=28
    )
    with torch.no_grad():  # a head whose probabilities spread over (0, 1)
        for name, p in model.head.named_parameters():  # type: ignore[union-attr]
            p.mul_(4.0) if name.endswith("weight") else p.zero_()
    model.thresholds = {"cosine": 0.75, "probability": 0.5}
    folder = tmp_path / "head-model"
    model.save(folder)
    return folder


def test_export_runs_in_plain_onnxruntime_and_matches_torch(
    head_folder: Path, tmp_path: Path
) -> None:
    out = standalone.export_onnx(ModelSource(folder=str(head_folder)), tmp_path / "m.onnx")
    head = export.head_path(out)
    assert out == tmp_path / "m.onnx" and head == tmp_path / "m.head.onnx" and head.is_file()

    model = SiameseModel.load(head_folder)
    rng = np.random.default_rng(1)
    shape = (model.preprocess.channels, *model.preprocess.input_size)
    batch = rng.standard_normal((5, *shape)).astype(np.float32)
    got = _plain_ort(tmp_path, out, head, batch)

    assert got["lookalike_importable"] is False
    emb = np.asarray(got["emb"], dtype=np.float32)
    expected = model.embed(batch, amp=False)
    np.testing.assert_allclose(emb, expected, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    with torch.no_grad():
        p = model.head.probability(  # type: ignore[union-attr]
            torch.from_numpy(expected[:-1]), torch.from_numpy(expected[1:])
        )
    np.testing.assert_allclose(np.asarray(got["p"]), p.numpy(), atol=1e-4)

    meta = got["meta"]
    assert meta["lookalike.format"] == export.STANDALONE_FORMAT
    assert meta["lookalike.embedding_dim"] == "32"
    assert meta["lookalike.normalized"] == "true"
    assert meta["lookalike.head"] == "m.head.onnx"
    assert json.loads(meta["lookalike.thresholds"]) == {"cosine": 0.75, "probability": 0.5}
    preprocess = json.loads(meta["lookalike.preprocess"])
    assert preprocess["input_size"] == [28, 28] and preprocess["channels"] == 1
    assert {"mean", "std", "resize", "interpolation"} <= set(preprocess)
    from lookalike.inference.select import load_embedder

    key = load_embedder(head_folder, engine="onnx").key
    assert key and meta["lookalike.key"] == key == got["head_meta"]["lookalike.key"]
    assert got["head_meta"]["lookalike.format"] == export.HEAD_FORMAT


def test_head_graph_equals_the_numpy_head() -> None:
    import onnxruntime as ort

    from lookalike.inference.onnx_engine import NumpyPairHead

    rng = np.random.default_rng(0)
    layers = [
        (rng.standard_normal((8, 6)).astype(np.float32), rng.standard_normal(8).astype(np.float32)),
        (rng.standard_normal((1, 8)).astype(np.float32), np.zeros(1, np.float32)),
    ]
    session = ort.InferenceSession(export.head_onnx(layers), providers=["CPUExecutionProvider"])
    a, b = rng.standard_normal((2, 7, 6)).astype(np.float32) * 3
    got = session.run(["probability"], {"emb_a": a, "emb_b": b})[0]
    assert got.shape == (7,)
    np.testing.assert_allclose(got, NumpyPairHead(layers).probability(a, b), atol=1e-6)
    with pytest.raises(ValueError, match="one output"):
        export.head_onnx(layers[:1])


def test_a_model_without_head_writes_one_file_and_removes_a_stale_head(tmp_path: Path) -> None:
    stale = tmp_path / "m.head.onnx"
    stale.write_bytes(b"old")
    out = standalone.export_onnx(
        ModelSource(backbone="small_cnn", image_size=28), tmp_path / "m.onnx"
    )
    assert out.is_file() and not stale.exists()
    meta = export.read_metadata(out)
    assert meta["lookalike.head"] == "" and meta["lookalike.thresholds"] == "{}"
    assert meta["lookalike.name"] == "small_cnn"


def test_warm_export_reuses_the_engine_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second export of a keyed model copies the cached graph: no torch export again."""
    folder = tmp_path / "saved"
    SiameseModel.create("small_cnn", pretrained=False, input_size=28).save(folder)
    first = standalone.export_onnx(folder, tmp_path / "a.onnx")
    calls: list[int] = []
    real = export.export_model

    def counting(*args: Any, **kwargs: Any) -> bytes:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(export, "export_model", counting)
    second = standalone.export_onnx(folder, tmp_path / "b.onnx")
    assert calls == [] and first.read_bytes() == second.read_bytes()


# -- int8: sampling, agreement figures -----------------------------------------------------------


def test_sampling_is_reproducible_and_never_checks_on_calibration_images(tmp_path: Path) -> None:
    from PIL import Image

    from lookalike.errors import DataError
    from lookalike.inference import quantize as Q

    for i in range(50):
        Image.new("L", (8, 8), i).save(tmp_path / f"{i:02d}.png")
    settings = Q.Int8Settings(count=20, held_out=15, seed=3)
    calibration, held_out = Q.sample_images(tmp_path, settings)
    assert (len(calibration), len(held_out)) == (20, 15)
    assert not set(calibration) & set(held_out)
    assert Q.sample_images(tmp_path, settings) == (calibration, held_out)
    other = Q.sample_images(tmp_path, Q.Int8Settings(count=20, held_out=15, seed=4))
    assert other != (calibration, held_out)
    # A third of a small folder is held out, at least MIN_HELD_OUT.
    assert len(Q.sample_images(tmp_path, Q.Int8Settings())[1]) == 16
    digest = Q.calibration_digest(calibration, settings)
    assert digest == Q.calibration_digest(calibration, settings)
    assert digest != Q.calibration_digest(calibration[1:], settings)
    assert digest != Q.calibration_digest(calibration, Q.Int8Settings(per_channel=False))
    for path in list(tmp_path.iterdir())[: 50 - Q.MIN_HELD_OUT]:
        path.unlink()
    with pytest.raises(DataError, match="needs at least"):
        Q.sample_images(tmp_path, settings)


def test_agreement_figures_against_a_brute_force_reference() -> None:
    from lookalike.inference import quantize as Q

    rng = np.random.default_rng(0)
    exact = rng.standard_normal((40, 16)).astype(np.float32)
    same = Q.measure_agreement(exact, exact.copy(), calibration_images=7)
    assert same.mean_cosine == pytest.approx(1.0) and same.worst_cosine == pytest.approx(1.0)
    assert same.recall_vs_float == same.recall_int8 == 1.0 and same.recall_drop == 0.0
    assert same.passed and same.calibration_images == 7 and same.images == 40

    noisy = exact + rng.standard_normal(exact.shape).astype(np.float32) * 0.8
    got = Q.measure_agreement(exact, noisy, calibration_images=7)
    unit = exact / np.linalg.norm(exact, axis=1, keepdims=True)
    unit_noisy = noisy / np.linalg.norm(noisy, axis=1, keepdims=True)
    cosines = np.sum(unit * unit_noisy, axis=1)
    assert got.mean_cosine == pytest.approx(cosines.mean(), abs=1e-6)
    assert got.worst_cosine == pytest.approx(cosines.min(), abs=1e-6)
    # Reference recall@10: the true neighbour (float32, self excluded) among the noisy top 10.
    hits_vs_float = hits_int8 = 0
    for i in range(40):
        truth = max((j for j in range(40) if j != i), key=lambda j: unit[i] @ unit[j])
        vs_float = sorted(
            (j for j in range(40) if j != i), key=lambda j: -(unit_noisy[i] @ unit[j])
        )
        int8 = sorted(
            (j for j in range(40) if j != i), key=lambda j: -(unit_noisy[i] @ unit_noisy[j])
        )
        hits_vs_float += truth in vs_float[:10]
        hits_int8 += truth in int8[:10]
    assert got.recall_vs_float == pytest.approx(hits_vs_float / 40)
    assert got.recall_int8 == pytest.approx(hits_int8 / 40)
    assert got.recall_drop == pytest.approx(100 * (1 - min(hits_vs_float, hits_int8) / 40))
    assert not got.passed  # far below the default floor
    assert Q.Agreement.from_dict(got.to_dict()) == got
    lenient = Q.measure_agreement(
        exact, noisy, calibration_images=7, floor=Q.Floor(min_mean_cosine=-1, max_recall_drop=100)
    )
    assert lenient.passed


def test_the_first_and_depthwise_convolutions_are_the_ones_kept_float() -> None:
    from onnx import TensorProto, helper, numpy_helper

    from lookalike.inference import quantize as Q

    def weight(name: str, shape: tuple[int, ...]) -> Any:
        return numpy_helper.from_array(np.ones(shape, np.float32), name)

    nodes = [
        helper.make_node("Conv", ["images", "w0"], ["a"], name="stem"),
        helper.make_node("Conv", ["a", "w1"], ["b"], name="depthwise", group=4),
        helper.make_node("Conv", ["b", "w2"], ["c"], name="pointwise"),
        helper.make_node("Conv", ["c", "w3"], ["embeddings"], name="grouped", group=2),
    ]
    inits = [
        weight("w0", (4, 3, 3, 3)),
        weight("w1", (4, 1, 3, 3)),
        weight("w2", (4, 4, 1, 1)),
        weight("w3", (4, 2, 1, 1)),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, None)],
        inits,
    )
    data = helper.make_model(graph).SerializeToString()
    assert Q.sensitive_nodes(data) == ["stem", "depthwise"]
