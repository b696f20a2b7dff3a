"""Running the app under uvicorn with bounded connections: what ``lookalike serve`` starts.

uvicorn alone waits forever for a client that sends its request slowly, and accepts
connections until the process runs out of file descriptors (then ``/api/health`` stops
answering and every failed ``accept`` is logged). :func:`make_config` gives uvicorn an
HTTP protocol, :func:`guarded_protocol`, that

* closes a connection whose request headers have not all arrived ``header_timeout`` seconds
  after it opened (or after its previous response), and one whose body has not all arrived
  after ``request_timeout`` seconds;
* closes a connection whose client has stopped reading our response for
  ``request_timeout`` seconds;
* keeps about ``max_connections`` open: a new connection past it closes the oldest one
  still sending its request (a slow client), so real requests keep getting through; when
  every connection is busy being answered, the new one is closed instead (the listen
  backlog is the cap too, so a burst holds a bounded number of descriptors: at most 596
  for a cap of 256 under 2,000 stalled connections opened in 2 s,
  ``benchmarks/bench_slow_clients.py``);
* logs these closings as one summary line per ``LOG_EVERY`` seconds, not one per
  connection, and repeats of any other uvicorn or asyncio warning at most once per
  ``LOG_EVERY`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from lookalike.server.limits import ServeLimits

if TYPE_CHECKING:
    import uvicorn
    from starlette.types import ASGIApp

__all__ = ["LOG_EVERY", "RepeatFilter", "connection_cap", "guarded_protocol", "make_config"]

LOG_EVERY = 10.0
"""Seconds between two summary lines about closed connections (and repeated warnings)."""

_FD_RESERVE = 64
log = logging.getLogger("lookalike.server")


class _Closings:
    """Counts the connections closed for slowness or the limit, logged as one line per
    :data:`LOG_EVERY` seconds."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.last_log = 0.0

    def add(self, why: str) -> None:
        self.counts[why] = self.counts.get(why, 0) + 1
        now = time.monotonic()
        if now - self.last_log >= LOG_EVERY:
            summary = ", ".join(f"{n} {reason}" for reason, n in sorted(self.counts.items()))
            log.warning("closed connections: %s", summary)
            self.counts.clear()
            self.last_log = now


class _GuardedH11(H11Protocol):
    """uvicorn's h11 protocol with request timeouts and a connection limit."""

    limits: ClassVar[ServeLimits]
    closings: ClassVar[_Closings]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._turn_started = time.monotonic()
        self._paused_since: float | None = None
        self._ticker: asyncio.TimerHandle | None = None
        self._tick_seconds = max(0.05, min(1.0, self.limits.header_timeout / 4))
        if len(self.connections) > self.limits.max_connections and not self._make_room():
            self._drop("over the connection limit")
            return
        self._schedule()

    def connection_lost(self, exc: Exception | None) -> None:
        if getattr(self, "_ticker", None) is not None:
            assert self._ticker is not None
            self._ticker.cancel()
            self._ticker = None
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        self._turn_started = time.monotonic()  # the client's turn: the next request
        super().on_response_complete()

    def _schedule(self) -> None:
        self._ticker = asyncio.get_running_loop().call_later(self._tick_seconds, self._tick)

    def _waiting_for_client(self) -> str | None:
        """``"headers"`` or ``"body"`` while the client owes us part of a request."""
        their = self.conn.their_state
        answered = self.cycle is None or self.cycle.response_complete
        if their is h11.IDLE and answered:
            return "headers"
        if their is h11.SEND_BODY and not answered:
            return "body"
        return None

    def _tick(self) -> None:
        self._ticker = None
        if self.transport.is_closing():
            return
        now = time.monotonic()
        waiting = self._waiting_for_client()
        if waiting == "headers" and now - self._turn_started > self.limits.header_timeout:
            self._drop("timed out sending request headers")
            return
        if waiting == "body" and now - self._turn_started > self.limits.request_timeout:
            self._drop("timed out sending a request body")
            return
        if self.flow is not None and self.flow.write_paused:
            self._paused_since = self._paused_since or now
            if now - self._paused_since > self.limits.request_timeout:
                self._drop("stopped reading the response")
                return
        else:
            self._paused_since = None
        self._schedule()

    def _make_room(self) -> bool:
        """Close the oldest other connection still sending its request; whether one was."""
        slow = [
            c
            for c in self.connections
            if c is not self
            and isinstance(c, _GuardedH11)
            and c._waiting_for_client() is not None
            and not c.transport.is_closing()
        ]
        if not slow:
            return False
        min(slow, key=lambda c: c._turn_started)._drop("closed to make room for new ones")
        return True

    def _drop(self, why: str) -> None:
        self.closings.add(why)
        self.transport.abort()


def guarded_protocol(limits: ServeLimits) -> type[H11Protocol]:
    """An h11 protocol class for uvicorn enforcing ``limits``' timeouts and connection cap.

    Each call makes a new class, so two servers in one process keep separate counts.
    """
    return type("GuardedH11Protocol", (_GuardedH11,), {"limits": limits, "closings": _Closings()})


class RepeatFilter(logging.Filter):
    """Lets each distinct message through at most once per ``every`` seconds, and says how
    many repeats were held back the next time it passes.

    Args:
        every: Seconds.
        clock: The time source (for tests).
    """

    def __init__(self, every: float = LOG_EVERY, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.every = every
        self.clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether to emit ``record``."""
        if record.levelno < logging.WARNING:
            return True
        key = f"{record.name}:{record.msg}"
        now = self.clock()
        if now - self._last.get(key, -self.every) < self.every:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        if len(self._last) > 1000:  # bounded memory, whatever the messages
            self._last.clear()
        self._last[key] = now
        held = self._held.pop(key, 0)
        if held:
            record.msg = f"{record.msg} (and {held} more like it held back)"
        return True


def connection_cap(requested: int) -> int:
    """``requested``, lowered to what the process's file-descriptor limit leaves room for."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return requested
    room = max(8, int(soft) - _FD_RESERVE)
    if requested > room:
        log.warning(
            "at most %d connections (the file-descriptor limit is %d; raise it with ulimit -n)",
            room,
            soft,
        )
    return min(requested, room)


def make_config(
    app: ASGIApp,
    *,
    host: str,
    port: int,
    limits: ServeLimits,
    log_level: str = "info",
    **extra: Any,
) -> uvicorn.Config:
    """A uvicorn configuration serving ``app`` within ``limits``.

    Args:
        app: The application (:func:`lookalike.server.create_app`).
        host: Address to listen on.
        port: TCP port.
        limits: ``header_timeout``, ``request_timeout`` and ``max_connections`` are used.
        log_level: uvicorn's log level.
        **extra: Other :class:`uvicorn.Config` settings.
    """
    import uvicorn

    limits = replace(limits, max_connections=connection_cap(limits.max_connections))
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        http=guarded_protocol(limits),
        timeout_keep_alive=max(1, min(5, int(limits.header_timeout))),
        backlog=min(2048, limits.max_connections),
        **extra,
    )
    # After uvicorn.Config, which configures its loggers.
    repeat = RepeatFilter()
    for name in ("uvicorn.error", "asyncio"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RepeatFilter) for f in logger.filters):
            logger.addFilter(repeat)
    return config
