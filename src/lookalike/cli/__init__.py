"""The ``lookalike`` command: a thin shell over the library.

Each sub-command lives in its own module (``cli/<command>.py``, with a ``register(sub)``
that adds its parser) and is a shell over one library function; the option groups they
share are in :mod:`lookalike.cli.options`. This module only registers them and maps errors:
anything a user can get wrong ends as one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from lookalike._version import __version__
from lookalike.cli import compare, evaluate, explain, export, helptext, index, models, serve, train
from lookalike.cli import map as map_
from lookalike.cli.options import Parser
from lookalike.errors import LookalikeError

EXIT_USER_ERROR = 2
Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser (exposed for documentation and tests)."""
    parser = Parser(prog="lookalike", description="Image similarity with Siamese networks.")
    parser.add_argument("--version", action="version", version=f"lookalike {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for command in (compare, models, train, evaluate, serve, explain, map_, index, export):
        command.register(sub)
    helptext.describe(parser, sub.choices)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code.

    A usage mistake (an unknown option, a value out of range, an output that cannot be
    written) is caught while parsing, before any work, and reported like every other user
    error: one line on stderr, exit code 2. ``--help`` and ``--version`` exit 0.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)  # e.g. to print a resume command
        handler: Handler = args.handler
        return handler(args)
    except LookalikeError as exc:
        print(f"lookalike: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("lookalike: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
