"""Long commands show progress on a terminal and end with a one-line summary (issue 15, item 5).

Each command runs as a real ``python -m lookalike`` process on tiny data (the small random
CNN of :mod:`tests.server_helpers`, its glyph images), twice: once with stderr on a real
pseudo-terminal (``pty.openpty``), where tqdm bars named after the phase must appear, and
once with stderr captured (in this process: not a terminal), where no bar may appear but the
summary line still must.
"""

from __future__ import annotations

import csv
import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import pytest
from PIL import Image
from tests.server_helpers import glyph, small_model_dir

SRC = Path(__file__).resolve().parents[2] / "src"
SUMMARY = r"^{name}: .* in \d+\.\d s$"
"""The summary line every long command ends with (on stderr), ``{name}`` the command."""
BAR = re.compile(r"\d+/\d+ \[\d\d:\d\d")
"""What a tqdm bar draws: ``3/10 [00:01<…``."""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    env.pop("TQDM_DISABLE", None)
    return env


def _on_terminal(args: list[str], cwd: Path) -> tuple[int, str]:
    """Run ``lookalike ARGS`` with stderr on a pseudo-terminal (120×40); its exit code and
    everything it wrote there."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    chunks: list[bytes] = []

    def drain() -> None:  # keep the terminal's buffer from filling up and blocking the child
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed its end
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "lookalike", *args],
            cwd=cwd,
            env=_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=slave,
            timeout=120,
        )
    finally:
        os.close(slave)
        reader.join(10)
        os.close(master)
    return proc.returncode, b"".join(chunks).decode("utf-8", "replace")


def _on_pipe(args: list[str], cwd: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run ``lookalike ARGS`` in this process (saving a second torch import) with stderr
    captured, so not a terminal; its exit code and stderr."""
    from lookalike.cli import main

    here = Path.cwd()
    os.chdir(cwd)
    try:
        capsys.readouterr()
        code = main(args)
    finally:
        os.chdir(here)
    return code, capsys.readouterr().err


def _check(name: str, tty: tuple[int, str], pipe: tuple[int, str], phases: list[str]) -> None:
    """Bars naming each phase on the terminal, none on the pipe, a summary on both."""
    code, shown = tty
    assert code == 0, shown[-3000:]
    assert BAR.search(shown), shown[-3000:]
    assert "\r" in shown  # a bar redraws itself in place
    for phase in phases:
        assert phase in shown, f"no {phase!r} on the terminal:\n{shown[-3000:]}"
    summary = re.compile(SUMMARY.format(name=re.escape(name)), re.MULTILINE)
    # A bar erases itself with "\r" before the summary is printed on its line.
    assert summary.search("\n".join(re.split(r"[\r\n]+", shown))), shown[-3000:]
    code, logged = pipe
    assert code == 0, logged[-3000:]
    assert "\r" not in logged and not BAR.search(logged), logged[-3000:]
    for phase in phases:
        assert phase not in logged, logged[-3000:]
    assert len(summary.findall(logged)) == 1, logged[-3000:]


