"""``lookalike export`` (ONNX, int8) and ``--engine onnx-int8`` through the real command line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lookalike.cli import main
from lookalike.inference import quantize as Q
from lookalike.inference.export import read_metadata
from lookalike.inference.select import load_embedder
from server_helpers import glyph, small_model_dir

LENIENT = ["--min-cosine", "0.5", "--max-recall-drop", "100"]
N_IMAGES = 40  # → 13 held out (a third), 27 calibrated on


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 grayscale glyph images: 20 glyphs and a noisy copy of each."""
    root = tmp_path_factory.mktemp("glyphs")
    for i in range(N_IMAGES // 2):
        Image.fromarray(glyph(i)).save(root / f"g{i:02d}.png")
        Image.fromarray(glyph(i, noise_seed=i)).save(root / f"g{i:02d}_copy.png")
    return root


@pytest.fixture()
def model(tmp_path: Path) -> Path:
    folder: Path = small_model_dir(tmp_path)
    return folder


def _int8(model: Path, out: Path, folder: Path, *extra: str) -> int:
    args = ["export", str(model), "--onnx", str(out), "--int8", "--calibration", str(folder)]
    code: int = main([*args, *extra])
    return code


def test_export_onnx_command(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m.onnx"
    assert main(["export", str(model), "--onnx", str(out)]) == 0
    assert f"ONNX (float32) -> {out}" in capsys.readouterr().out
    meta = read_metadata(out)
    assert meta["lookalike.key"] == load_embedder(model, engine="onnx").key
    assert json.loads(meta["lookalike.preprocess"])["input_size"] == [28, 28]


def test_int8_prints_agreement_with_sample_sizes_and_records_it(
    model: Path, folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "q.onnx"
    assert _int8(model, out, folder, *LENIENT) == 0
    text = capsys.readouterr().out
    assert "int8 vs float32 on 13 held-out images (calibrated on 27 others)" in text
    assert "cosine: mean" in text and "worst" in text and "recall@10" in text
    record = json.loads(read_metadata(out)["lookalike.quantization"])
    agreement = record["agreement"]
    assert agreement["images"] == 13 and agreement["calibration_images"] == 27
    assert agreement["passed"] is True and record["format"] == "qdq"
    assert 0.5 <= agreement["mean_cosine"] <= 1.0
    # The int8 file runs and really is quantised: int8 weights, fewer bytes than float32.
    import onnx

    proto = onnx.load(str(out))
    assert any(init.data_type == onnx.TensorProto.INT8 for init in proto.graph.initializer)


def test_int8_below_the_floor_is_refused_unless_forced(
    model: Path, folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "q.onnx"
    strict = ["--min-cosine", "1.0", "--max-recall-drop", "0"]  # int8 never reaches cosine 1
    assert _int8(model, out, folder, *strict) == 2
    captured = capsys.readouterr()
    assert "held-out images" in captured.out and "FAILS" in captured.out
    assert captured.err.count("\n") == 1 and "not written" in captured.err
    assert not out.exists()
    assert Q.find_cached(str(load_embedder(model, engine="onnx").key)) == (None, None)

    assert _int8(model, out, folder, *strict, "--force") == 0
    assert "forced below the floor" in capsys.readouterr().out
    agreement = json.loads(read_metadata(out)["lookalike.quantization"])["agreement"]
    assert agreement["passed"] is False
    # A forced model is never picked up by the engine.
    assert (
        main(
            [
                "embed",
                str(folder),
                "--out",
                str(tmp_path / "e.npz"),
                "--model",
                str(model),
                "--engine",
                "onnx-int8",
            ]
        )
        == 2
    )
    assert "lookalike export --int8" in capsys.readouterr().err


def test_engine_onnx_int8_end_to_end(
    model: Path, folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Float32 index first: int8 queries search it (same model, same vector space).
    index = tmp_path / "idx"
    use = ["--model", str(model)]
    assert main(["index", str(folder), "--index", str(index), *use, "--engine", "onnx"]) == 0
    assert _int8(model, tmp_path / "q.onnx", folder, *LENIENT) == 0
    capsys.readouterr()

    int8 = ["--engine", "onnx-int8"]
    assert main(["embed", str(folder), "--out", str(tmp_path / "q.npz"), *use, *int8]) == 0
    assert (
        main(["embed", str(folder), "--out", str(tmp_path / "f.npz"), *use, "--engine", "onnx"])
        == 0
    )
    q, f = np.load(tmp_path / "q.npz"), np.load(tmp_path / "f.npz")
    cos = np.sum(q["embeddings"] * f["embeddings"], axis=1)
    assert q["embeddings"].shape == f["embeddings"].shape and cos.mean() > 0.5
    assert not np.array_equal(q["embeddings"], f["embeddings"])  # really another engine

    capsys.readouterr()
    query = str(folder / "g03.png")
    assert main(["search", query, "--index", str(index), "-k", "3", "--json", *int8]) == 0
    hits = json.loads(capsys.readouterr().out)["results"][0]["hits"]
    assert hits[0]["path"] == "g03.png"

    assert main(["index", str(folder), "--index", str(tmp_path / "idx8"), *use, *int8]) == 0
    assert main(["dedup", str(folder), *use, *int8, "--threshold", "0.9999", "--json"]) == 0


def test_engine_onnx_int8_needs_an_export_or_a_calibration_folder(
    model: Path, folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    embed = ["embed", str(folder), "--out", str(tmp_path / "e.npz"), "--model", str(model)]
    assert main([*embed, "--engine", "onnx-int8"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run `lookalike export --int8 --calibration DIR` first" in err
    # With a calibration folder it is built on first use (if it passes the default floor)
    # and cached: the next run finds it without the folder.
    code = main([*embed, "--engine", "onnx-int8", "--calibration", str(folder)])
    key = str(load_embedder(model, engine="onnx").key)
    cached, recorded = Q.find_cached(key)
    if code == 0:
        assert cached is not None and recorded == str(folder)
        assert main([*embed, "--engine", "onnx-int8"]) == 0
    else:
        assert "fails its agreement check" in capsys.readouterr().err and cached is None


def test_nothing_to_export_and_int8_without_calibration(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", str(model)]) == 2
    assert main(["export", str(model), "--onnx", str(tmp_path / "q.onnx"), "--int8"]) == 2
    assert "--calibration" in capsys.readouterr().err


def test_a_corrupt_cached_int8_model_is_quantised_again(
    model: Path, folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _int8(model, tmp_path / "q.onnx", folder, *LENIENT) == 0
    cached, _ = Q.find_cached(str(load_embedder(model, engine="onnx").key))
    assert cached is not None
    cached.write_bytes(b"not onnx")
    capsys.readouterr()
    embed = ["embed", str(folder), "--out", str(tmp_path / "e.npz"), "--model", str(model)]
    code = main([*embed, "--engine", "onnx-int8"])  # the recorded folder is quantised again
    err = capsys.readouterr().err
    assert code == 0 or (code == 2 and "fails its agreement check" in err)
    assert cached.read_bytes() != b"not onnx" or code == 2


def test_an_index_records_its_engines_and_says_when_int8_joins_float32(
    model: Path, folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lookalike.index.index import Index

    photos = tmp_path / "photos"
    shutil.copytree(folder, photos)
    index = tmp_path / "idx"
    use = ["index", str(photos), "--index", str(index), "--model", str(model)]
    assert main([*use, "--engine", "onnx"]) == 0
    assert "several engines" not in capsys.readouterr().err
    with Index.open(index) as opened:
        assert opened.engines == ["onnx"]
    assert _int8(model, tmp_path / "q.onnx", folder, *LENIENT) == 0
    assert main([*use, "--engine", "onnx-int8"]) == 0  # nothing new: nothing embedded
    assert "several engines" not in capsys.readouterr().err
    Image.fromarray(glyph(0, noise_seed=99)).save(photos / "new.png")
    assert main([*use, "--engine", "onnx-int8"]) == 0  # one new image, embedded in int8
    assert "several engines (onnx, onnx-int8)" in capsys.readouterr().err
    with Index.open(index) as opened:
        assert opened.engines == ["onnx", "onnx-int8"]
