"""Who may talk to ``lookalike serve``: the Host allow-list, the Origin check, the token.

A server on ``127.0.0.1`` is reachable from every web page the user opens: the browser
sends the page's requests to it. :class:`RequestGuard` (ASGI middleware, outermost) refuses
them before any body is read:

* **Host allow-list** (every request): a ``Host`` header naming anything but an allowed
  name is refused with 403. This defeats DNS rebinding, where an attacker's name
  (``rebind.attacker.example``) is re-pointed at ``127.0.0.1`` so that the attacker's page
  becomes "same-origin" with the server. Loopback names are allowed by default.
* **Origin check** (every ``/api`` request, and every request that is not ``GET``/``HEAD``/
  ``OPTIONS``): a request whose ``Origin`` is not this server, or whose ``Sec-Fetch-Site``
  says ``cross-site``/``same-site``, is refused with 403. The page's own requests carry its
  own origin; clients that send neither header (curl, httpx, the Python client) pass.
* **Token** (when one is set): every ``/api`` request must carry it, as
  ``Authorization: Bearer TOKEN`` or as the cookie the server sets when the page is opened
  once with ``/?token=TOKEN`` (the URL ``lookalike serve`` prints). The cookie is
  ``HttpOnly`` and ``SameSite=Strict``, so no other site's requests carry it. 401 otherwise.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from lookalike.errors import LookalikeError
from lookalike.server.asgi import send_json, send_raw

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["LOOPBACK_NAMES", "AccessPolicy", "RequestGuard", "is_loopback"]

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
"""Host names allowed by default (any ``127.x.y.z`` address is allowed too)."""

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_FOREIGN_FETCH = frozenset({"cross-site", "same-site"})
_COOKIE_PREFIX = "lookalike-token-"
_TOKEN = re.compile(r"[A-Za-z0-9._~-]{16,512}")


def is_loopback(host: str) -> bool:
    """Whether a host name or address is this machine's loopback (``localhost``, 127/8, ::1).

    ``0.0.0.0`` and ``::`` (every interface) are not loopback.
    """
    name = host.strip().strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _host_name(value: str) -> str:
    """The host part of a ``Host`` header value, lower case, without port or brackets."""
    value = value.strip().lower()
    if value.startswith("["):  # [::1]:8000
        return value[1 : value.find("]")] if "]" in value else value
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


@dataclass(frozen=True)
class AccessPolicy:
    """Who the server answers.

    Attributes:
        allowed_hosts: Extra host names (or addresses) the ``Host`` header may name, beside
            the loopback ones; ``"*"`` allows any (only together with a token).
        token: A secret every ``/api`` request must carry, or ``None`` for none.
        ip_literals: Also allow any IP address as the host (a server listening on every
            interface is reached by its addresses). DNS rebinding needs a host *name*, so
            an address cannot be rebound.
    """

    allowed_hosts: tuple[str, ...] = ()
    token: str | None = field(default=None, repr=False)
    ip_literals: bool = False

    def __post_init__(self) -> None:
        if "*" in self.allowed_hosts and not self.token:
            raise LookalikeError(
                "--allow-host '*' answers any host name, which lets other web sites reach "
                "the server through DNS rebinding: set a --token as well"
            )
        if self.token is not None and not _TOKEN.fullmatch(self.token):
            raise LookalikeError(
                "the token must be at least 16 characters among letters, digits and . _ ~ - "
                "(it goes into a URL and a cookie), or use --token auto"
            )

    @classmethod
    def for_bind(
        cls, bind_host: str, allow_hosts: Iterable[str] = (), token: str | None = None
    ) -> AccessPolicy:
        """The policy of a server listening on ``bind_host``.

        A specific bind address is allowed as a host name; listening on every interface
        (``0.0.0.0``, ``::``) allows any IP address; names need ``allow_hosts``. Binding to
        anything but loopback needs a token.

        Raises:
            LookalikeError: A non-loopback bind address without a token, or a bad token.
        """
        if not is_loopback(bind_host) and not token:
            raise LookalikeError(
                f"listening on {bind_host} exposes the server to the network: give "
                "--token TOKEN (or --token auto) so that only those who have it can use it"
            )
        hosts = [h.strip() for h in allow_hosts if h.strip()]
        everywhere = bind_host in ("0.0.0.0", "::", "")
        if not everywhere and not is_loopback(bind_host):
            hosts.append(bind_host)
        return cls(tuple(dict.fromkeys(hosts)), token or None, ip_literals=everywhere)

    def host_allowed(self, host: str) -> bool:
        """Whether a request's ``Host`` header value names this server."""
        if "*" in self.allowed_hosts:
            return True
        name = _host_name(host)
        if not name:
            return False
        if is_loopback(name) and not name.endswith(".localhost"):
            return True
        if self.ip_literals and _is_address(name):
            return True
        return name in {_host_name(h) for h in self.allowed_hosts}

    def describe_hosts(self) -> str:
        """The allowed host names, in words."""
        addresses = ("any IP address",) if self.ip_literals else ()
        return ", ".join((*LOOPBACK_NAMES, *addresses, *self.allowed_hosts))


