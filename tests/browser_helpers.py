"""For the browser tests (the page of ``lookalike serve`` and the static page): headless
Chromium through Playwright, and the page's own gestures."""

from __future__ import annotations

import base64
import functools
import http.server
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
COMPARED = "document.getElementById('result').dataset.busy === 'false'"
"""True once the page shows the scores of the pair chosen last."""


def playwright_or_skip() -> Any:
    """``playwright.sync_api``; skips the calling test module without Chromium or Playwright."""
    if not CHROMIUM.exists():
        pytest.skip(
            "browser tests need Debian's chromium at /usr/bin/chromium (apt-get install chromium)",
            allow_module_level=True,
        )
    return pytest.importorskip(
        "playwright.sync_api",
        reason="browser tests need the playwright package (pip install playwright)",
    )


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (Debian's), closed on exit."""
    sync_api = playwright_or_skip()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class _QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def static_server(folder: Path) -> Iterator[str]:
    """A plain static file server (``http.server``, like GitHub Pages: files, no routes) for
    ``folder`` on a free loopback port; yields its URL (no trailing slash)."""
    handler = functools.partial(_QuietFiles, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def write(folder: Path, name: str, data: bytes) -> str:
    """Write ``data`` to ``folder/name`` and return the path as a string."""
    path = folder / name
    path.write_bytes(data)
    return str(path)


def choose_pair(page: Any, a: str, b: str) -> None:
    """Pick two images and wait for the comparison of exactly these two."""
    page.set_input_files("#file-a", a)
    page.set_input_files("#file-b", b)  # starts the last comparison, synchronously
    page.wait_for_function(COMPARED)


def phone_screenshots(page: Any, name: str) -> Path:
    """Check a 390 px wide page does not scroll sideways, then save ``test-artifacts/``
    ``{name}-390x844.png`` (the viewport) and ``{name}-390-full.png`` (the whole page)."""
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scroll
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / f"{name}-390x844.png"
    page.screenshot(path=str(shot))
    assert Image.open(shot).size == (390, 844)
    page.screenshot(path=str(ARTIFACTS / f"{name}-390-full.png"), full_page=True)
    return shot


@contextmanager
def uvicorn_site(app: Any) -> Iterator[str]:
    """A real uvicorn server for the ASGI ``app`` on a free loopback port; yields its URL."""
    uvicorn = pytest.importorskip("uvicorn", reason="the server needs uvicorn (lookalike[server])")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def drop_files(page: Any, zone: str, named: list[tuple[str, bytes]]) -> None:
    """Drag-and-drop files (name, PNG bytes) onto the element ``#zone``, the way a browser
    delivers them: one DataTransfer with every file, dragover then drop."""
    page.evaluate(
        """([zone, named]) => {
            const transfer = new DataTransfer();
            for (const [name, b64] of named) {
                const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                transfer.items.add(new File([bytes], name, { type: "image/png" }));
            }
            const target = document.getElementById(zone);
            const init = { dataTransfer: transfer, bubbles: true, cancelable: true };
            target.dispatchEvent(new DragEvent("dragover", init));
            target.dispatchEvent(new DragEvent("drop", init));
        }""",
        [zone, [[name, base64.b64encode(data).decode()] for name, data in named]],
    )


def desktop_and_phone_screenshots(page: Any, name: str) -> list[Path]:
    """Save ``test-artifacts/{name}-1280x900.png`` and, after the no-sideways-scroll check,
    ``{name}-390x844.png`` (viewport) and ``{name}-390-full.png``; leaves the page at 390×844."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.set_viewport_size({"width": 1280, "height": 900})
    wide = ARTIFACTS / f"{name}-1280x900.png"
    page.screenshot(path=str(wide))
    page.set_viewport_size({"width": 390, "height": 844})
    return [wide, phone_screenshots(page, name)]


def open_offline_page(browser: Any, url: str, **context: Any) -> tuple[Any, list[str]]:
    """The page at ``url`` in a new context with the network cut (only ``url``'s own server,
    ``data:`` and ``blob:`` answer), once it is ready. Returns the page and a list that
    collects problems: external requests, page errors, console errors (a failed request's
    own console line excepted: the page shows those errors itself)."""
    ctx = browser.new_context(accept_downloads=True, **context)
    problems: list[str] = []

    def only_localhost(route: Any) -> None:
        if route.request.url.startswith((url + "/", "data:", "blob:")):
            route.continue_()
        else:
            problems.append(f"external request: {route.request.url}")
            route.abort()

    ctx.route("**/*", only_localhost)
    page = ctx.new_page()
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda msg: (
            problems.append(f"console: {msg.text}")
            if msg.type == "error" and "Failed to load resource" not in msg.text
            else None
        ),
    )
    page.goto(url + "/")
    page.wait_for_function("document.body.dataset.ready === 'true'", timeout=120_000)
    return page, problems
