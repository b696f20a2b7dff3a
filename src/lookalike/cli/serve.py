"""``lookalike serve``: the web page and REST API (FastAPI, run by uvicorn)."""

from __future__ import annotations

import argparse
from typing import Any

from lookalike.cli import options
from lookalike.errors import LookalikeError


def cmd_serve(args: argparse.Namespace) -> int:
    """Load the model (and index), then serve until interrupted."""
    try:
        import uvicorn

        from lookalike.server import create_app
    except ImportError as exc:
        raise LookalikeError(
            f"the web server needs FastAPI and uvicorn ({exc.name} is missing): "
            "pip install 'lookalike[server]'"
        ) from exc
    from lookalike.model.device import set_threads

    if args.max_upload_mb <= 0:
        raise LookalikeError(f"--max-upload-mb must be positive, got {args.max_upload_mb}")
    set_threads(options.threads(args))
    app = create_app(
        options.model_source(args) if options.model_named(args) else None,
        index_dir=args.index,
        data_dir=args.data_dir,
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        device=args.device,
        engine=args.engine,
        threads=options.threads(args),
    )
    print(f"lookalike serve: http://{args.host}:{args.port}/  (API docs at /docs)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


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
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="the web server's log level",
    )
    options.add_model(p)
    options.add_engine(p)
    options.add_runtime(p)
    p.set_defaults(handler=cmd_serve)
