"""``--ray [ADDRESS]``, ``--ray-workers N`` and ``--ray-verbose`` for ``index`` and ``embed``.

Without ``--ray`` nothing here imports Ray. ``--ray`` alone starts a local Ray (its CPUs:
``--ray-workers`` + 1, or the core count) and shuts it down at the end; ``--ray ADDRESS``
joins a running cluster (``auto``, ``ray://host:10001``, ``host:6379``) and fails fast, in one
line, when it cannot be reached.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

from lookalike.cli import options
from lookalike.inference.source import ModelSource

if TYPE_CHECKING:
    from lookalike.inference.ray_data import RayOptions

LOCAL = "local"
"""The value of a bare ``--ray``: start Ray on this machine."""


def add_ray(parser: argparse.ArgumentParser) -> None:
    """Add ``--ray [ADDRESS]``, ``--ray-workers N`` and ``--ray-verbose``."""
    parser.add_argument(
        "--ray",
        nargs="?",
        const=LOCAL,
        default=None,
        metavar="ADDRESS",
        help="read, decode and embed on Ray: alone, a local Ray; or a cluster's address "
        "(auto, ray://HOST:10001, HOST:6379); pip install lookalike[ray]",
    )
    parser.add_argument(
        "--ray-workers",
        type=options.int_in(1, 4096),
        default=None,
        metavar="N",
        help="with --ray: most embedding actors, each loading the model once, 1 to 4096 "
        "(default: one per GPU, else half the CPUs)",
    )
    parser.add_argument(
        "--ray-verbose", action="store_true", help="with --ray: show Ray's own progress and logs"
    )


def ray_options(args: argparse.Namespace, source: ModelSource) -> RayOptions | None:
    """The Ray settings asked for (``None`` without ``--ray``; Ray is then never imported)."""
    if args.ray is None:
        return None
    from lookalike.inference.ray_data import ModelLoader, RayOptions

    loader = ModelLoader(
        source,
        engine=getattr(args, "engine", "auto"),
        device=getattr(args, "device", "auto"),
        threads=getattr(args, "threads", None),
    )
    return RayOptions(loader, workers=args.ray_workers, verbose=args.ray_verbose)


def check(args: argparse.Namespace) -> None:
    """Refuse Ray options given without ``--ray`` (before any work).

    Raises:
        LookalikeError: ``--ray-workers`` or ``--ray-verbose`` without ``--ray``.
    """
    if args.ray is None and (args.ray_workers is not None or args.ray_verbose):
        from lookalike.errors import LookalikeError

        flag = "--ray-workers" if args.ray_workers is not None else "--ray-verbose"
        raise LookalikeError(f"{flag} needs --ray")


@contextmanager
def session(args: argparse.Namespace) -> Iterator[None]:
    """Ray connected for the command (nothing without ``--ray``)."""
    check(args)
    if args.ray is None:
        context: Any = nullcontext()
    else:
        from lookalike.inference.ray_data import ray_session

        address = None if args.ray == LOCAL else args.ray
        context = ray_session(address, workers=args.ray_workers, verbose=args.ray_verbose)
    with context:
        yield
