"""The one progress helper: tqdm bars on a terminal, nothing elsewhere, and a summary line.

Long library functions take ``progress: bool``; the command line passes
``sys.stderr.isatty()``. A bar is drawn only when ``progress`` is asked for *and* stderr is a
terminal, so pipes, logs and CI never get carriage-return noise. :func:`done` prints the
one-line summary a command ends with, terminal or not.

* :func:`bar`: a tqdm bar (disabled unless shown) over an iterable or a known total.
* :class:`Phases`: one bar over named phases of a job whose steps have no common unit
  ("guard", "final evaluation", "plots", "saving"); the current phase is the bar's label.
* :func:`map_chunks`: apply a batch function over a sequence in chunks with a bar, and
  stack the results; :func:`embed_chunks` does it with an embedder's ``embed``.
* :func:`done`: ``"<what> in 12.3 s"`` on stderr.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np

if TYPE_CHECKING:
    from tqdm import tqdm

__all__ = ["Phases", "bar", "done", "embed_chunks", "map_chunks", "showing"]

T = TypeVar("T")


def showing(progress: bool) -> bool:
    """Whether a bar asked for with ``progress`` is drawn: only on a terminal (stderr)."""
    return bool(progress) and sys.stderr.isatty()


def bar(
    iterable: Iterable[T] | None = None,
    *,
    desc: str,
    total: int | None = None,
    unit: str = "it",
    progress: bool,
    leave: bool = False,
) -> tqdm[T]:
    """A tqdm bar on stderr, drawn only when ``progress`` is on and stderr is a terminal.

    Args:
        iterable: What to iterate over (``None``: update the bar by hand).
        desc: The label, naming the phase (``"eval: embedding"``).
        total: Number of steps (``None``: ``len(iterable)`` when it has one).
        unit: What one step is (``"img"``, ``"batch"``, ``"pair"``).
        progress: The caller's wish; the bar is still hidden when stderr is no terminal.
        leave: Keep the finished bar on screen (default: erase it).

    Returns:
        The bar (a disabled one is a no-op wrapper around ``iterable``).
    """
    from tqdm import tqdm

    return tqdm(
        iterable,
        desc=desc,
        total=total,
        unit=unit,
        disable=not showing(progress),
        leave=leave,
        file=sys.stderr,
        dynamic_ncols=True,
        smoothing=0.1,
    )


class Phases:
    """One bar over the named phases of a job: ``phases.start("plots")`` names the current one.

    Starting a phase completes the previous one; :meth:`close` (or leaving the ``with``
    block) completes the last. Each phase's seconds are kept in :attr:`seconds` (for
    summaries and tests).

    Args:
        desc: The job (``"train: after the epochs"``); the bar reads ``desc: phase``.
        total: How many phases will be started (the bar's length).
        progress: Draw the bar (on a terminal only, see :func:`bar`).
    """

    def __init__(self, desc: str, total: int, *, progress: bool) -> None:
        self.desc = desc
        self.seconds: dict[str, float] = {}
        self._bar = bar(desc=desc, total=total, unit="phase", progress=progress)
        self._current: str | None = None
        self._since = time.perf_counter()

    def start(self, phase: str) -> None:
        """Finish the running phase (if any) and show ``phase`` as the running one."""
        self._finish()
        self._current, self._since = phase, time.perf_counter()
        self._bar.set_description_str(f"{self.desc}: {phase}")

    def _finish(self) -> None:
        if self._current is not None:
            self.seconds[self._current] = time.perf_counter() - self._since
            self._bar.update(1)
            self._current = None

    def close(self) -> None:
        """Finish the running phase and take the bar off the screen."""
        self._finish()
        self._bar.close()

    def __enter__(self) -> Phases:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Sliceable(Protocol):
    """Anything with a length that slices (a list, a tensor, an array)."""

    def __len__(self) -> int: ...

    def __getitem__(self, key: slice, /) -> Any: ...


S = TypeVar("S", bound=Sliceable)


def map_chunks(
    fn: Callable[[S], Any],
    items: S,
    size: int,
    *,
    desc: str,
    unit: str = "img",
    progress: bool,
) -> np.ndarray:
    """``fn`` over ``items`` in chunks of ``size``, with a bar counting items; rows stacked.

    Args:
        fn: Maps a chunk (a slice of ``items``) to an array with one row per item (n, ...).
        items: Anything sliceable (a list of images, a tensor, an array).
        size: Items per chunk, at least 1.
        desc, unit, progress: As for :func:`bar`.

    Returns:
        The rows of every chunk concatenated, (len(items), ...).

    Raises:
        ValueError: ``size`` < 1, or ``items`` is empty.
    """
    if size < 1:
        raise ValueError(f"chunk size must be at least 1, got {size}")
    if len(items) == 0:
        raise ValueError("nothing to process")
    rows = []
    with bar(desc=desc, total=len(items), unit=unit, progress=progress) as shown:
        for start in range(0, len(items), size):
            chunk = items[start : start + size]
            rows.append(np.asarray(fn(chunk)))
            shown.update(len(chunk))
    return np.concatenate(rows)


class Embeds(Protocol):
    """Anything with lookalike's ``embed(images, batch_size=…)`` (an engine, a model)."""

    def embed(self, images: Any, *, batch_size: int) -> Any: ...


def embed_chunks(
    embedder: Embeds, images: Sliceable, *, batch_size: int, desc: str, progress: bool
) -> np.ndarray:
    """``embedder.embed`` over ``images`` one batch at a time, with a bar counting images.

    Args:
        embedder: The model or engine.
        images: Image sources, or preprocessed pixels (N, C, H, W).
        batch_size: Images per forward pass (and per bar update).
        desc, progress: As for :func:`bar`.

    Returns:
        The embeddings (N, D).
    """

    def embed(chunk: Any) -> Any:
        return embedder.embed(chunk, batch_size=batch_size)

    return map_chunks(embed, images, batch_size, desc=desc, progress=progress)


def done(what: str, seconds: float) -> None:
    """Print the one-line summary of a finished job on stderr: ``"<what> in 12.3 s"``.

    Args:
        what: What was done, with its counts (``"eval: 3 subjects on 2000 pairs"``).
        seconds: Its wall time.
    """
    print(f"{what} in {seconds:.1f} s", file=sys.stderr, flush=True)