@pytest.fixture(scope="module")
def glyphs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An identity folder of 28 px glyphs (6 identities × 4 noisy copies), a pairs CSV of
    them, and a small random model folder, under one root."""
    root = tmp_path_factory.mktemp("progress")
    for k in range(6):
        folder = root / "ids" / f"g{k}"
        folder.mkdir(parents=True)
        for j in range(4):
            Image.fromarray(glyph(k, noise_seed=10 * k + j)).save(folder / f"{j}.png")
    with (root / "pairs.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["a", "b", "label"])
        for k in range(6):
            writer.writerow([f"ids/g{k}/0.png", f"ids/g{k}/1.png", "same"])
            writer.writerow([f"ids/g{k}/2.png", f"ids/g{(k + 1) % 6}/3.png", "different"])
    small_model_dir(root)
    return root


def test_eval_shows_its_phases_on_a_terminal(
    glyphs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def args(out: str) -> list[str]:
        return [
            "eval", "small-model", "ids", "--out", out, "--no-baselines",
            "--n-pairs", "60", "--episodes", "20", "--ways", "3",
        ]  # fmt: skip

    tty = _on_terminal(args("report-tty"), glyphs)
    pipe = _on_pipe(args("report-pipe"), glyphs, capsys)
    _check("eval", tty, pipe, ["eval: decoding", "eval: embedding (model)", "eval: measuring"])


def test_train_head_shows_embedding_and_fitting_on_a_terminal(
    glyphs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def args(out: str) -> list[str]:
        return ["train-head", "pairs.csv", "--model", "small-model", "--out", out, "--steps", "60"]

    tty = _on_terminal(args("head-tty"), glyphs)
    pipe = _on_pipe(args("head-pipe"), glyphs, capsys)
    _check("train-head", tty, pipe, ["train-head: embedding", "train-head: fitting"])


def test_calibrate_dedup_shows_editing_and_embedding_on_a_terminal(
    glyphs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("skimage")
    args = ["calibrate-dedup", "--model", "small-model", "--edits", "1", "--engine", "torch"]
    tty = _on_terminal(args, glyphs)
    pipe = _on_pipe(args, glyphs, capsys)
    _check("calibrate-dedup", tty, pipe, ["calibrate-dedup: editing", "calibrate-dedup: embedding"])


def test_train_shows_what_runs_after_the_last_epoch(
    glyphs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pretrained start (mobilenet_v2 at 32 px, whose weights ship offline) runs the guard:
    the WiSE-FT sweep, the final evaluation, the baselines, the domain statistics, saving and
    plots all show."""

    def args(out: str) -> list[str]:
        return [
            "train", "ids", "--out", out, "--backbone", "mobilenet_v2", "--image-size", "32",
            "--epochs", "1", "--batch-size", "8", "--steps-per-epoch", "2", "--split", "identity",
        ]  # fmt: skip

    tty = _on_terminal(args("model-tty"), glyphs)
    pipe = _on_pipe(args("model-pipe"), glyphs, capsys)
    _check(
        "train",
        tty,
        pipe,
        [
            "train: guard: WiSE-FT sweep",
            "train: final evaluation",
            "train: baselines",
            "train: domain statistics",
            "train: saving",
            "train: plots",
        ],
    )
    assert re.search(r"guard: WiSE-FT sweep[^\r]*\d/5 \[", tty[1]), tty[1][-3000:]  # its own bar
    # The summary names each phase after the epochs with its seconds.
    assert re.search(r"after the epochs \d+\.\d s \(guard: WiSE-FT", pipe[1]), pipe[1][-2000:]


def test_the_helper_draws_nothing_off_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    """``progress=True`` on a captured (non-terminal) stderr: no bar, phases still timed."""
    import numpy as np

    from lookalike._progress import Phases, bar, done, map_chunks, showing

    assert not showing(True) and not showing(False)
    assert list(bar(range(3), desc="counting", progress=True)) == [0, 1, 2]
    with Phases("job", 2, progress=True) as phases:
        phases.start("first")
        phases.start("second")
    assert list(phases.seconds) == ["first", "second"]
    rows = map_chunks(
        lambda c: np.asarray(c)[:, None] * 2, list(range(5)), 2, desc="x", progress=True
    )
    assert rows.ravel().tolist() == [0, 2, 4, 6, 8]
    with pytest.raises(ValueError, match="at least 1"):
        map_chunks(lambda c: c, [1], 0, desc="x", progress=False)
    done("job: 2 phases", 1.234)
    assert capsys.readouterr().err == "job: 2 phases in 1.2 s\n"


def test_the_first_onnx_export_is_announced_on_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new model's first use exports it (seconds): said on a terminal, silent on a pipe."""
    model = small_model_dir(tmp_path)
    for k in (0, 1):
        Image.fromarray(glyph(k)).save(tmp_path / f"g{k}.png")
    args = ["compare", "g0.png", "g1.png", "--model", str(model), "--engine", "onnx"]
    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path / "tty-cache"))
    code, shown = _on_terminal(args, tmp_path)
    assert code == 0, shown[-2000:]
    assert "exporting to ONNX Runtime (once" in shown
    assert re.search(r"exported and checked against PyTorch in \d+\.\d s", shown)
    code, again = _on_terminal(args, tmp_path)  # cached now: nothing to announce
    assert code == 0 and "exporting" not in again
    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path / "pipe-cache"))
    code, logged = _on_pipe(args, tmp_path, capsys)
    assert code == 0 and "exporting" not in logged and "exported" not in logged


def test_index_shows_hashing_then_indexing_on_a_terminal(glyphs: Path, tmp_path: Path) -> None:
    """Hashing a big collection takes long before any embedding starts: it has its own bar."""
    args = ["index", "ids", "--index", str(tmp_path / "idx"), "--model", "small-model"]
    code, tty = _on_terminal([*args, "--engine", "torch"], glyphs)
    assert code == 0, tty[-2000:]
    assert re.search(r"hashing[^\r\n]*\d+/\d+ \[", tty), tty[-2000:]
    assert re.search(r"indexing[^\r\n]*\d+/\d+ \[", tty), tty[-2000:]
    assert tty.index("hashing") < tty.index("indexing")
