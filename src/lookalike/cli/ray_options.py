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


def add_ray(
    parser: argparse.ArgumentParser,
    *,
    what: str = "read, decode and embed on Ray",
    workers: bool = True,
) -> None:
    """Add ``--ray [ADDRESS]``, ``--ray-workers N`` (unless ``workers`` is false) and
    ``--ray-verbose``; ``what`` starts the help of ``--ray``."""
    parser.add_argument(
        "--ray",
        nargs="?",
        const=LOCAL,
        default=None,
        metavar="ADDRESS",
        help=f"{what}: alone, a local Ray; or a cluster's address "
        "(auto, ray://HOST:10001, HOST:6379); pip install lookalike[ray]",
    )
    if workers:
        _add_workers(parser)
    parser.add_argument(
        "--ray-verbose", action="store_true", help="with --ray: show Ray's own progress and logs"
    )


def _add_workers(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ray-workers",
        type=options.int_in(1, 4096),
        default=None,
        metavar="N",
        help="with --ray: most embedding actors, each loading the model once, 1 to 4096 "
        "(default: one per GPU, else half the CPUs)",
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


def address(args: argparse.Namespace) -> str | None:
    """The cluster to join (``None``: start a local Ray) for a given ``--ray``."""
    return None if args.ray == LOCAL else str(args.ray)


def check(args: argparse.Namespace) -> None:
    """Refuse Ray options given without ``--ray`` (before any work).

    Raises:
        LookalikeError: ``--ray-workers`` or ``--ray-verbose`` without ``--ray``.
    """
    workers = getattr(args, "ray_workers", None)  # not an option of every command
    if args.ray is None and (workers is not None or args.ray_verbose):
        from lookalike.errors import LookalikeError

        flag = "--ray-workers" if workers is not None else "--ray-verbose"
        raise LookalikeError(f"{flag} needs --ray")


@contextmanager
def session(args: argparse.Namespace) -> Iterator[None]:
    """Ray connected for the command (nothing without ``--ray``)."""
    check(args)
    if args.ray is None:
        context: Any = nullcontext()
    else:
        from lookalike.inference.ray_data import ray_session

        context = ray_session(address(args), workers=args.ray_workers, verbose=args.ray_verbose)
    with context:
        yield
