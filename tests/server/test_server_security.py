"""Hardening of ``lookalike serve`` (issue 14): who may drive the server, and what it takes on.

Each test reproduces one failure the red team found: a cross-origin page training a head or
adding pairs, DNS rebinding reading indexed images, exposure on the network without a
token, concurrent heavy requests, slow clients exhausting connections, server paths in
answers, symlinked index files giving 404 links, and unbounded pair storage. Every test is
bounded to seconds.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from lookalike.server import create_app
from server_helpers import (
    LOCAL,
    client_fixture,  # noqa: F401 (the client fixture)
    glyph,
    glyph_index,
    labelled_pairs,
    model_dir_fixture,  # noqa: F401 (the model_dir fixture)
    png_bytes,
    state_of,
)

EVIL = "http://evil.example"
A = png_bytes(glyph(1))
B = png_bytes(glyph(2))
TOKEN = "correct-horse-battery-staple-42"


def two(a: bytes = A, b: bytes = B) -> dict[str, tuple[str, bytes]]:
    return {"a": ("a.png", a), "b": ("b.png", b)}


def add_pairs(client: TestClient, n: int) -> None:
    for a, b, label in labelled_pairs(n):
        response = client.post("/api/pairs", files=two(a, b), data={"label": label})
        assert response.status_code == 201, response.text


def detail(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    text: str = response.json()["detail"]
    return text


# -- 2: cross-origin requests and DNS rebinding -----------------------------------------------


def test_cross_origin_training_and_pairs_are_refused(client: TestClient) -> None:
    add_pairs(client, 4)  # no Origin, like curl: works as before
    state = state_of(client)
    attack = {"Origin": EVIL, "Content-Type": "text/plain"}
    refused = client.post("/api/train-head", content=b"", headers=attack)
    assert "cross-origin" in detail(refused, 403)
    assert not state.jobs.busy and state.model.head is None
    pair = client.post("/api/pairs", files=two(), data={"label": "same"}, headers={"Origin": EVIL})
    assert "evil.example" in detail(pair, 403)
    # Browsers that send fetch metadata instead of (or besides) Origin.
    for site in ("cross-site", "same-site"):
        sneaky = client.post(
            "/api/pairs", files=two(), data={"label": "same"}, headers={"Sec-Fetch-Site": site}
        )
        assert site in detail(sneaky, 403)
    # A sandboxed frame or a file: page sends Origin: null; another port is another origin.
    for origin in ("null", "http://localhost:9999", "https://localhost.evil.example"):
        assert client.delete("/api/pairs/x", headers={"Origin": origin}).status_code == 403
    # Reading through the API from another site is refused too (fetch with mode cors).
    assert client.get("/api/pairs", headers={"Origin": EVIL}).status_code == 403
    assert len(state.pairs) == 4


def test_own_page_and_clients_without_origin_keep_working(client: TestClient) -> None:
    own = {"Origin": LOCAL, "Sec-Fetch-Site": "same-origin"}
    added = client.post("/api/pairs", files=two(), data={"label": "same"}, headers=own)
    assert added.status_code == 201, added.text
    curl = client.post("/api/pairs", files=two(B, B), data={"label": "different"})
    assert curl.status_code == 201, curl.text
    assert client.post("/api/compare", files=two()).status_code == 200
    # The page itself may be opened from a link on another site (navigation, not the API).
    assert client.get("/", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 200


def test_rebound_host_names_are_refused(model_dir: Path, tmp_path: Path) -> None:
    root = glyph_index(model_dir, tmp_path, 3)
    app = create_app(model_dir, index_dir=tmp_path / "index", data_dir=tmp_path / "d")
    with TestClient(app, base_url=LOCAL) as client:
        url = "/api/index/image?path=g0.png"
        assert client.get(url).status_code == 200
        rebound = client.get(url, headers={"Host": "rebind.attacker.example"})
        message = detail(rebound, 403)
        assert "rebind.attacker.example" in message and "--allow-host" in message
        assert client.get("/", headers={"Host": "rebind.attacker.example:8000"}).status_code == 403
        for host in ("127.0.0.1:8000", "[::1]:8000", "localhost", "127.1.2.3"):
            assert client.get("/api/health", headers={"Host": host}).status_code == 200, host
    from lookalike.server.guard import AccessPolicy

    named = AccessPolicy(allowed_hosts=("photos.lan",))
    app = create_app(model_dir, data_dir=tmp_path / "d2", access=named)
    with TestClient(app, base_url="http://photos.lan:8000") as client:
        assert client.get("/api/health").status_code == 200
        own = {"Origin": "http://photos.lan:8000"}
        assert client.post("/api/pairs", files=two(), data={"label": "same"}, headers=own)
        assert client.get("/api/health", headers={"Host": "other.lan"}).status_code == 403
    assert root.is_dir()


# -- the token ----------------------------------------------------------------------------------


def test_token_is_required_on_the_api_and_the_page_gets_a_cookie(
    model_dir: Path, tmp_path: Path
) -> None:
    from lookalike.server.guard import AccessPolicy

    app = create_app(model_dir, data_dir=tmp_path / "d", access=AccessPolicy(token=TOKEN))
    with TestClient(app, base_url="http://127.0.0.1:8000", follow_redirects=False) as client:
        missing = client.get("/api/health")
        assert "token" in detail(missing, 401)
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert (
            client.get("/api/health", headers={"Authorization": "Bearer nope"}).status_code == 401
        )
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert client.get("/api/health", headers=bearer).status_code == 200
        assert client.get("/").status_code == 200  # the page loads; its API calls need the token
        assert client.get("/?token=wrong").status_code == 401
        login = client.get(f"/?token={TOKEN}")
        assert login.status_code == 303 and login.headers["location"] == "/"
        cookie = login.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert cookie.startswith("lookalike-token-8000=")
        # The client now holds the cookie, as the browser does.
        assert client.get("/api/health").status_code == 200
        # A token never lets another site in.
        evil = client.post("/api/train-head", headers={**bearer, "Origin": EVIL})
        assert evil.status_code == 403


def test_binding_beyond_loopback_needs_a_token(model_dir: Path) -> None:
    """``serve --host 0.0.0.0`` without a token refuses to start (before loading anything)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "LOOKALIKE_OFFLINE": "1", "PYTHONPATH": _pythonpath()}
    env.pop("LOOKALIKE_TOKEN", None)
    command = [sys.executable, "-m", "lookalike", "serve", "--model", str(model_dir)]
    try:
        run = subprocess.run(
            [*command, "--host", "0.0.0.0", "--port", str(port)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("serve --host 0.0.0.0 without a token started serving")
    assert run.returncode == 2, run.stderr
    assert "--token" in run.stderr and "0.0.0.0" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    from lookalike.server.guard import AccessPolicy

    assert AccessPolicy.for_bind("192.168.1.5", token=TOKEN).host_allowed("192.168.1.5:8000")
    everywhere = AccessPolicy.for_bind("0.0.0.0", ["photos.lan"], token=TOKEN)
    for host in ("10.0.0.7:8000", "[fe80::1]:8000", "photos.lan", "localhost:8000"):
        assert everywhere.host_allowed(host), host
    assert not everywhere.host_allowed("rebind.attacker.example:8000")
    with pytest.raises(Exception, match="token"):
        AccessPolicy.for_bind("::")
    with pytest.raises(Exception, match="token"):
        AccessPolicy(allowed_hosts=("*",))


def test_serve_limits_are_checked_when_parsed(capsys: pytest.CaptureFixture[str]) -> None:
    from lookalike.cli import main

    for flag, value, words in (
        ("--max-busy", "0", "at least 1"),
        ("--request-timeout", "0", "more than 0"),
        ("--max-connections", "3", "at least 8"),
        ("--max-pairs", "-1", "at least 1"),
        ("--max-pair-mb", "nan", "more than 0"),
    ):
        assert main(["serve", flag, value]) == 2
        err = capsys.readouterr().err
        assert flag in err and words in err and len(err.strip().splitlines()) == 1, err
    for bad in ("short", "sixteen chars; with a semicolon"):
        assert main(["serve", "--token", bad]) == 2
        assert "at least 16 characters" in capsys.readouterr().err


def _pythonpath() -> str:
    src = str(Path(__file__).resolve().parents[2] / "src")
    return os.pathsep.join([src, *filter(None, [os.environ.get("PYTHONPATH")])])


# -- 3: heavy requests at once, and sizes -------------------------------------------------------


def test_heavy_requests_beyond_the_limit_get_503_and_health_answers(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lookalike.server.limits import ServeLimits

    limits = ServeLimits(max_busy=1, queue_seconds=0.2)
    app = create_app(model_dir, data_dir=tmp_path / "d", limits=limits)
    with TestClient(app, base_url=LOCAL) as client:
        state = state_of(client)
        inside, release = threading.Event(), threading.Event()
        embed = state.batcher.embed

        def slow_embed(arrays: np.ndarray) -> np.ndarray:
            inside.set()
            release.wait(20)
            return embed(arrays)

        monkeypatch.setattr(state.batcher, "embed", slow_embed)
        first: list[int] = []
        worker = threading.Thread(
            target=lambda: first.append(client.post("/api/compare", files=two()).status_code)
        )
        worker.start()
        try:
            assert inside.wait(20)
            answers: list[Any] = []
            second = threading.Thread(
                target=lambda: answers.append(client.post("/api/search", files={"image": A}))
            )
            second.start()
            second.join(10)
            assert not second.is_alive(), "the second heavy request waited without bound"
            busy = answers[0]
            assert "busy" in detail(busy, 503) and "--max-busy" in busy.json()["detail"]
            assert busy.headers["retry-after"]
            assert client.get("/api/health").status_code == 200  # light requests never wait
        finally:
            release.set()
            worker.join(20)
        assert first == [200]
        assert client.post("/api/compare", files=two()).status_code == 200  # free again


def _png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR declaring ``width × height``, then one empty IDAT."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b""))


def test_images_refused_for_their_size_get_413_with_the_reason(client: TestClient) -> None:
    bomb = _png_header_only(9000, 9000)  # 81 megapixels in 60 bytes
    start = time.monotonic()
    response = client.post("/api/compare", files=two(bomb, B))
    text = detail(response, 413)
    assert "a (a.png)" in text and "too large" in text
    assert time.monotonic() - start < 5


def test_every_size_refusal_of_the_loader_is_413(client: TestClient) -> None:
    strip = png_bytes(np.full((1, 10_000), 128, dtype=np.uint8))  # ~100 bytes, 10000 × 1
    for endpoint in ("/api/explain", "/api/compare"):
        start = time.monotonic()
        text = detail(client.post(endpoint, files=two(A, strip)), 413)
        assert "b (b.png)" in text and "aspect" in text, text
        assert time.monotonic() - start < 5


# -- 5: slow clients against a real uvicorn -----------------------------------------------------


@pytest.fixture()
def live(model_dir: Path, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A real uvicorn on 127.0.0.1, started the way ``lookalike serve`` starts it, with short
    timeouts and a connection cap of 40."""
    import uvicorn

    from lookalike.server.limits import ServeLimits
    from lookalike.server.runner import make_config

    limits = ServeLimits(
        header_timeout=1.0, request_timeout=2.0, queue_seconds=1.0, max_connections=40
    )
    app = create_app(model_dir, data_dir=tmp_path / "d", limits=limits)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = make_config(app, host="127.0.0.1", port=port, limits=limits, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield {"port": port}
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def _health(port: int) -> int:
    import httpx

    return httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=5).status_code


def _closed_by_server(conn: socket.socket) -> bool:
    """Whether the server closes ``conn`` (EOF or reset, perhaps after an answer) before the
    socket's timeout."""
    try:
        while conn.recv(4096):
            pass
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return True


def test_slow_clients_are_closed_and_health_keeps_answering(
    live: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    port = live["port"]
    caplog.set_level(logging.WARNING)
    slow: list[socket.socket] = []
    try:
        for k in range(60):  # more than the cap of 40
            conn = socket.create_connection(("127.0.0.1", port), timeout=5)
            if k % 2:  # headers that never end
                conn.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            else:  # a body that never comes
                conn.sendall(
                    b"POST /api/pairs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Content-Type: multipart/form-data; boundary=x\r\n"
                    b"Content-Length: 100000\r\n\r\n--x\r\n"
                )
            slow.append(conn)
        start = time.monotonic()
        assert _health(port) == 200
        assert time.monotonic() - start < 3
        # Every slow connection is closed within the timeouts (1 s headers, 2 s body).
        deadline = time.monotonic() + 8
        for conn in slow:
            conn.settimeout(max(0.1, deadline - time.monotonic()))
            assert _closed_by_server(conn), "a slow connection is still open"
        assert time.monotonic() - start < 8
        assert _health(port) == 200
    finally:
        for conn in slow:
            conn.close()
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) <= 5, [r.getMessage() for r in lines]  # a summary, not one per connection


def test_a_client_that_stops_reading_is_dropped() -> None:
    """A response the client never reads does not hold its connection for ever."""
    import uvicorn

    from lookalike.server.limits import ServeLimits
    from lookalike.server.runner import make_config

    size = 256 * 2**20

    async def big(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        chunk = b"\0" * 2**20
        for _ in range(size // len(chunk)):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    limits = ServeLimits(header_timeout=1.0, request_timeout=1.5, queue_seconds=1.0)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = make_config(big, host="127.0.0.1", port=port, limits=limits, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive()
            time.sleep(0.05)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            conn.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            time.sleep(4)  # not reading: the server's writes stall
            received = 0
            try:
                while data := conn.recv(2**20):
                    received += len(data)
            except ConnectionResetError:
                pass
        assert received < size, "the stalled response was kept open to the end"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def test_repeated_warnings_are_summarised() -> None:
    from lookalike.server.runner import RepeatFilter

    now = [0.0]
    repeat = RepeatFilter(every=10, clock=lambda: now[0])

    def record() -> logging.LogRecord:
        return logging.LogRecord("uvicorn.error", logging.WARNING, "", 0, "Invalid HTTP", (), None)

    passed = [repeat.filter(record()) for _ in range(1000)]
    assert sum(passed) == 1
    now[0] = 11.0
    again = record()
    assert repeat.filter(again) and "999 more" in again.getMessage()


# -- 10: paths, symlinks, pair storage ---------------------------------------------------------


def test_a_failed_training_job_shows_no_server_paths(client: TestClient, tmp_path: Path) -> None:
    add_pairs(client, 4)
    state = state_of(client)
    for stored in state.pairs.images.iterdir():
        stored.write_bytes(b"no longer an image")
    started = client.post("/api/train-head", json={"steps": 5})
    assert started.status_code == 202, started.text
    deadline = time.monotonic() + 60
    while (job := client.get(started.json()["url"]).json())["state"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert job["state"] == "failed" and job["error"]
    assert str(tmp_path) not in job["error"] and "/tmp" not in job["error"], job["error"]
    assert "DATA_DIR" in job["error"] or ".../" in job["error"], job["error"]


def test_error_messages_lose_absolute_paths(tmp_path: Path) -> None:
    from lookalike.server.redact import Redactor

    redact = Redactor({"DATA_DIR": tmp_path / "data", "MODEL_DIR": None})
    message = redact(
        f"cannot read image {tmp_path / 'data' / 'images' / 'x.png'}: truncated; "
        "see /home/alice/secret/config.json. Poll /api/jobs/1 at http://127.0.0.1:8000/api/x"
    )
    assert str(tmp_path) not in message and "/home/alice" not in message
    assert "DATA_DIR/images/x.png" in message and ".../config.json." in message
    assert "/api/jobs/1" in message and "http://127.0.0.1:8000/api/x" in message
    assert redact("C:\\Users\\bob\\pics\\a.png is missing") == ".../a.png is missing"
    # an index whose root is a URI: the URI is named by its role, like a folder
    by_uri = Redactor({"INDEX_ROOT": "s3://acme-private/photos/"})
    said = by_uri("cannot read s3://acme-private/photos/a/b.jpg")
    assert said == "cannot read INDEX_ROOT/a/b.jpg"


def test_search_links_to_symlinked_files_work(model_dir: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    Image.fromarray(glyph(42)).save(outside / "kept-elsewhere.png")
    glyph_index(model_dir, tmp_path, 3, extra=outside / "kept-elsewhere.png")
    app = create_app(model_dir, index_dir=tmp_path / "index", data_dir=tmp_path / "d")
    with TestClient(app, base_url=LOCAL) as client:
        query = {"image": ("q.png", png_bytes(glyph(42)))}
        hits = client.post("/api/search", files=query, data={"k": "4"}).json()["hits"]
        assert hits[0]["path"] == "elsewhere.png"
        for hit in hits:  # every link a search gives answers
            thumb = client.get(hit["url"])
            assert thumb.status_code == 200, (hit, thumb.text)
            assert thumb.headers["content-type"] == "image/jpeg"
        for bad in ("../outside/kept-elsewhere.png", str(outside / "kept-elsewhere.png")):
            assert client.get("/api/index/image", params={"path": bad}).status_code == 404


def test_search_links_to_names_that_are_not_utf8_work(model_dir: Path, tmp_path: Path) -> None:
    """A name with a Latin-1 byte (``caf\\xe9.png``) is shown escaped and its link answers."""
    root = tmp_path / "photos"
    root.mkdir()
    odd = os.fsdecode(os.fsencode(root) + b"/caf\xe9.png")
    Image.fromarray(glyph(5)).save(odd)
    glyph_index(model_dir, tmp_path, 2, folder_made=True)
    app = create_app(model_dir, index_dir=tmp_path / "index", data_dir=tmp_path / "d")
    with TestClient(app, base_url=LOCAL, raise_server_exceptions=False) as client:
        query = {"image": ("q.png", png_bytes(glyph(5)))}
        found = client.post("/api/search", files=query, data={"k": "3"})
        assert found.status_code == 200, found.text
        hit = found.json()["hits"][0]
        assert hit["path"] == "caf\\xe9.png"
        thumb = client.get(hit["url"])
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"


def test_pair_storage_is_bounded(model_dir: Path, tmp_path: Path) -> None:
    from lookalike.server.limits import ServeLimits

    app = create_app(model_dir, data_dir=tmp_path / "d", limits=ServeLimits(max_pairs=2))
    with TestClient(app, base_url=LOCAL) as client:
        add_pairs(client, 2)
        full = client.post("/api/pairs", files=two(), data={"label": "same"})
        text = detail(full, 409)
        assert "full" in text and "--max-pairs" in text
        first = client.get("/api/pairs").json()["pairs"][0]["id"]
        assert client.delete(f"/api/pairs/{first}").status_code == 204
        assert client.post("/api/pairs", files=two(), data={"label": "same"}).status_code == 201
    small = ServeLimits(max_pair_bytes=len(A) + len(B) + 10)
    app = create_app(model_dir, data_dir=tmp_path / "d2", limits=small)
    with TestClient(app, base_url=LOCAL) as client:
        assert client.post("/api/pairs", files=two(), data={"label": "same"}).status_code == 201
        # Stored images again (in a new pair) take no more room; new ones do not fit.
        assert client.post("/api/pairs", files=two(A, A), data={"label": "same"}).status_code == 201
        other = two(png_bytes(glyph(7)), png_bytes(glyph(8)))
        text = detail(client.post("/api/pairs", files=other, data={"label": "same"}), 409)
        assert "--max-pair-mb" in text
        assert len(state_of(client).pairs) == 2
