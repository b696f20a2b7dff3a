"""``lookalike serve``: a web page and REST API over the library (FastAPI).

Build the app with :func:`create_app` and run it with uvicorn, or use the command line::

    lookalike serve --model demo-output/model --port 8000
"""

from __future__ import annotations

from lookalike.server.app import create_app

__all__ = ["create_app"]
