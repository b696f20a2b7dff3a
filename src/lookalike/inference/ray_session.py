"""Connecting to Ray for one job: :func:`ray_session` (local or a cluster), quietly.

Ray is imported only inside these functions: without ``--ray`` lookalike never imports it.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lookalike.errors import LookalikeError, first_line

__all__ = ["import_ray", "ray_session"]

_INSTALL = "Ray is not installed: pip install lookalike[ray]"


def import_ray() -> Any:
    """Import Ray and Ray Data (only ever called with ``--ray``)."""
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise LookalikeError(_INSTALL) from exc
    return ray


@contextmanager
def ray_session(
    address: str | None = None,
    *,
    workers: int | None = None,
    verbose: bool = False,
    runtime_env: dict[str, Any] | None = None,
) -> Iterator[None]:
    """Connect to Ray for the duration of a ``with`` block (shut down after, if started here).

    Ray is started with usage statistics off, no dashboard and worker logs kept off the
    driver. When Ray is already initialised in this process, it is used as it is.

    Args:
        address: ``None``: the cluster named by ``RAY_ADDRESS`` when it is set (Ray's own
            convention), else start a local Ray with ``workers + 1`` CPUs (one for reading
            and decoding; the core count when ``workers`` is ``None``). Else a cluster:
            ``"auto"``, ``"ray://host:10001"`` (Ray Client) or ``"host:6379"``.
        workers: Embedding actors planned (sizes a local Ray).
        verbose: Keep Ray's own log lines.
        runtime_env: Ray's runtime environment for the job, e.g.
            ``{"py_modules": [lookalike]}`` to ship this lookalike to nodes that have its
            dependencies but not lookalike itself.

    Raises:
        LookalikeError: Ray is not installed, or the cluster cannot be reached (one line).
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray = import_ray()
    _quiet(verbose)
    if ray.is_initialized():
        yield
        return
    settings: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": verbose,
        "logging_level": logging.INFO if verbose else logging.ERROR,
    }
    if runtime_env is not None:
        settings["runtime_env"] = runtime_env
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is None:
        settings["num_cpus"] = (workers + 1) if workers else (os.cpu_count() or 1)
    else:
        _check_reachable(address)
    try:
        with _quiet_start(verbose):
            ray.init(address=address, **settings)
    except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError, …
        where = "a local Ray" if address is None else f"the Ray cluster at {address!r}"
        raise LookalikeError(f"cannot start or reach {where}: {first_line(exc)}") from None
    try:
        _quiet(verbose)
        yield
    finally:
        ray.shutdown()


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast when a ``host:port`` / ``ray://host:port`` address does not answer.

    ``ray.init`` itself retries an unreachable GCS for minutes; ``"auto"`` and other forms
    are left to Ray (it fails at once when no local cluster runs).

    Raises:
        LookalikeError: Nothing accepts a TCP connection at that address.
    """
    import socket

    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise LookalikeError(
            f"cannot reach the Ray cluster at {address!r}: {reason} (is it running? "
            "`ray start --head` starts one)"
        ) from None


@contextmanager
def _quiet_start(verbose: bool) -> Iterator[None]:
    """Keep the driver's Ray core logs (C++, written to file descriptor 2) to fatal errors.

    Ray Data's actor pools make Ray's core log an error-level line about constructor
    arguments on every run (ray-project/ray#53727), harmless here; and setting the level
    from the environment logs a line of its own, so ``ray.init`` runs with descriptor 2 on
    ``/dev/null`` (its failures are raised as exceptions, which the caller words).
    """
    if verbose or "RAY_BACKEND_LOG_LEVEL" in os.environ:
        yield
        return
    os.environ["RAY_BACKEND_LOG_LEVEL"] = "fatal"  # read once, as the driver connects
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with Path(os.devnull).open("wb") as null:
            os.dup2(null.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)
        del os.environ["RAY_BACKEND_LOG_LEVEL"]


def _quiet(verbose: bool) -> None:
    """Ray Data's progress bars and log lines: off unless ``verbose``."""
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = verbose
    context.print_on_execution_start = verbose
    logging.getLogger("ray").setLevel(logging.INFO if verbose else logging.ERROR)
    # a failed pipeline comes back as an exception (worded by the caller): no log trace too
    logging.getLogger("ray.data").setLevel(logging.INFO if verbose else logging.CRITICAL)
