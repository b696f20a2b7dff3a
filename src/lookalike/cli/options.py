"""Option groups shared by the sub-commands, the typed values they take, and what they become.

Every command module imports this one (never ``lookalike.cli`` itself), so the command line
is a DAG: ``cli/__init__`` → ``cli/<command>`` → ``cli/options`` → the library.

* :class:`Parser` — the ``lookalike`` argument parser: a mistake (an unknown option, a value
  out of range, an output that cannot be written) raises :class:`CommandLineError`, which
  ``main`` prints as one line and exit code 2, like every other user error; ``--help`` shows
  each option's default (:class:`HelpFormatter`);
* typed values, checked **while the arguments are parsed**, before any model is loaded, with
  the allowed range in the message: :func:`int_in`, :func:`float_in`, and the ready-made
  :data:`probability`, :data:`open_fraction`, :data:`cosine`, :data:`port`, :data:`seed`,
  :data:`batch_size`, :data:`image_size`, :data:`thread_count`; :func:`output_file` and
  :func:`output_folder` (checked by :func:`check_writable`, the one writability test);
* :func:`add_model` → :func:`model_source`: ``--model``/``--backbone``/``--weights``/
  ``--no-pretrained``/``--image-size`` become one :class:`~lookalike.inference.ModelSource`;
* :func:`add_runtime` (``--device``, ``--threads``), :func:`add_engine` (``--engine``),
  :func:`add_batch_size` (``--batch-size``) and :func:`add_out` (``--out``, checked);
* :func:`load_model` (the PyTorch model) and :func:`load_embedder` (an inference engine).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Generic, NoReturn, TypeVar

from lookalike._limits import (
    MAX_BATCH_SIZE,
    check_threads,
    max_threads,
    threads_reason,
)
from lookalike.errors import LookalikeError
from lookalike.inference.source import ModelSource

if TYPE_CHECKING:
    from lookalike.inference.embedder import BaseEmbedder
    from lookalike.model.network import SiameseModel

# --------------------------------------------------------------------------- the parser


class CommandLineError(LookalikeError):
    """A mistake on the command line: an unknown option, a missing or invalid value."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """``--help`` with each option's default appended, ``(default: 32)``.

    Descriptions and epilogs keep their line breaks (the examples are one per line).

    Unlike :class:`argparse.ArgumentDefaultsHelpFormatter`, it says nothing for flags (which
    take no value) or options whose default is ``None`` (there is no value to show), nor when
    the help already speaks of its default.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        shown = default is not None and default is not False and action.nargs != 0
        shown = shown and default != argparse.SUPPRESS  # 0 is shown: `in (None, False)` hid it
        if shown and "default" not in text and (action.option_strings or action.nargs == "?"):
            text += " (default: %(default)s)"
        return text


_TYPED_MESSAGE = re.compile(r"^argument ([^:]+): (must be |cannot write)")
"""argparse's wording of a message from the typed values below (option names have no colon)."""


