"""The command line's face: every sub-command explains itself in ``--help`` with an example,
and one model option group (``--model DIR`` / ``--backbone NAME``) works everywhere,
``eval`` and ``serve`` included."""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from tests.glyphs import write_identity_folder

from lookalike.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


# --------------------------------------------------------------------------- eval's model


@pytest.fixture(scope="module")
def glyph_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained small CNN model folder (enough to evaluate; fast)."""
    from lookalike.model.network import SiameseModel

    folder = tmp_path_factory.mktemp("model") / "m"
    SiameseModel.create("small_cnn", pretrained=False, input_size=28).save(folder)
    return folder


@pytest.fixture(scope="module")
def glyphs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_identity_folder(tmp_path_factory.mktemp("glyphs"), n_ids=4, per_id=5)


QUICK = ["--no-baselines", "--episodes", "0", "--n-pairs", "40", "--json"]


def _eval(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    assert main(["eval", *argv, *QUICK]) == 0, capsys.readouterr().err
    report: dict[str, object] = json.loads(capsys.readouterr().out)
    return report


def test_eval_takes_model_option_and_keeps_the_positional_form(
    glyph_model: Path, glyphs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = _eval([str(glyphs), "--model", str(glyph_model), "--out", str(tmp_path / "a")], capsys)
    old = _eval([str(glyph_model), str(glyphs), "--out", str(tmp_path / "b")], capsys)
    assert new["roc_auc"] == old["roc_auc"] and new["pairs"] == old["pairs"] == 40
    assert "eval of " + str(glyph_model) in (tmp_path / "a" / "report.md").read_text()


def test_eval_takes_a_backbone(
    glyphs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [str(glyphs), "--backbone", "small_cnn", "--image-size", "28"]
    report = _eval([*argv, "--out", str(tmp_path / "r")], capsys)
    assert report["pairs"] == 40
    assert "eval of small_cnn" in (tmp_path / "r" / "report.md").read_text()


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--backbone", "small_cnn", "--calibrate"], "--calibrate stores thresholds"),
        (["EXTRA", "--backbone", "small_cnn"], "the model is given twice"),
    ],
)
def test_eval_model_mistakes_are_one_line(
    glyphs: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    expected: str,
) -> None:
    argv = [str(glyphs), *extra, "--out", str(tmp_path / "r")]
    assert main(["eval", *argv]) == 2
    err = capsys.readouterr().err
    assert expected in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "r").exists()


# --------------------------------------------------------------------------- serve --backbone


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(*argv: str) -> subprocess.Popen[str]:
    env = {"PYTHONPATH": str(ROOT / "src"), "LOOKALIKE_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.Popen(
        [sys.executable, "-m", "lookalike", "serve", *argv, "--log-level", "warning"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_serve_takes_a_backbone(tmp_path: Path) -> None:
    port = _free_port()
    server = _serve(
        "--backbone", "small_cnn", "--image-size", "28", "--port", str(port),
        "--data-dir", str(tmp_path / "data"), "--engine", "torch",
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as r:
                    health = json.loads(r.read())
                break
            except OSError:
                assert server.poll() is None, server.communicate()[1]
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.3)
        assert health["backbone"] == "small_cnn"
        assert health["input_size"] == [28, 28]
    finally:
        server.terminate()
        server.communicate(timeout=20)


def test_serve_on_a_busy_port_says_so_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = _serve(
            "--backbone", "small_cnn", "--image-size", "28", "--port", str(port),
            "--data-dir", str(tmp_path / "data"), "--engine", "torch",
        )  # fmt: skip
        try:
            _, err = server.communicate(timeout=90)
        finally:
            if server.poll() is None:
                server.kill()
    assert server.returncode == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"port {port} is already in use" in lines[0], err
    assert "Errno" not in err


# --------------------------------------------------------------------------- --help


def test_every_subcommand_has_a_description_and_examples_that_parse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shlex

    monkeypatch.chdir(tmp_path)  # examples name relative outputs, checked while parsing
    commands = _subcommands()
    assert len(commands) >= 16
    for name, parser in commands.items():
        description = parser.description or ""
        sentences = [s for s in description.replace("\n", " ").split(". ") if s.strip()]
        assert description and 1 <= len(sentences) <= 3, (name, description)
        text = parser.format_help()
        assert description.splitlines()[0] in text, name
        assert "examples:\n  lookalike " + name in text, (name, parser.epilog)
        examples = [
            line.split("#")[0].strip()
            for line in (parser.epilog or "").splitlines()
            if line.strip().startswith("lookalike ")
        ]
        assert examples, name
        for example in examples:
            argv = shlex.split(example)[1:]
            args = build_parser().parse_args(argv)  # a wrong example raises here
            assert args.command == name, example


def test_help_keeps_defaults_and_line_breaks(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["eval", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "(default: 2000)" in text  # --n-pairs: options.HelpFormatter still adds defaults
    assert "\nexamples:\n  lookalike eval photos-by-person/ --model my-model" in text
    assert "--model DIR" in text and "--backbone NAME" in text
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "lookalike COMMAND --help" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["compare", "eval", "serve", "explain", "train-head"])
def test_one_model_option_group(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--model`` and ``--backbone`` mean the same on every command that loads a model."""
    from lookalike.cli import options

    monkeypatch.chdir(tmp_path)

    positionals = {"compare": ["a", "b"], "explain": ["a", "b", "--out", "x.png"]}
    extra = {"eval": ["data", "--out", "r"], "train-head": ["p.csv", "--out", "m"]}
    argv = [command, *positionals.get(command, []), *extra.get(command, [])]
    args = build_parser().parse_args([*argv, "--backbone", "small_cnn", "--image-size", "28"])
    source = options.model_source(args)
    assert (source.backbone, source.folder, source.image_size) == ("small_cnn", None, 28)
    args = build_parser().parse_args([*argv, "--model", "some-folder"])
    assert options.model_source(args).folder is not None


# --------------------------------------------------------------------------- info


def test_info_is_readable(
    glyph_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import re

    from lookalike.model.folder import update_config
    from lookalike.model.network import SiameseModel

    folder = tmp_path / "m"
    SiameseModel.load(glyph_model).save(folder)
    update_config(
        folder,
        thresholds={"cosine": 0.72134567891234, "euclidean": 0.74821},
        metrics={"val_pair_accuracy": 0.912345678912, "val_pairs": 12000},
    )
    assert main(["info", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "thresholds:     cosine 0.7213, euclidean 0.7482" in out, out
    assert "val_pair_accuracy = 0.9123" in out and "val_pairs = 12,000" in out, out
    assert not re.search(r"\d\.\d{5,}", out), out  # no 16-digit floats
    assert "{'" not in out  # no raw dicts
    assert "domain:         not recorded (inputs are not checked)" in out
