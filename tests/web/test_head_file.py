"""Head files: one safetensors file per pair head, refused by any other model.

Python's side of the round trip with the static page: a PairHead written from Python reads
back bit for bit, loads into both engines with the same P(same) as the model's own head,
and a head for another model (or a broken file) is one line on stderr and exit code 2.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from server_helpers import glyph, png_bytes, small_model_dir

if TYPE_CHECKING:
    from lookalike.model.layers import PairHead


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(small_model_dir(tmp_path_factory.mktemp("head-file")))


def _head(dim: int, seed: int = 0) -> PairHead:
    import torch

    from lookalike.model.layers import PairHead

    torch.manual_seed(seed)
    return PairHead(dim).eval()


def test_names_follow_the_pytorch_state_dict() -> None:
    from lookalike.model.head_file import linear_names

    head = _head(8)
    names = sorted({k.rsplit(".", 1)[0] for k in head.state_dict()})
    assert linear_names((256, 64), 0.25) == names == ["layers.0", "layers.3", "layers.5"]
    assert linear_names((256, 64), 0.0) == ["layers.0", "layers.2", "layers.4"]


def test_round_trip_is_exact(tmp_path: Path) -> None:
    from lookalike.model.head_file import HeadFile, read_head_file, write_head_file

    head = _head(16)
    key = "ab" * 32
    written = HeadFile.from_pair_head(head, model_key=key, threshold=0.3, metrics={"n": 4}, how="x")
    path = write_head_file(tmp_path / "h.safetensors", written)
    back = read_head_file(path)
    assert (back.model_key, back.threshold, back.metrics, back.how) == (key, 0.3, {"n": 4}, "x")
    assert back.config() == head.config()
    for name, tensor in head.state_dict().items():
        np.testing.assert_array_equal(back.tensors[name], tensor.numpy())
    rebuilt = back.pair_head()
    a, b = np.random.default_rng(0).standard_normal((2, 3, 16)).astype(np.float32)
    import torch

    with torch.no_grad():
        expected = head.probability(torch.from_numpy(a), torch.from_numpy(b))
        got = rebuilt.probability(torch.from_numpy(a), torch.from_numpy(b))
    np.testing.assert_array_equal(got.numpy(), expected.numpy())


def _with_metadata(data: bytes, **changes: str) -> bytes:
    """The same safetensors file with its metadata changed (offsets unchanged)."""
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + size])
    header["__metadata__"].update(changes)
    text = json.dumps(header).encode()
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + data[8 + size :]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: b"garbage", "not a safetensors file"),
        (lambda d: _with_metadata(d, format="other"), "not a lookalike head file"),
        (lambda d: _with_metadata(d, format_version="9"), "upgrade lookalike"),
        (lambda d: _with_metadata(d, head='{"embedding_dim": 16}'), "malformed metadata"),
        (
            lambda d: _with_metadata(
                d, head='{"embedding_dim": 15, "hidden": [256, 64], "dropout": 0.25}'
            ),
            "expected float32",
        ),
        (lambda d: _with_metadata(d, model_key="short"), "sha256"),
        (lambda d: _with_metadata(d, thresholds='{"probability": 1.5}'), "threshold"),
    ],
)
def test_bad_files_are_refused_with_a_reason(tmp_path: Path, mutate: object, message: str) -> None:
    from lookalike.errors import ModelFolderError
    from lookalike.model.head_file import HeadFile, read_head_file

    good = HeadFile.from_pair_head(_head(16), model_key="cd" * 32).to_bytes()
    path = tmp_path / "bad.safetensors"
    path.write_bytes(mutate(good))  # type: ignore[operator]
    with pytest.raises(ModelFolderError, match=message):
        read_head_file(path)


@pytest.mark.parametrize("engine", ["onnx", "torch"])
def test_attach_head_gives_the_model_heads_probability(
    model_dir: Path, tmp_path: Path, engine: str
) -> None:
    from lookalike.inference import compare, load_embedder
    from lookalike.inference.heads import attach_head
    from lookalike.model.head_file import HeadFile, write_head_file
    from lookalike.model.network import SiameseModel

    embedder = load_embedder(model_dir, engine=engine)
    assert (
        embedder.key is not None
        and embedder.pair_probability(
            np.zeros((1, 128), np.float32), np.zeros((1, 128), np.float32)
        )
        is None
    )
    head = _head(embedder.embedding_dim, seed=7)
    path = write_head_file(
        tmp_path / "h.safetensors",
        HeadFile.from_pair_head(head, model_key=embedder.key, threshold=0.25),
    )
    attach_head(embedder, path)
    a, b = png_bytes(glyph(1)), png_bytes(glyph(2))
    result = compare(a, b, embedder)
    # The reference: the same head inside the PyTorch model.
    reference = SiameseModel.load(model_dir)
    reference.head = head
    emb = reference.embed([a, b])
    expected = reference.pair_probability(emb[:1], emb[1:])
    assert expected is not None and result.probability is not None
    assert result.probability == pytest.approx(float(expected[0]), abs=1e-5)
    assert (result.metric, result.threshold) == ("probability", 0.25)


def test_cli_refuses_another_models_head(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lookalike.cli import main
    from lookalike.model.head_file import HeadFile, write_head_file

    path = write_head_file(
        tmp_path / "other.safetensors",
        HeadFile.from_pair_head(_head(128), model_key="ef" * 32),
    )
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_bytes(png_bytes(glyph(1)))
    b.write_bytes(png_bytes(glyph(2)))
    code = main(["compare", str(a), str(b), "--model", str(model_dir), "--head", str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "trained on the embeddings of model efefefefefef" in err
    (tmp_path / "broken.safetensors").write_bytes(b"\x00" * 3)
    broken = str(tmp_path / "broken.safetensors")
    code = main(["compare", str(a), str(b), "--model", str(model_dir), "--head", broken])
    assert code == 2 and "not a safetensors file" in capsys.readouterr().err


def test_serve_head_option(
    model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``lookalike serve --head FILE``: attached when the served model's key matches, else exit 2.

    The real app is built (``create_app`` is only observed); uvicorn's ``Server.run`` is a
    no-op, so the command returns instead of serving forever.
    """
    uvicorn = pytest.importorskip("uvicorn")
    import lookalike.server
    from lookalike.cli import main
    from lookalike.inference import load_embedder
    from lookalike.model.head_file import HeadFile, write_head_file

    served: list[Any] = []
    create_app = lookalike.server.create_app

    def observed(*args: Any, **kwargs: Any) -> Any:
        served.append(create_app(*args, **kwargs))
        return served[-1]

    monkeypatch.setattr(lookalike.server, "create_app", observed)
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, *a, **k: None)
    key = load_embedder(model_dir).key
    assert key is not None
    good = write_head_file(
        tmp_path / "good.safetensors",
        HeadFile.from_pair_head(_head(128), model_key=key, threshold=0.7),
    )
    argv = ["serve", "--model", str(model_dir), "--data-dir", str(tmp_path / "data"), "--port", "1"]
    assert main([*argv, "--head", str(good)]) == 0
    state = served[0].state.lookalike
    try:
        assert state.model.head is not None and state.model.thresholds["probability"] == 0.7
    finally:
        state.close()
    other = write_head_file(
        tmp_path / "other.safetensors",
        HeadFile.from_pair_head(_head(128), model_key="12" * 32),
    )
    capsys.readouterr()
    assert main([*argv, "--head", str(other)]) == 2
    assert "trained on the embeddings of model 121212121212" in capsys.readouterr().err
    served[-1].state.lookalike.close()
