"""How much work ``lookalike serve`` accepts at once, and :class:`BusyLimit`, which enforces
the part of it that is per request.

Every image request (compare, explain, search, adding a pair, starting training) decodes
uploads and runs the model: tens to hundreds of MB of memory each. :class:`BusyLimit` lets
at most ``max_busy`` of them run at once (and at most ``max_explain`` explanations, which
cost about ten times a comparison); a request that finds no free slot waits up to
``queue_seconds`` and is then answered 503 with a reason and ``Retry-After``, before its
body is read. Light requests (health, listings, thumbnails) never wait.

The connection limits (timeouts, most open connections) are enforced by
:mod:`lookalike.server.runner`, the uvicorn front end ``lookalike serve`` uses.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio

from lookalike.server.asgi import send_json

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["HEAVY_ENDPOINTS", "BusyLimit", "ServeLimits", "default_max_busy"]

HEAVY_ENDPOINTS: dict[str, str] = {
    "/api/compare": "compare",
    "/api/explain": "explain",
    "/api/search": "search",
    "/api/embed": "embed",
    "/api/pairs": "add pair",
    "/api/train-head": "train",
}
"""``POST`` paths that decode images or run the model, and what to call them."""

_POLL_SECONDS = 0.02


def default_max_busy() -> int:
    """One heavy request per usable CPU core, at least 2 and at most 8.

    Decoding and embedding are CPU-bound, so more at once only adds memory: the worst upload
    within the limits (a 64-megapixel float TIFF as both images) costs about 650 MB per
    request (``benchmarks/bench_server_busy.py``).
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 2
    return max(2, min(8, cores))


@dataclass(frozen=True)
class ServeLimits:
    """The server's bounds on work, connections and storage.

    Attributes:
        max_busy: Heavy requests (see :data:`HEAVY_ENDPOINTS`) running at once (default
            :func:`default_max_busy`).
        max_explain: Explanations running at once (they also count in ``max_busy``).
        queue_seconds: How long a heavy request waits for a free slot before 503.
        request_timeout: Seconds a client has to send one whole request (headers and
            body); a slower one is disconnected.
        header_timeout: Seconds a client has to send a request's headers.
        max_connections: Open connections; past it, the oldest connection still sending
            its request is closed to make room.
        max_pairs: Labelled pairs the data folder keeps.
        max_pair_bytes: Total bytes of the stored pair images.
    """

    max_busy: int = field(default_factory=default_max_busy)
    max_explain: int = 1
    queue_seconds: float = 20.0
    request_timeout: float = 60.0
    header_timeout: float = 10.0
    max_connections: int = 256
    max_pairs: int = 10_000
    max_pair_bytes: int = 2 * 2**30

    def __post_init__(self) -> None:
        for name in ("max_busy", "max_explain", "max_connections", "max_pairs", "max_pair_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.queue_seconds >= self.request_timeout:
            raise ValueError(
                f"queue_seconds ({self.queue_seconds}) must be less than request_timeout "
                f"({self.request_timeout}): a waiting request's body is still unread"
            )
        for name in ("queue_seconds", "request_timeout", "header_timeout"):
            value = getattr(self, name)
            if not 0 <= value < 86_400 or (value == 0 and name != "queue_seconds"):
                raise ValueError(f"{name} must be in (0, 86400) seconds, got {value!r}")


class BusyLimit:
    """ASGI middleware bounding the heavy requests that run at once.

    Args:
        app: The wrapped application.
        limits: ``max_busy``, ``max_explain`` and ``queue_seconds`` are used.
    """

    def __init__(self, app: ASGIApp, *, limits: ServeLimits) -> None:
        self.app = app
        self.limits = limits
        self.busy = 0
        self.explaining = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run a heavy request when a slot is free within the wait, else answer 503."""
        kind = (
            HEAVY_ENDPOINTS.get(scope["path"])
            if scope["type"] == "http" and scope["method"] == "POST"
            else None
        )
        if kind is None:
            await self.app(scope, receive, send)
            return
        explain = kind == "explain"
        deadline = time.monotonic() + self.limits.queue_seconds
        # One event loop runs every request, so the counters need no lock: nothing yields
        # between the test and the increment.
        while not self._free(explain):
            if time.monotonic() >= deadline:
                headers = [(b"retry-after", b"2"), (b"connection", b"close")]
                await send_json(send, 503, self._reason(kind, explain), headers)
                return
            await anyio.sleep(_POLL_SECONDS)
        self.busy += 1
        self.explaining += explain
        try:
            await self.app(scope, receive, send)
        finally:
            self.busy -= 1
            self.explaining -= explain

    def _free(self, explain: bool) -> bool:
        if self.busy >= self.limits.max_busy:
            return False
        return not explain or self.explaining < self.limits.max_explain

    def _reason(self, kind: str, explain: bool) -> str:
        if explain and self.explaining >= self.limits.max_explain:
            running = f"{self.explaining} explanation(s) are running"
        else:
            running = f"{self.busy} image requests (compare, explain, search, pairs) are running"
        return (
            f"the server is busy ({running}; lookalike serve --max-busy): the {kind} request "
            "was not started, try again in a moment"
        )
