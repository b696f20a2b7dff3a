"""For the browser tests (the page of ``lookalike serve`` and the static page): headless
Chromium through Playwright, and the page's own gestures."""

from __future__ import annotations

import functools
import http.server
import threading
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
