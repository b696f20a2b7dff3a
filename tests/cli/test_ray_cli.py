"""``--ray`` on the command line without a cluster: nothing imports Ray unless asked, and
what a user can get wrong (an unreachable address, ``--ray-workers`` alone, a ``memory://``
root for ``index --ray``) is one line on stderr and exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cli_helpers import one_line_error
from lookalike.cli import main
from pixel_embedder import write

MODEL_ARGS = ["--engine", "onnx", "--device", "cpu"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A tiny model folder and a few images."""
    import torch

    from lookalike.model.network import SiameseModel

    base = tmp_path_factory.mktemp("raycli")
    torch.manual_seed(0)
    SiameseModel.create("small_cnn", pretrained=False, projection=(8,)).save(base / "model")
    for i in range(5):
        write(base / "photos" / f"img{i}.png", i)
    return base, base / "model", base / "photos"


_NO_RAY = """
import sys
from lookalike.cli import main
root, index, model, out = sys.argv[1:5]
args = ["--model", model, "--engine", "onnx", "--device", "cpu"]
assert main(["index", root, "--index", index, *args]) == 0
assert main(["embed", root, "--out", out, *args]) == 0
assert main(["embed", "file://" + root, "--out", out, *args]) == 0
loaded = sorted(m for m in sys.modules if m == "ray" or m.startswith("ray."))
assert not loaded, loaded
print("no ray")
"""


def test_without_ray_nothing_imports_ray(setup: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, model, photos = setup
    paths = [photos.absolute(), tmp_path / "idx", model, tmp_path / "e.npz"]
    run = subprocess.run(
        [sys.executable, "-c", _NO_RAY, *map(str, paths)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "no ray" in run.stdout


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--ray", "127.0.0.1:1"], ["cannot reach the Ray cluster", "127.0.0.1:1"]),
        (["--ray-workers", "2"], ["--ray-workers needs --ray"]),
    ],
)
def test_index_ray_mistakes_are_one_line_and_exit_2(
    setup: tuple[Path, Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    words: list[str],
) -> None:
    _, model, photos = setup
    argv = ["index", str(photos), "--index", str(tmp_path / "idx"), "--model", str(model)]
    assert main([*argv, *MODEL_ARGS, *extra]) == 2
    one_line_error(capsys, *words)
    assert not (tmp_path / "idx").exists()  # nothing left behind


def test_embed_unreachable_cluster_and_index_of_a_memory_uri_are_refused(
    setup: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, model, photos = setup
    out = ["--out", str(tmp_path / "e.npz"), "--model", str(model), *MODEL_ARGS]
    assert main(["embed", str(photos), *out, "--ray", "ray://127.0.0.1:1"]) == 2
    one_line_error(capsys, "cannot reach the Ray cluster", "ray://127.0.0.1:1")
    assert not (tmp_path / "e.npz").exists()
    uri = ["index", "memory://photos", "--index", str(tmp_path / "idx2"), "--ray"]
    assert main(uri) == 2  # refused before Ray is started: Ray workers cannot see it
    one_line_error(capsys, "memory://", "Ray workers cannot read it")
    assert main(["embed", "memory://photos", *out, "--ray"]) == 2  # embed: the same refusal
    one_line_error(capsys, "memory://", "Ray workers cannot read it")
    assert not (tmp_path / "e.npz").exists()
    assert not (tmp_path / "idx2").exists()