class Parser(argparse.ArgumentParser):
    """The ``lookalike`` parser: its sub-command parsers are of this class too.

    A usage mistake raises :class:`CommandLineError` (one line, no usage block) instead of
    exiting, so ``main`` reports it like any other user error: one line, exit code 2.
    ``--help`` and ``--version`` still exit 0.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> NoReturn:
        """Raise :class:`CommandLineError` with ``message`` as one line."""
        typed = _TYPED_MESSAGE.match(message)
        if typed:  # "argument --threads: must be …" → "--threads must be …"
            glue = " " if typed.group(2) == "must be " else ": "
            message = f"{typed.group(1)}{glue}{message[typed.end(1) + 2 :]}"
        else:
            message = f"{message} (see '{self.prog} --help')"
        raise CommandLineError(" ".join(message.split()))


# --------------------------------------------------------------------------- typed values

N = TypeVar("N", int, float)


def _show(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


class Ranged(Generic[N]):
    """An argparse ``type=``: a number, parsed and checked against its range.

    Build one with :func:`int_in` or :func:`float_in`. Not-a-number text, ``nan``, ``inf``
    and values outside the range are refused with the range in the message
    (``--batch-size must be at least 1 and at most 4096, got 0``).

    Attributes:
        kind: ``int`` or ``float``.
        lo, hi: The bounds.
        lo_open, hi_open: Whether a bound itself is excluded.
        why: Where the bounds come from, appended to the message (may be empty).
    """

    def __init__(
        self,
        kind: Callable[[str], N],
        lo: N,
        hi: N,
        *,
        lo_open: bool = False,
        hi_open: bool = False,
        why: str = "",
    ) -> None:
        if not lo <= hi:
            raise ValueError(f"empty range {lo}..{hi}")
        self.kind: Callable[[str], N] = kind
        self.lo: N = lo
        self.hi: N = hi
        self.lo_open, self.hi_open, self.why = lo_open, hi_open, why
        self.__name__ = "integer" if kind is int else "number"  # argparse's name for it

    def describe(self) -> str:
        """The range in words: ``at least 1 and at most 8``, ``more than 0 and less than 1``."""
        low = f"more than {_show(self.lo)}" if self.lo_open else f"at least {_show(self.lo)}"
        high = f"less than {_show(self.hi)}" if self.hi_open else f"at most {_show(self.hi)}"
        return f"{low} and {high}{self.why}"

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, int | float) or isinstance(value, bool):
            return False
        if not math.isfinite(value):
            return False
        above = bool(value > self.lo if self.lo_open else value >= self.lo)
        below = bool(value < self.hi if self.hi_open else value <= self.hi)
        return above and below

    def __call__(self, text: str) -> N:
        """Parse ``text``.

        Raises:
            argparse.ArgumentTypeError: Not a number of this kind, or out of range.
        """
        try:
            value: N = self.kind(text)
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(
                f"must be {'an integer' if self.kind is int else 'a number'}, "
                f"{self.describe()}, got {text!r}"
            ) from None
        if value not in self:
            raise argparse.ArgumentTypeError(f"must be {self.describe()}, got {text}")
        return value

    def __repr__(self) -> str:
        name = "int_in" if self.kind is int else "float_in"
        return f"{name}({self.lo!r}, {self.hi!r})"


def int_in(lo: int, hi: int, *, why: str = "") -> Ranged[int]:
    """An integer from ``lo`` to ``hi`` (both included), as an argparse ``type=``.

    Args:
        lo, hi: The bounds.
        why: Where they come from, shown in the message (``" (4 per CPU core, 2 cores)"``).
    """
    return Ranged(int, lo, hi, why=why)


def float_in(
    lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False, why: str = ""
) -> Ranged[float]:
    """A finite number from ``lo`` to ``hi``, as an argparse ``type=``.

    Args:
        lo, hi: The bounds.
        lo_open, hi_open: Exclude the bound itself (``float_in(0, 1, lo_open=True)``: (0, 1]).
        why: Where they come from, shown in the message.
    """
    return Ranged(float, float(lo), float(hi), lo_open=lo_open, hi_open=hi_open, why=why)


SEED_MAX = 2**32 - 1
"""The largest seed NumPy accepts."""

MAX_IMAGE_SIZE = 2048
"""Largest model input side accepted from the command line, in pixels."""

probability = float_in(0, 1)
"""A share or a probability, 0 and 1 included."""
open_fraction = float_in(0, 1, lo_open=True, hi_open=True)
"""A share strictly between 0 and 1 (a validation split, a false-accept rate)."""
cosine = float_in(-1, 1)
"""A cosine similarity."""
port = int_in(1, 65535)
"""A TCP port."""
seed = int_in(0, SEED_MAX)
"""A random seed (NumPy's range)."""
batch_size = int_in(1, MAX_BATCH_SIZE)
"""Images per forward pass (:data:`lookalike._limits.MAX_BATCH_SIZE`)."""
image_size = int_in(8, MAX_IMAGE_SIZE)
"""A model input side in pixels."""
thread_count = int_in(1, max_threads(), why=threads_reason())
"""CPU threads: at most 4 per usable core (:func:`lookalike._limits.max_threads`)."""


# --------------------------------------------------------------------------- output paths


def check_writable(path: str | os.PathLike[str], *, folder: bool = False) -> Path:
    """Check, before any long work, that ``path`` can be written (created if missing).

    The folder that would hold it (the nearest one that exists, since writers create the
    missing ones) must take a new file: a temporary file is created there and removed at
    once, which is the only test that is right for read-only mounts, ``/proc`` and root alike.

    Args:
        path: The output file, or with ``folder=True`` the output folder.
        folder: Whether ``path`` is a folder to write into.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        LookalikeError: ``path`` is a folder where a file is wanted (or the reverse), lies
            under a file, or its folder does not accept new files.
    """
    target = Path(path)
    where = target
    try:
        if target.exists():
            if folder and not target.is_dir():
                raise LookalikeError(f"cannot write into {target}: it is a file, not a folder")
            if not folder and target.is_dir():
                raise LookalikeError(f"cannot write {target}: it is a folder")
            if not folder and not os.access(target, os.W_OK):
                raise LookalikeError(f"cannot write {target}: the file is read-only")
            where = target if folder else target.absolute().parent
        else:
            where = target.absolute().parent
            while not where.exists():
                where = where.parent
            if not where.is_dir():
                raise LookalikeError(f"cannot write {target}: {where} is a file, not a folder")
        handle, probe = tempfile.mkstemp(dir=where, prefix=".lookalike-write-check-")
        os.close(handle)
        Path(probe).unlink()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise LookalikeError(
            f"cannot write {target}: {where} does not accept new files ({reason})"
        ) from exc
    return target


def _output(folder: bool) -> Callable[[str], str]:
    def check(text: str) -> str:
        try:
            check_writable(text, folder=folder)
        except LookalikeError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text

    check.__name__ = "output folder" if folder else "output file"
    return check


output_file = _output(folder=False)
"""An argparse ``type=`` for a file the command writes (see :func:`check_writable`)."""
output_folder = _output(folder=True)
"""An argparse ``type=`` for a folder the command writes into (see :func:`check_writable`)."""


# --------------------------------------------------------------------------- option groups


def add_runtime(parser: argparse.ArgumentParser) -> None:
    """``--device`` and ``--threads``."""
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N"
    )
    parser.add_argument(
        "--threads",
        type=thread_count,
        default=None,
        metavar="N",
        help=f"CPU threads, 1 to {thread_count.hi} (default: the engine's choice)",
    )


