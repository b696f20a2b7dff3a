"""Tampered model folders (issue 14, failure 8): every one is refused with one line, before
anything is built from it; none gives a traceback, a NaN score or a huge allocation."""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from lookalike.cli import main
from lookalike.errors import LookalikeError, ModelFolderError
from lookalike.model.card import implied_tensors
from lookalike.model.folder import read_card
from lookalike.model.network import SiameseModel

Mutation = Callable[[dict[str, Any]], Any]


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """small_cnn with GeM, a projection and a pair head, saved once for the module."""
    torch.manual_seed(0)
    model = SiameseModel.create("small_cnn", pooling="gem", projection=(16, 8), head=True)
    folder = tmp_path_factory.mktemp("model") / "m"
    model.save(folder)
    return folder


@pytest.fixture()
def folder(saved: Path, tmp_path: Path) -> Path:
    """A fresh copy of the saved folder, to tamper with."""
    return Path(shutil.copytree(saved, tmp_path / "m"))


def tamper_config(folder: Path, mutate: Mutation) -> None:
    """Rewrite config.json: ``mutate`` edits the parsed JSON, or returns the new text/bytes."""
    path = folder / "config.json"
    config = json.loads(path.read_text())
    result = mutate(config)
    if isinstance(result, bytes):
        path.write_bytes(result)
    elif isinstance(result, str):
        path.write_text(result)
    else:
        path.write_text(json.dumps(config))


def tamper_tensors(folder: Path, mutate: Callable[[dict[str, torch.Tensor]], None]) -> None:
    path = folder / "model.safetensors"
    tensors = load_file(str(path))
    mutate(tensors)
    save_file(tensors, str(path))


def setting(*path: Any, value: Any) -> Mutation:
    def mutate(config: dict[str, Any]) -> None:
        node = config
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


def refused(folder: Path, match: str) -> ModelFolderError:
    """The folder is refused with one line naming the cause, and nothing is built."""
    with pytest.raises(ModelFolderError, match=match) as exc_info:
        SiameseModel.load(folder)
    assert "\n" not in str(exc_info.value)
    return exc_info.value


