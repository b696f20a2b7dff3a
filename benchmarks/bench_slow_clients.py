"""``lookalike serve`` under a slow-client flood: open files, health latency, log size.

Starts a real ``lookalike serve`` (a small random CNN) in a subprocess on a loopback port,
and, in the same run, the app under plain uvicorn as ``lookalike serve`` ran it before
issue 14; against each it opens ``FLOOD`` connections that each send half a request and
stall (half in the headers, half in a multipart body), as fast as they open. While they sit
there it asks ``GET /api/health`` ``PROBES`` times. Reported: the server's most open file
descriptors, how many of the flood's connections the server closed within twice
``request_timeout`` + 5 s (connections the kernel queued and the server accepted late
included), the health answers and their median and worst latency, and the server's log
size.

Run: ``PYTHONPATH=src python benchmarks/bench_slow_clients.py`` (about a minute). Needs
``ulimit -n`` above ``FLOOD`` + 100 for the client side. Prints a Markdown section.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench_server import free_port

FLOOD = 2000
PROBES = 20
TIMEOUT = 10.0


def _closed(conn: socket.socket) -> bool:
    """Whether the server has closed ``conn`` by now (EOF or reset, perhaps after an
    answer), without waiting."""
    conn.setblocking(False)
    try:
        while conn.recv(65536):
            pass
    except BlockingIOError:
        return False
    except OSError:
        return True
    return True


def open_fds(pid: int) -> int:
    return sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())


_BEFORE = """
import sys, uvicorn
from lookalike.server import create_app
from lookalike.server.limits import ServeLimits
off = ServeLimits(max_busy=256, queue_seconds=3000, request_timeout=3600)
app = create_app(sys.argv[1], data_dir=sys.argv[2], limits=off)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[3]))
"""
"""How ``lookalike serve`` ran before issue 14: uvicorn's defaults (no request timeouts, no
connection cap) and no busy limit."""


def flood_run(command: list[str], port: int, log: Path) -> dict[str, float]:
    """Start the server, flood it, probe health; the figures of one row."""
    env = {**os.environ, "LOOKALIKE_OFFLINE": "1"}
    with log.open("wb") as out:
        server = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/api/health"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("the server did not start")
            time.sleep(0.2)
        fds = [open_fds(server.pid)]
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                fds.append(open_fds(server.pid))
                time.sleep(0.05)

        watcher = threading.Thread(target=watch)
        watcher.start()
        flood: list[socket.socket] = []
        start = time.monotonic()
        for k in range(FLOOD):
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=5)
                if k % 2:
                    conn.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                else:
                    conn.sendall(
                        b"POST /api/pairs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                        b"multipart/form-data; boundary=x\r\nContent-Length: 100000\r\n\r\n"
                    )
                flood.append(conn)
            except OSError:
                pass
        latencies, answers = [], 0
        for _ in range(PROBES):
            t = time.monotonic()
            with contextlib.suppress(httpx.HTTPError):
                answers += httpx.get(url, timeout=10).status_code == 200
            latencies.append(time.monotonic() - t)
            time.sleep(0.1)
        time.sleep(max(0.0, 2 * TIMEOUT + 5 - (time.monotonic() - start)))
        closed = sum(_closed(conn) for conn in flood)  # all at one moment, not one by one
        for conn in flood:
            conn.close()
        stop.set()
        watcher.join()
    finally:
        server.terminate()
        server.wait(30)
    return {
        "opened": len(flood),
        "fds_before": fds[0],
        "fds_most": max(fds),
        "closed": closed,
        "answers": answers,
        "median_ms": statistics.median(latencies) * 1000,
        "worst_ms": max(latencies) * 1000,
        "log": log.stat().st_size,
    }


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from server_helpers import small_model_dir

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = small_model_dir(root)
        port = free_port()
        before = [sys.executable, "-c", _BEFORE, str(model), str(root / "d0"), str(port)]
        rows["before (plain uvicorn)"] = flood_run(before, port, root / "before.log")
        port = free_port()
        after = [sys.executable, "-m", "lookalike", "serve", "--model", str(model)]
        after += ["--port", str(port), "--data-dir", str(root / "d1")]
        after += ["--request-timeout", str(TIMEOUT)]
        rows["after (lookalike serve)"] = flood_run(after, port, root / "after.log")
    lines = [
        f"{FLOOD} connections that send half a request and stall, opened as fast as they "
        f"open; `lookalike serve --request-timeout {TIMEOUT:g}` (headers due in "
        f"{min(10.0, TIMEOUT):g} s, default `--max-connections 256`) against uvicorn as "
        f"`lookalike serve` ran it before. {PROBES} `/api/health` probes during the flood.",
        "",
        "| run | open fds before → most | stalled closed within "
        f"{2 * TIMEOUT + 5:g} s | health answered | health median / worst (ms) | log (bytes) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['fds_before']:.0f} → {r['fds_most']:.0f} | {r['closed']:.0f} of "
            f"{r['opened']:.0f} | {r['answers']:.0f} of {PROBES} | {r['median_ms']:.0f} / "
            f"{r['worst_ms']:.0f} | {r['log']:.0f} |"
        )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
