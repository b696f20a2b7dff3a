"""Answering from ASGI middleware: one JSON error response, sent before the app runs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.types import Send

__all__ = ["send_json", "send_raw"]


async def send_json(
    send: Send, status: int, detail: str, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    """Send ``{"detail": detail}`` with ``status`` (the API's error shape)."""
    body = json.dumps({"detail": detail}).encode()
    await send_raw(send, status, body, [(b"content-type", b"application/json"), *headers])


async def send_raw(
    send: Send, status: int, body: bytes, headers: Sequence[tuple[bytes, bytes]]
) -> None:
    """Send a whole response: ``headers`` plus length, no-store and nosniff."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                *headers,
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                (b"x-content-type-options", b"nosniff"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
