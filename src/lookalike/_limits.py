"""Bounds on the numbers handed to native code: CPU threads and batch sizes.

A thread count goes straight to ONNX Runtime or torch, which start that many OS threads:
``--threads 100000`` exhausted a machine's process table (ONNX Runtime) or crashed the
process (torch). So every entry point checks it here first:
:func:`lookalike.inference.load_embedder`, the ONNX session, torch's
(:func:`lookalike.model.device.set_threads`), and the command line's parse-time types
(:mod:`lookalike.cli.options`). It sits on the lowest floor so that all of them can.

The limit follows the machine: at most :data:`THREADS_PER_CORE` threads per usable CPU core
(the cores this process may run on), and never more than :data:`MAX_THREADS`.

Torch-free and NumPy-free (standard library only), so the command line can use it while it
parses its arguments.
"""

from __future__ import annotations

import os

from lookalike.errors import LookalikeError

__all__ = [
    "MAX_BATCH_SIZE",
    "MAX_THREADS",
    "THREADS_PER_CORE",
    "check_batch_size",
    "check_threads",
    "cpu_cores",
    "max_threads",
    "threads_reason",
]

THREADS_PER_CORE = 4
"""Most threads per usable CPU core (more only adds contention)."""

MAX_THREADS = 1024
"""Most threads on any machine, however many cores it has."""

MAX_BATCH_SIZE = 4096
"""Most images per forward pass (4,096 images at 224 px are 2.5 GB of float32 pixels)."""


def cpu_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one), ≥ 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS and Windows have no affinity call
        return max(1, os.cpu_count() or 1)


def max_threads() -> int:
    """The largest thread count accepted here: ``min(4 × cores, 1024)``."""
    return min(MAX_THREADS, THREADS_PER_CORE * cpu_cores())


def threads_reason() -> str:
    """Why the thread limit is what it is, for messages: `` (4 per CPU core, 2 cores)``."""
    if max_threads() < MAX_THREADS:
        return f" ({THREADS_PER_CORE} per CPU core, {cpu_cores()} cores)"
    return ""


def _check_int(value: object, name: str, lo: int, hi: int, why: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise LookalikeError(f"{name} must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise LookalikeError(f"{name} must be at least {lo} and at most {hi}{why}, got {value}")
    return value


def check_threads(threads: int | None, *, name: str = "threads") -> int | None:
    """Validate a CPU thread count before native code sees it.

    Args:
        threads: The count, or ``None`` for the engine's default (passed through).
        name: How the message names it (the command line says ``--threads``).

    Returns:
        ``threads`` unchanged.

    Raises:
        LookalikeError: Not an integer from 1 to :func:`max_threads`.
    """
    if threads is None:
        return None
    return _check_int(threads, name, 1, max_threads(), threads_reason())


def check_batch_size(batch_size: int, *, name: str = "batch_size") -> int:
    """Validate a batch size (images per forward pass).

    Raises:
        LookalikeError: Not an integer from 1 to :data:`MAX_BATCH_SIZE`.
    """
    return _check_int(batch_size, name, 1, MAX_BATCH_SIZE)