CONFIG_CASES: dict[str, tuple[Mutation, str]] = {
    # bad format_version
    "version-text": (setting("format_version", value="abc"), "'format_version' must be an int"),
    "version-float": (setting("format_version", value=1.5), "'format_version' must be an int"),
    "version-negative": (setting("format_version", value=-1), "'format_version' must be an int"),
    "version-bool": (setting("format_version", value=True), "'format_version' must be an int"),
    "version-newer": (setting("format_version", value=10**30), "newer lookalike"),
    # wrong types
    "feature-dim-text": (setting("feature_dim", value="128"), "'feature_dim' must be an int"),
    "projection-text": (setting("projection", value="16"), "'projection' must be a list"),
    "normalize-text": (setting("normalize", value="yes"), "'normalize' must be true or false"),
    "head-list": (setting("head", value=[1, 2]), "'head' must be the pair head's"),
    "head-dropout-text": (setting("head", "dropout", value="x"), "'head' must be the pair"),
    "head-unknown-key": (setting("head", "extra", value=1), "'head' must be the pair"),
    "size-texts": (setting("preprocess", "input_size", value=["a", "b"]), "input_size must"),
    "size-floats": (setting("preprocess", "input_size", value=[28.5, 28]), "input_size must"),
    "channels-text": (setting("preprocess", "channels", value="1"), "channels must be 1 or 3"),
    "std-text": (setting("preprocess", "std", value="x"), "std must be a list"),
    "thresholds-text": (setting("thresholds", value={"cosine": "x"}), "'thresholds' must be"),
    "weights-record": (setting("backbone_weights", value=[]), "'backbone_weights' must be"),
    "sha-not-hex": (
        setting("backbone_weights", "pretrained_sha256", value="../../x"),
        "'backbone_weights' must be",
    ),
    # negative or zero sizes
    "feature-dim-negative": (setting("feature_dim", value=-1), "'feature_dim' must be an int"),
    "projection-zero": (setting("projection", value=[16, 0]), "'projection' must be a list"),
    "size-negative": (setting("preprocess", "input_size", value=[-5, 28]), "input_size must"),
    "head-hidden-zero": (setting("head", "hidden", value=[0]), "'head' must be the pair"),
    # huge sizes (each attempted a 240-512 GB allocation, or would)
    "feature-dim-huge": (setting("feature_dim", value=10**9), "'feature_dim' must be .* ≤ 16384"),
    "embedding-dim-huge": (setting("embedding_dim", value=10**9), "'embedding_dim' must be"),
    "projection-huge": (setting("projection", value=[10**6, 10**6]), "each ≤ 16384"),
    "projection-deep": (setting("projection", value=[8] * 50), "at most 8 of them"),
    "input-huge": (setting("preprocess", "input_size", value=[10**5, 10**5]), "1 to 2048"),
    "head-huge": (setting("head", "hidden", value=[10**7, 10**7]), "'head' must be the pair"),
    # sizes the architecture does not have
    "embedding-dim-wrong": (setting("embedding_dim", value=9), "'embedding_dim' must be 8"),
    "feature-dim-wrong": (setting("feature_dim", value=64), "'feature_dim' must be 128"),
    "head-input-wrong": (setting("head", "embedding_dim", value=99), "embedding_dim 8"),
    # unknown backbone
    "backbone-unknown": (setting("backbone", value="nope"), "unknown backbone 'nope'"),
    "backbone-number": (setting("backbone", value=5), "'backbone' must be a non-empty string"),
    "backbone-control": (setting("backbone", value="small_cnn\n"), "printable characters"),
    "custom-without-class": (setting("backbone", value="custom"), "'backbone_weights' must"),
    "pooling-unknown": (setting("pooling", value="median"), "'pooling' must be one of"),
    # non-finite numbers (JSON's NaN and Infinity, as Python writes them)
    "mean-nan": (setting("preprocess", "mean", value=[float("nan")]), "finite"),
    "std-infinite": (setting("preprocess", "std", value=[float("inf")]), "finite"),
    "threshold-nan": (setting("thresholds", value={"cosine": float("nan")}), "finite"),
    "feature-dim-nan": (setting("feature_dim", value=float("nan")), "'feature_dim' must be"),
    # missing fields
    "no-preprocess": (lambda c: c.pop("preprocess") and None, "lacks the field 'preprocess'"),
    "no-format": (lambda c: c.pop("format") and None, "not a lookalike model config"),
    # not JSON, or not an object
    "not-json": (lambda c: "{not json", "is not valid JSON"),
    "not-utf8": (lambda c: b"\xff\xfe{}", "is not valid JSON"),
    "nested-deeply": (lambda c: "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    "int-5000-digits": (lambda c: '{"format": "lookalike.model", "x": ' + "9" * 5000 + "}", "JSON"),
    "a-list": (lambda c: "[1, 2]", "not a lookalike model config"),
    "empty": (lambda c: "", "is not valid JSON"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_tampered_config_is_refused_before_building(
    folder: Path, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    mutate, match = CONFIG_CASES[case]
    tamper_config(folder, mutate)
    with pytest.raises(ModelFolderError, match=match):
        read_card(folder)  # what `lookalike info` and the server read first

    def never(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a network was built from a refused card")

    monkeypatch.setattr(SiameseModel, "from_card", never)
    refused(folder, match)


def scale_tensor(name: str, factor: float) -> Callable[[dict[str, torch.Tensor]], None]:
    def mutate(tensors: dict[str, torch.Tensor]) -> None:
        tensors[name] = tensors[name] * factor

    return mutate


def drop_backbone(tensors: dict[str, torch.Tensor]) -> None:
    for name in [k for k in tensors if k.startswith("backbone.")]:
        del tensors[name]


def first_backbone_weight(tensors: dict[str, torch.Tensor]) -> str:
    return next(k for k, v in tensors.items() if k.startswith("backbone.") and v.ndim == 4)


TENSOR_CASES: dict[str, tuple[Callable[[dict[str, torch.Tensor]], None], str]] = {
    "nan-projection": (scale_tensor("projection.0.weight", float("nan")), "non-finite values"),
    "inf-head": (scale_tensor("head.layers.0.weight", float("inf")), "non-finite values"),
    "nan-gem": (lambda t: t.update({"pool.gem.p": torch.tensor(float("nan"))}), "non-finite"),
    "nan-backbone": (
        lambda t: t.update({first_backbone_weight(t): t[first_backbone_weight(t)] * np.nan}),
        "non-finite values",
    ),
    "gem-zero": (
        lambda t: t.update({"pool.gem.p": torch.tensor(0.0)}),
        "GeM exponent of 0.0; it must be positive",
    ),
    "missing": (lambda t: t.__delitem__("projection.2.weight"), "lacks the tensor"),
    "wrong-shape": (
        lambda t: t.update({"projection.0.weight": torch.zeros(3, 3)}),
        r"has shape \[3, 3\], the card implies \[16, 128\]",
    ),
    "integer-dtype": (
        lambda t: t.update({"projection.0.bias": torch.zeros(16, dtype=torch.int32)}),
        "is I32, not floating point",
    ),
    "unexpected": (lambda t: t.update({"zzz": torch.zeros(3)}), r"unexpected tensors \['zzz'\]"),
    "backbone-dropped": (
        drop_backbone,
        "says the backbone's weights are stored in it, but the file lacks them",
    ),
}


@pytest.mark.parametrize("case", sorted(TENSOR_CASES))
def test_tampered_tensors_are_refused(folder: Path, case: str) -> None:
    mutate, match = TENSOR_CASES[case]
    tamper_tensors(folder, mutate)
    refused(folder, match)


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda b: b[: len(b) // 2], "lies outside the file"),
        (lambda b: b[:100], "header of"),
        (lambda b: (10**12).to_bytes(8, "little") + b[8:], "a header of 1000000000000 bytes"),
        (lambda b: b"garbage" * 10, "not a readable safetensors file"),
        (lambda b: b"", "a header of -1 bytes"),
        (lambda b: b[:8] + b"[" * (len(b) - 8), "not a readable safetensors file"),
    ],
    ids=["truncated-half", "truncated-header", "forged-length", "garbage", "empty", "not-json"],
)
def test_damaged_tensors_file_is_refused(
    folder: Path, damage: Callable[[bytes], bytes], match: str
) -> None:
    path = folder / "model.safetensors"
    path.write_bytes(damage(path.read_bytes()))
    refused(folder, match)


def test_missing_tensors_file_is_refused(folder: Path) -> None:
    (folder / "model.safetensors").unlink()
    refused(folder, "has no model.safetensors; the folder is incomplete")


def test_huge_width_within_bounds_allocates_nothing_the_file_does_not_hold(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 16384 × 16384 floats (1 GiB) is a legal width, but the file holds no such tensors:
    # refused from the safetensors header before the network is built.
    tamper_config(folder, setting("projection", value=[16384, 16384]))
    tamper_config(folder, setting("embedding_dim", value=16384))
    tamper_config(folder, setting("head", "embedding_dim", value=16384))
    built: list[bool] = []
    monkeypatch.setattr(SiameseModel, "from_card", lambda *a, **k: built.append(True))
    refused(folder, r"'projection.0.weight' has shape \[16, 128\], the card implies \[16384, 128\]")
    assert not built


@pytest.mark.parametrize(
    ("pooling", "projection", "head", "dropout"),
    [
        ("avg", (), False, 0.25),
        ("gem", (16, 8), True, 0.25),
        ("max", (8,), True, 0.0),
        ("flatten", (12,), True, 0.5),
        ("flatten", (), False, 0.25),
    ],
)
def test_implied_tensors_are_the_networks_own(
    pooling: str, projection: tuple[int, ...], head: bool, dropout: float
) -> None:
    from lookalike.model.layers import PairHead

    model = SiameseModel.create(
        "small_cnn", pooling=pooling, projection=projection, head=head, input_size=16
    )
    if head:
        model.head = PairHead(model.embedding_dim, dropout=dropout)
    own = {
        k: tuple(v.shape) for k, v in model.state_dict().items() if not k.startswith("backbone.")
    }
    implied = implied_tensors(model.card())
    assert set(implied) == set(own)
    for name, shape in implied.items():
        assert all(e in (-1, g) for e, g in zip(shape, own[name], strict=True)), name


def test_a_good_folder_still_loads_and_scores(folder: Path) -> None:
    model = SiameseModel.load(folder)
    x = np.random.default_rng(0).random((2, 1, 28, 28), dtype=np.float32)
    emb = model.embed(x)
    assert np.isfinite(emb).all()
    probability = model.pair_probability(emb[:1], emb[1:])
    assert probability is not None and np.isfinite(probability).all()


# -- the command line: one line, exit 2 ----------------------------------------------------------


@pytest.mark.parametrize(
    "case", ["version-text", "projection-huge", "nested-deeply", "backbone-unknown", "mean-nan"]
)
@pytest.mark.parametrize("json_output", [False, True])
def test_info_on_a_tampered_folder_is_one_line_exit_2(
    folder: Path, case: str, json_output: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    tamper_config(folder, CONFIG_CASES[case][0])
    code = main(["info", *(["--json"] if json_output else []), str(folder)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("lookalike: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err


def test_compare_with_nan_weights_is_exit_2_not_a_nan_score(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tamper_tensors(folder, scale_tensor("head.layers.0.weight", float("nan")))
    images = []
    for i in range(2):
        path = tmp_path / f"{i}.png"
        Image.fromarray(np.full((28, 28), 60 * i, np.uint8)).save(path)
        images.append(str(path))
    code = main(["compare", "--model", str(folder), "--engine", "torch", *images])
    captured = capsys.readouterr()
    assert code == 2, captured.out
    assert "non-finite values" in captured.err and captured.err.count("\n") == 1
    assert "nan" not in captured.out.lower()


def test_every_refusal_is_a_lookalike_error(saved: Path, tmp_path: Path) -> None:
    """No tampering above escapes as anything but a LookalikeError from the loader."""
    for i, (mutate, _) in enumerate(CONFIG_CASES.values()):
        copy_dir = Path(shutil.copytree(saved, tmp_path / f"c{i}"))
        tamper_config(copy_dir, copy.deepcopy(mutate))
        with pytest.raises(LookalikeError):
            SiameseModel.load(copy_dir)


def test_serve_with_a_tampered_model_is_one_line_exit_2(
    folder: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    def never(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the server started with a refused model")

    monkeypatch.setattr(uvicorn.Server, "run", never)
    tamper_config(folder, CONFIG_CASES["input-huge"][0])
    code = main(["serve", "--model", str(folder), "--port", "8765"])
    err = capsys.readouterr().err
    assert code == 2 and "1 to 2048" in err and err.count("\n") == 1, err


def test_the_index_s_recorded_model_tampered_later_is_one_line_exit_2(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        Image.fromarray(np.full((28, 28), 70 * i, np.uint8)).save(images / f"{i}.png")
    index = str(tmp_path / "index")
    engine = ["--engine", "torch"]
    assert main(["index", str(images), "--index", index, "--model", str(folder), *engine]) == 0
    capsys.readouterr()
    tamper_config(folder, CONFIG_CASES["version-text"][0])  # `search` reads the recorded model
    code = main(["search", str(images / "0.png"), "--index", index, *engine])
    err = capsys.readouterr().err
    assert code == 2 and "'format_version' must be an int" in err and err.count("\n") == 1, err
    tamper_config(folder, setting("format_version", value=1))  # restore the version ...
    tamper_tensors(folder, scale_tensor("projection.0.weight", float("nan")))  # ... break weights
    code = main(["search", str(images / "0.png"), "--index", index, *engine])
    err = capsys.readouterr().err
    assert code == 2 and "non-finite values" in err and err.count("\n") == 1, err
