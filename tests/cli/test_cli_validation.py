"""Every number and every output on the command line is checked while the arguments are parsed.

The tests walk the real parser (:func:`lookalike.cli.build_parser`) over every sub-command and
every option, so an option added later without a range, an output check or a help text fails
here. The handlers are replaced by a tripwire: a value that gets past the parser fails the test
at once instead of loading a model (or handing ``--threads 100000`` to native code).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import lookalike.cli as cli
from lookalike._limits import (
    MAX_BATCH_SIZE,
    check_batch_size,
    check_threads,
    cpu_cores,
    max_threads,
)
from lookalike.cli import main, options
from lookalike.errors import LookalikeError

OUTPUTS = (options.output_file, options.output_folder)

# Every option that names something a command writes, and whether it is a folder.
WRITTEN: dict[tuple[str, str], bool] = {
    ("compare", "--out"): False,
    ("embed", "--out"): False,
    ("explain", "--out"): False,
    ("map", "--out"): False,
    ("search", "--grid"): False,
    ("dedup", "--html"): False,
    ("dedup", "--move-to"): True,
    ("index", "--index"): True,
    ("train", "--out"): True,
    ("train-head", "--out"): True,
    ("demo", "--out"): True,
    ("eval", "--out"): True,
}


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


COMMANDS = _commands()


def _options(command: str) -> Iterator[argparse.Action]:
    for action in COMMANDS[command]._actions:
        if action.option_strings and not isinstance(action, argparse._HelpAction):
            yield action


def _numeric() -> list[tuple[str, str]]:
    return [
        (command, action.option_strings[-1])
        for command in COMMANDS
        for action in _options(command)
        if isinstance(action.type, options.Ranged) or action.type in (int, float)
    ]


def _action(command: str, option: str) -> argparse.Action:
    return next(a for a in _options(command) if option in a.option_strings)


def _minimal_argv(command: str, tmp_path: Path) -> list[str]:
    """The sub-command with its required arguments (placeholders), which parses."""
    argv = [command]
    for n, action in enumerate(COMMANDS[command]._actions):
        value = str(tmp_path / f"out-{n}") if action.type in OUTPUTS else "x"
        if not action.option_strings and action.nargs in (None, "+"):
            argv.append(value)
        elif action.option_strings and action.required:
            argv += [action.option_strings[-1], value]
    return argv


@pytest.fixture()
def tripwire(monkeypatch: pytest.MonkeyPatch) -> None:
    """``main`` parses with the real parser, but no command handler may run."""
    real = cli.build_parser

    def reached(args: argparse.Namespace) -> int:
        raise AssertionError(f"the parser let {args} through to the command")

    def build() -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = real()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        for command in sub.choices.values():
            command.set_defaults(handler=reached)
        return parser

    monkeypatch.setattr(cli, "build_parser", build)


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2, argv
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lookalike: error: "), err
    return lines[0]


def _bad_values(kind: options.Ranged[int] | options.Ranged[float]) -> list[str]:
    below = kind.lo if kind.lo_open else kind.lo - 1
    above = kind.hi if kind.hi_open else kind.hi + 1
    words = ["abc", "", "1.5"] if kind.kind is int else ["abc", "", "nan", "inf", "-inf"]
    return [str(below), str(above), *words]


# -- the parser's inventory ------------------------------------------------------------------


def test_every_sub_command_parses_with_its_required_arguments(tmp_path: Path) -> None:
    assert len(COMMANDS) >= 15
    for command in COMMANDS:
        args = cli.build_parser().parse_args(_minimal_argv(command, tmp_path))
        assert args.command == command


def test_every_numeric_option_has_a_range() -> None:
    numeric = _numeric()
    assert len(numeric) >= 60  # --threads and --batch-size alone on a dozen commands
    plain = [(c, o) for c, o in numeric if not isinstance(_action(c, o).type, options.Ranged)]
    assert not plain, f"use an options.int_in/float_in type for {plain}"


def test_every_written_path_is_checked_up_front() -> None:
    for (command, option), folder in WRITTEN.items():
        kind = _action(command, option).type
        assert kind is (options.output_folder if folder else options.output_file), (command, option)


# -- numbers -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("command", "option"), _numeric())
def test_out_of_range_and_non_numeric_values_are_one_line_errors(
    command: str,
    option: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    tripwire: None,
) -> None:
    kind = _action(command, option).type
    assert isinstance(kind, options.Ranged), f"{command} {option} has no range"
    for bad in _bad_values(kind):
        line = _one_line_error(capsys, [*_minimal_argv(command, tmp_path), f"{option}={bad}"])
        assert f"{option} must be " in line and kind.describe() in line, line
        assert repr(bad) in line or f"got {bad}" in line, line


@pytest.mark.parametrize(("command", "option"), _numeric())
def test_the_bounds_themselves_are_accepted(command: str, option: str, tmp_path: Path) -> None:
    kind = _action(command, option).type
    assert isinstance(kind, options.Ranged)
    choices = _action(command, option).choices
    for good in (kind.lo, kind.hi):
        if (good == kind.lo and kind.lo_open) or (good == kind.hi and kind.hi_open):
            continue
        if choices is not None and good not in choices:
            continue
        argv = [*_minimal_argv(command, tmp_path), option, str(good)]
        assert getattr(cli.build_parser().parse_args(argv), _action(command, option).dest) == good


def test_the_messages_read_well(capsys: pytest.CaptureFixture[str], tripwire: None) -> None:
    line = _one_line_error(capsys, ["index", "x", "--index", "i", "--batch-size", "0"])
    assert line == (
        f"lookalike: error: --batch-size must be at least 1 and at most {MAX_BATCH_SIZE}, got 0"
    )
    line = _one_line_error(capsys, ["dedup", "x", "--threshold", "75"])
    assert line == "lookalike: error: --threshold must be at least -1 and at most 1, got 75"
    line = _one_line_error(capsys, ["serve", "--port", "70000"])
    assert line == "lookalike: error: --port must be at least 1 and at most 65535, got 70000"
    line = _one_line_error(capsys, ["eval", "m", "--out", "r", "--far", "1"])
    assert "--far must be more than 0 and less than 1, got 1" in line
    line = _one_line_error(capsys, ["search", "q", "--index", "i", "-k", "many"])
    assert line == (
        "lookalike: error: -k must be an integer, at least 1 and at most 10000, got 'many'"
    )
    line = _one_line_error(capsys, ["compare", "--bogus-flag"])
    assert "unrecognized arguments: --bogus-flag" in line and "--help" in line


# -- threads ------------------------------------------------------------------------------------


def test_threads_are_bounded_by_the_machine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tripwire: None
) -> None:
    limit = max_threads()
    assert limit == min(1024, 4 * cpu_cores())
    with_threads = [
        c for c in COMMANDS if any("--threads" in a.option_strings for a in _options(c))
    ]
    assert len(with_threads) >= 13
    for command in with_threads:
        argv = _minimal_argv(command, tmp_path)
        assert cli.build_parser().parse_args([*argv, "--threads", str(limit)]).threads == limit
        for huge in ("100000", str(limit + 1), str(2**64)):
            line = _one_line_error(capsys, [*argv, "--threads", huge])
            assert f"--threads must be at least 1 and at most {limit}" in line, line


@pytest.mark.parametrize(
    "argv",
    [
        ["compare", "a.png", "b.png", "--engine", "torch"],
        ["compare", "a.png", "b.png", "--engine", "onnx"],
        ["train", "data", "--out", "{tmp}/m"],
        ["eval", "model", "--out", "{tmp}/r"],
        ["serve"],
    ],
    ids=["compare-torch", "compare-onnx", "train", "eval", "serve"],
)
def test_threads_100000_exits_2_fast_without_loading_torch(argv: list[str], tmp_path: Path) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code = (
        "import sys\n"
        "from lookalike.cli import main\n"
        f"rc = main({[*argv, '--threads', '100000']!r})\n"
        "loaded = {'torch', 'onnxruntime'} & set(sys.modules)\n"
        "assert not loaded, f'loaded {loaded}'\n"
        "sys.exit(rc)\n"
    )
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    seconds = time.perf_counter() - start
    assert run.returncode == 2, run.stderr
    assert run.stderr.startswith("lookalike: error: --threads must be at least 1"), run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    assert seconds < 30, seconds


def test_the_library_checks_threads_before_native_code(monkeypatch: pytest.MonkeyPatch) -> None:
    """``load_embedder`` and the ONNX session refuse a thread count the machine cannot hold."""
    import onnxruntime
    import torch

    from lookalike.inference import ModelSource, load_embedder
    from lookalike.inference.onnx_engine import _session

    def native(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"native code reached with {args} {kwargs}")

    monkeypatch.setattr(torch, "set_num_threads", native)
    monkeypatch.setattr(onnxruntime, "InferenceSession", native)
    source = ModelSource(backbone="small_cnn", pretrained=False)
    for engine in ("torch", "onnx"):
        for threads in (0, -1, max_threads() + 1, 100_000):
            with pytest.raises(LookalikeError, match="threads must be at least 1 and at most"):
                load_embedder(source, engine=engine, device="cpu", threads=threads)
    with pytest.raises(LookalikeError, match="threads must be at least 1"):
        _session(b"not even a model", 100_000)


def test_limits_refuse_what_is_not_a_count() -> None:
    assert check_threads(None) is None
    assert check_threads(1) == 1 and check_threads(max_threads()) == max_threads()
    for bad in (True, 2.0, "4"):
        with pytest.raises(LookalikeError, match="threads must be an integer"):
            check_threads(bad)  # type: ignore[arg-type]
    assert check_batch_size(1) == 1 and check_batch_size(MAX_BATCH_SIZE) == MAX_BATCH_SIZE
    for count in (0, MAX_BATCH_SIZE + 1):
        with pytest.raises(LookalikeError, match=f"at most {MAX_BATCH_SIZE}, got {count}"):
            check_batch_size(count, name="--batch-size")


# -- outputs ------------------------------------------------------------------------------------


def _unwritable(tmp_path: Path, folder: bool) -> dict[str, str]:
    a_file = tmp_path / "a-file.txt"
    a_file.write_text("not a folder")
    cases = {
        "under /proc": "/proc/lookalike-nope/out" + ("" if folder else ".png"),
        "under a file": str(a_file / "out"),
    }
    if folder:
        cases["a file, not a folder"] = str(a_file)
    else:
        cases["a folder"] = str(tmp_path)
    return cases


@pytest.mark.parametrize(("command", "option"), sorted(WRITTEN))
def test_unwritable_outputs_are_one_line_errors_before_any_work(
    command: str,
    option: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    tripwire: None,
) -> None:
    argv = _minimal_argv(command, tmp_path)
    for why, path in _unwritable(tmp_path, WRITTEN[command, option]).items():
        line = _one_line_error(capsys, [*argv, option, path])
        assert line.startswith(f"lookalike: error: {option}: cannot write"), (why, line)
        assert path in line and "--help" not in line, (why, line)


def test_explain_to_proc_fails_before_loading_a_model(
    capsys: pytest.CaptureFixture[str],
) -> None:
    start = time.perf_counter()
    line = _one_line_error(capsys, ["explain", "a.png", "b.png", "--out", "/proc/nope/x.png"])
    assert "cannot write /proc/nope/x.png" in line
    assert time.perf_counter() - start < 5


def test_check_writable_leaves_nothing_behind(tmp_path: Path) -> None:
    options.check_writable(tmp_path / "new" / "deeper" / "x.png")
    options.check_writable(tmp_path / "new-folder", folder=True)
    options.check_writable(tmp_path, folder=True)
    (tmp_path / "exists.csv").write_text("a,b\n")
    options.check_writable(tmp_path / "exists.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists.csv"]
    with pytest.raises(LookalikeError, match="it is a folder"):
        options.check_writable(tmp_path)
    with pytest.raises(LookalikeError, match="it is a file, not a folder"):
        options.check_writable(tmp_path / "exists.csv", folder=True)
    with pytest.raises(LookalikeError, match="is a file, not a folder"):
        options.check_writable(tmp_path / "exists.csv" / "x.png")
    with pytest.raises(LookalikeError, match="does not accept new files"):
        options.check_writable("/proc/nope/x.png")


# -- help ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_option_has_help_and_shows_its_default(command: str) -> None:
    parser = COMMANDS[command]
    missing = [
        a.option_strings or a.dest
        for a in parser._actions
        if not isinstance(a, argparse._HelpAction) and not (a.help or "").strip()
    ]
    assert not missing, f"{command}: no help for {missing}"
    text = " ".join(parser.format_help().split())
    for action in _options(command):
        shown = action.default is not None and action.default is not False
        shown = shown and action.default != argparse.SUPPRESS and action.nargs != 0
        if shown and "default" not in (action.help or ""):
            assert f"(default: {action.default})" in text, (command, action.option_strings)


def test_set_threads_checks_before_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    """``lookalike.model.device.set_threads`` (torch's setter) is bounded like the engines."""
    import torch

    from lookalike.model.device import set_threads

    def native(n: int) -> None:
        raise AssertionError(f"torch saw {n} threads")

    monkeypatch.setattr(torch, "set_num_threads", native)
    with pytest.raises(LookalikeError, match="at most"):
        set_threads(100_000)
    with pytest.raises(LookalikeError):
        set_threads(0)