class RequestGuard:
    """ASGI middleware enforcing an :class:`AccessPolicy` before the app sees a request.

    Args:
        app: The wrapped application.
        policy: Who may talk to it.
    """

    def __init__(self, app: ASGIApp, *, policy: AccessPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse the request (403/401) or pass it on."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            status, detail, extra = refusal
            # The body (if any) is never read, so the connection cannot carry another request.
            await send_json(send, status, detail, [*extra, (b"connection", b"close")])
            return
        login = self.policy.token and scope["path"] == "/" and scope.get("query_string")
        if login and await self._login(scope, headers, send):
            return
        await self.app(scope, receive, send)

    def _refusal(
        self, scope: Scope, headers: dict[str, str]
    ) -> tuple[int, str, list[tuple[bytes, bytes]]] | None:
        host = headers.get("host", "")
        if not self.policy.host_allowed(host):
            shown = repr(host[:100]) if host else "(none)"
            return (
                403,
                f"host {shown} is not allowed: this lookalike server answers "
                f"{self.policy.describe_hosts()} (add a name with lookalike serve --allow-host "
                "NAME)",
                [],
            )
        path: str = scope["path"]
        api = path == "/api" or path.startswith("/api/")
        if api or scope.get("method", "GET") not in _SAFE_METHODS:
            foreign = _foreign_origin(headers, host)
            if foreign is not None:
                return 403, foreign, []
        if api and self.policy.token and not self._has_token(headers, host):
            return (
                401,
                "this lookalike server needs its access token: open the URL lookalike serve "
                "printed (ending in /?token=...), or send 'Authorization: Bearer TOKEN'",
                [(b"www-authenticate", b'Bearer realm="lookalike"')],
            )
        return None

    def _has_token(self, headers: dict[str, str], host: str) -> bool:
        token = self.policy.token
        assert token is not None
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer " and _same(auth[7:].strip(), token):
            return True
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # a malformed cookie header carries no token
            return False
        morsel = cookie.get(_cookie_name(host))
        return morsel is not None and _same(morsel.value, token)

    async def _login(self, scope: Scope, headers: dict[str, str], send: Send) -> bool:
        """``GET /?token=TOKEN``: set the token cookie and redirect to ``/`` (which hides the
        token from the address bar and the history). Returns whether it answered."""
        query = parse_qs(scope["query_string"].decode("latin-1"))
        given = query.get("token", [None])[0]
        if given is None:
            return False
        token = self.policy.token
        assert token is not None
        if not _same(given, token):
            await send_json(send, 401, "wrong access token: copy the URL lookalike serve printed")
            return True
        cookie = (
            f"{_cookie_name(headers.get('host', ''))}={token}; Path=/; HttpOnly; SameSite=Strict"
        )
        if scope.get("scheme") == "https":
            cookie += "; Secure"
        await send_raw(
            send,
            303,
            b"",
            [(b"location", b"/"), (b"set-cookie", cookie.encode("latin-1"))],
        )
        return True


def _same(given: str, token: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "replace"), token.encode("utf-8"))


def _cookie_name(host: str) -> str:
    """One cookie per port: browsers share cookies across the ports of one host name."""
    port = host.rsplit(":", 1)[1] if ":" in host and not host.endswith("]") else "80"
    return _COOKIE_PREFIX + ("".join(ch for ch in port if ch.isdigit()) or "80")


def _foreign_origin(headers: dict[str, str], host: str) -> str | None:
    """Why a request comes from another web site, or ``None`` when it does not."""
    site = headers.get("sec-fetch-site", "").strip().lower()
    if site in _FOREIGN_FETCH:
        return (
            f"cross-origin request refused (Sec-Fetch-Site: {site}): only this server's own "
            "page, and clients that are not browsers, may use the API"
        )
    origin = headers.get("origin")
    if origin is None:
        return None
    if _origin_matches(origin, host):
        return None
    return (
        f"cross-origin request refused: Origin {origin[:100]!r} is not this server; only its "
        "own page, and clients that send no Origin (curl, Python), may use the API"
    )


def _origin_matches(origin: str, host: str) -> bool:
    """Whether ``Origin`` names the host and port of the ``Host`` header (the scheme may
    differ: behind a TLS proxy the page is https while the proxied request is http)."""
    try:
        parts = urlsplit(origin.strip())
        origin_port = parts.port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False  # "null" (sandboxed frames, file: pages) and anything odd
    default = 443 if parts.scheme == "https" else 80
    try:
        host_parts = urlsplit(f"{parts.scheme}://{host.strip()}")
        host_port = host_parts.port
    except ValueError:
        return False
    if host_parts.hostname is None:
        return False
    same_name = parts.hostname.rstrip(".") == host_parts.hostname.rstrip(".")
    return same_name and (origin_port or default) == (host_port or default)