def add_model(parser: argparse.ArgumentParser) -> None:
    """The options that name a model (see :func:`model_source`)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--model", metavar="DIR", help="a lookalike model folder")
    group.add_argument(
        "--backbone", metavar="NAME", help="a registered backbone (default mobilenet_v2)"
    )
    parser.add_argument("--weights", metavar="FILE", help="explicit pretrained weights file")
    parser.add_argument(
        "--no-pretrained", action="store_true", help="random backbone weights (explicit choice)"
    )
    parser.add_argument(
        "--image-size",
        type=image_size,
        metavar="PX",
        help=f"model input size in pixels, {image_size.lo} to {image_size.hi} "
        "(default: the model's)",
    )


def add_out(
    parser: argparse.ArgumentParser,
    metavar: str,
    help: str,
    *,
    folder: bool = False,
    default: str | None = None,
    required: bool = True,
) -> None:
    """``--out``: the file (or with ``folder=True`` the folder) the command writes.

    Checked while the arguments are parsed (:func:`check_writable`), before any work. It is
    required unless ``required=False`` or it has a ``default``.
    """
    parser.add_argument(
        "--out",
        required=required and default is None,
        default=default,
        type=output_folder if folder else output_file,
        metavar=metavar,
        help=help,
    )


def add_overwrite(parser: argparse.ArgumentParser) -> None:
    """``--overwrite``: allow replacing what an earlier run wrote to ``--out``."""
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace what an earlier run wrote to --out (a non-empty --out is refused otherwise)",
    )


def claim_out_folder(path: str | os.PathLike[str], *, overwrite: bool) -> None:
    """Make sure writing the ``--out`` folder loses nothing the user did not agree to lose.

    An empty or missing folder is fine. A non-empty one is refused unless ``overwrite``; with
    it, the folder's old contents are deleted first (so no file of the earlier run mixes with
    the new one), but only when they are recognisably lookalike's own: a model folder
    (``config.json`` of format ``lookalike.model``) or a report (``report.md``).

    Raises:
        LookalikeError: The folder holds files and ``overwrite`` is off, or it is not a
            lookalike folder.
    """
    import json
    import shutil

    folder = Path(path)
    if not folder.is_dir() or not any(folder.iterdir()):
        return
    if not overwrite:
        raise LookalikeError(
            f"--out {folder} already holds files (an earlier run?): choose another folder, "
            "or add --overwrite to replace them"
        )
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        ours = isinstance(config, dict) and config.get("format") == "lookalike.model"
    except (OSError, ValueError):
        ours = False
    if not (ours or (folder / "report.md").is_file()):
        raise LookalikeError(
            f"--overwrite: {folder} is not a lookalike model or report folder; "
            "its files are not deleted (choose another --out)"
        )
    for child in folder.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def add_batch_size(parser: argparse.ArgumentParser, *, default: int = 32) -> None:
    """``--batch-size``: images per forward pass, 1 to :data:`MAX_BATCH_SIZE`."""
    parser.add_argument(
        "--batch-size",
        type=batch_size,
        default=default,
        metavar="N",
        help=f"images per forward pass, 1 to {batch_size.hi}",
    )


def add_engine(parser: argparse.ArgumentParser) -> None:
    """``--engine``, and ``--calibration`` for the int8 engine."""
    parser.add_argument(
        "--engine",
        default="auto",
        choices=["auto", "torch", "onnx", "onnx-int8"],
        help="inference engine: auto (ONNX Runtime on CPU, its export cached; torch on CUDA); "
        "onnx-int8: the model's int8 export (see lookalike export --int8)",
    )
    parser.add_argument(
        "--calibration",
        metavar="DIR",
        help="for --engine onnx-int8: images to quantise the model on when no int8 export "
        "is cached yet",
    )


def model_named(args: argparse.Namespace) -> bool:
    """Whether any model option was given on the command line."""
    return bool(
        getattr(args, "model", None)
        or getattr(args, "backbone", None)
        or getattr(args, "weights", None)
        or getattr(args, "no_pretrained", False)
        or getattr(args, "image_size", None)
    )


def model_source(args: argparse.Namespace) -> ModelSource:
    """The model the options name (the default backbone when none)."""
    return ModelSource(
        folder=getattr(args, "model", None) or None,
        backbone=getattr(args, "backbone", None) or None,
        pretrained=False if getattr(args, "no_pretrained", False) else None,
        weights=getattr(args, "weights", None) or None,
        image_size=getattr(args, "image_size", None),
    )


def threads(args: argparse.Namespace) -> int | None:
    """``--threads``, validated (again, for namespaces not built by the parser).

    Raises:
        LookalikeError: Not from 1 to :func:`~lookalike._limits.max_threads`.
    """
    return check_threads(getattr(args, "threads", None), name="--threads")


def load_model(args: argparse.Namespace, source: ModelSource | None = None) -> SiameseModel:
    """The PyTorch model of ``source`` (default: the options' model) on ``--device``."""
    from lookalike.inference.select import build_model
    from lookalike.model.device import set_threads

    set_threads(threads(args))
    model = build_model(source or model_source(args))
    return model.to_device(args.device)


def load_embedder(args: argparse.Namespace, source: ModelSource | None = None) -> BaseEmbedder:
    """``source`` (default: the options' model) as an inference engine.

    ONNX Runtime on CPU never imports torch when the export is cached.
    """
    from lookalike.inference.select import load_embedder as load

    return load(
        source or model_source(args),
        engine=getattr(args, "engine", "auto"),
        device=args.device,
        threads=threads(args),
        calibration=getattr(args, "calibration", None),
    )
