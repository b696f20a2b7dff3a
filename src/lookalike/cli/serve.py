"""``lookalike serve``: the web page and REST API (FastAPI, run by uvicorn)."""

from __future__ import annotations

import argparse
import os
import secrets
from typing import TYPE_CHECKING, Any

from lookalike.cli import options
from lookalike.errors import LookalikeError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from lookalike.server.guard import AccessPolicy
    from lookalike.server.limits import ServeLimits


def cmd_serve(args: argparse.Namespace) -> int:
    """Load the model (and index), then serve until interrupted."""
    try:
        import uvicorn  # noqa: F401  (checked here, used by _run)

        from lookalike.server import create_app
    except ImportError as exc:
        raise LookalikeError(
            f"the web server needs FastAPI and uvicorn ({exc.name} is missing): "
            "pip install 'lookalike[server]'"
        ) from exc
    from lookalike.model.device import set_threads

    if args.max_upload_mb <= 0:
        raise LookalikeError(f"--max-upload-mb must be positive, got {args.max_upload_mb}")
    access, limits = _access(args), _limits(args)
    _check_port(args.host, args.port)  # before the model loads, in one line
    set_threads(options.threads(args))
    head = None
    if args.head:
        from lookalike.model.head_file import read_head_file

        head = read_head_file(args.head)
    app = create_app(
        options.model_source(args) if options.model_named(args) else None,
        index_dir=args.index,
        data_dir=args.data_dir,
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        device=args.device,
        engine=args.engine,
        threads=options.threads(args),
        access=access,
        limits=limits,
    )
    if head is not None:  # checked against the served model's key before serving
        head.attach_to(app.state.lookalike.model, key=app.state.lookalike.model_key)
    _run(app, args, access, limits)
    return 0


def _check_port(host: str, port: int) -> None:
    """Make sure ``host:port`` can be listened on, as uvicorn will (``SO_REUSEADDR``).

    Raises:
        LookalikeError: The port is taken or the address is not this machine's, in one line
            (instead of uvicorn's ``[Errno 98]`` log line after the model has loaded).
    """
    import errno
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise LookalikeError(f"--host {host}: not an address of this machine ({exc})") from exc
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise LookalikeError(
                    f"port {port} is already in use on {host} (another server?): "
                    f"stop it or choose another --port"
                ) from exc
            reason = exc.strerror or type(exc).__name__
            raise LookalikeError(f"cannot listen on {host}:{port}: {reason}") from exc


def register(sub: Any) -> None:
    """Add ``serve`` to the sub-command parsers."""
    p = sub.add_parser("serve", help="web page and REST API: compare, label pairs, train a head")
    p.add_argument("--index", metavar="INDEX_DIR", help="index folder for image search")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=options.port, default=8000, help="TCP port, 1 to 65535")
    p.add_argument(
        "--data-dir",
        default="lookalike-data",
        metavar="DIR",
        help="where labelled pairs and the trained head are kept (default ./lookalike-data)",
    )
    p.add_argument(
        "--max-upload-mb",
        type=options.float_in(0, 1024, lo_open=True),
        default=20.0,
        metavar="MB",
        help="largest image upload, more than 0 and at most 1024 (default 20)",
    )
    p.add_argument(
        "--head",
        metavar="FILE",
        help="serve with this head file (.safetensors), e.g. one trained on the static page",
    )
    p.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="the web server's log level",
    )
    _add_security(p)
    options.add_model(p)
    options.add_engine(p)
    options.add_runtime(p)
    p.set_defaults(handler=cmd_serve)


def _add_security(p: argparse.ArgumentParser) -> None:
    """The flags that say who may use the server and how much it takes on."""
    g = p.add_argument_group("access and limits")
    g.add_argument(
        "--allow-host",
        action="append",
        metavar="NAME",
        help="also answer requests for this host name (repeatable; loopback names always; "
        "'*' for any, only with --token)",
    )
    g.add_argument(
        "--token",
        metavar="TOKEN",
        help="require this secret on every API request ('auto' makes one; default "
        "$LOOKALIKE_TOKEN); needed when --host is not a loopback address",
    )
    g.add_argument(
        "--request-timeout",
        type=options.float_in(0, 3600, lo_open=True),
        default=60.0,
        metavar="SECONDS",
        help="time a client has to send one request, upload included (default 60)",
    )
    g.add_argument(
        "--max-connections",
        type=options.int_in(8, 65536),
        default=256,
        metavar="N",
        help="open connections at most (default 256)",
    )
    g.add_argument(
        "--max-busy",
        type=options.int_in(1, 256),
        metavar="N",
        help="image requests (compare, explain, search, pairs) at once; one waiting longer "
        "than 20 s gets 503 (default: one per CPU core, 2 to 8)",
    )
    g.add_argument(
        "--max-pairs",
        type=options.int_in(1, 10_000_000),
        default=10_000,
        metavar="N",
        help="labelled pairs kept (default 10000)",
    )
    g.add_argument(
        "--max-pair-mb",
        type=options.float_in(0, 2**20, lo_open=True),
        default=2048.0,
        metavar="MB",
        help="disk the labelled pairs' images may take (default 2048)",
    )


def _access(args: argparse.Namespace) -> AccessPolicy:
    """Who may use the server: ``--allow-host``, and the token (``--token``, else
    ``$LOOKALIKE_TOKEN``; ``auto`` makes one), required off loopback."""
    from lookalike.server.guard import AccessPolicy

    token = args.token if args.token is not None else os.environ.get("LOOKALIKE_TOKEN") or None
    if token == "auto":
        token = secrets.token_urlsafe(24)
    return AccessPolicy.for_bind(args.host, args.allow_host or (), token)


def _limits(args: argparse.Namespace) -> ServeLimits:
    from lookalike.server.limits import ServeLimits, default_max_busy

    return ServeLimits(  # each number was checked when the command line was parsed
        max_busy=args.max_busy or default_max_busy(),
        queue_seconds=min(20.0, args.request_timeout / 2),
        request_timeout=args.request_timeout,
        header_timeout=min(10.0, args.request_timeout),
        max_connections=args.max_connections,
        max_pairs=args.max_pairs,
        max_pair_bytes=max(1, int(args.max_pair_mb * 2**20)),
    )


def _run(app: FastAPI, args: argparse.Namespace, access: AccessPolicy, limits: ServeLimits) -> None:
    """Print where the page is (with the token to open it), then serve until interrupted."""
    import uvicorn

    from lookalike.server.runner import make_config

    shown = f"[{args.host}]" if ":" in args.host else args.host
    login = f"?token={access.token}" if access.token else ""
    print(f"lookalike serve: http://{shown}:{args.port}/{login}  (API docs at /docs)", flush=True)
    if access.token:
        print(
            "  open that URL once: the page keeps the token in a cookie; API clients send "
            f"'Authorization: Bearer TOKEN'. Host names answered: {access.describe_hosts()}",
            flush=True,
        )
    config = make_config(
        app, host=args.host, port=args.port, limits=limits, log_level=args.log_level
    )
    uvicorn.Server(config).run()
