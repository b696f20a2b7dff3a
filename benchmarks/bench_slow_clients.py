"""``lookalike serve`` under a slow-client flood: open files, health latency, log size.

Starts a real ``lookalike serve`` (a small random CNN) in a subprocess on a loopback port,
then opens ``FLOOD`` connections that each send half a request and stall (half of them in
the headers, half in a multipart body), as fast as they open. While they sit there it asks
``GET /api/health`` ``PROBES`` times. Reported: the server's most open file descriptors,
how many of the flood's connections the server closed within ``request_timeout`` + 5 s,
the health answers and their median and worst latency, and the server's log size.

Run: ``PYTHONPATH=src python benchmarks/bench_slow_clients.py`` (about 30 s). Needs
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

FLOOD = 2000
PROBES = 20
TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def open_fds(pid: int) -> int:
    return sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from server_helpers import small_model_dir

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = small_model_dir(root)
        port = free_port()
        log = root / "server.log"
        command = [sys.executable, "-m", "lookalike", "serve", "--model", str(model)]
        command += ["--port", str(port), "--data-dir", str(root / "data")]
        command += ["--request-timeout", str(TIMEOUT)]
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
            opened = time.monotonic() - start
            latencies, answers = [], 0
            for _ in range(PROBES):
                t = time.monotonic()
                with contextlib.suppress(httpx.HTTPError):
                    answers += httpx.get(url, timeout=10).status_code == 200
                latencies.append(time.monotonic() - t)
                time.sleep(0.1)
            time.sleep(max(0.0, TIMEOUT + 5 - (time.monotonic() - start)))
            closed = 0
            for conn in flood:
                conn.settimeout(0.01)
                try:
                    while conn.recv(4096):
                        pass
                    closed += 1
                except (ConnectionResetError, BrokenPipeError):
                    closed += 1
                except TimeoutError:
                    pass
                conn.close()
            stop.set()
            watcher.join()
        finally:
            server.terminate()
            server.wait(30)
        size = log.stat().st_size
    print(
        f"{len(flood)} stalled connections opened in {opened:.1f} s against `lookalike serve "
        f"--request-timeout {TIMEOUT:g}` (default `--max-connections 256`, headers due in "
        f"{min(10.0, TIMEOUT):g} s).\n\n"
        "| measure | value |\n|---|---:|\n"
        f"| server's open file descriptors, before → most during the flood | {fds[0]} → "
        f"{max(fds)} |\n"
        f"| stalled connections closed by the server within {TIMEOUT + 5:g} s | {closed} of "
        f"{len(flood)} |\n"
        f"| `/api/health` answered during the flood | {answers} of {PROBES} |\n"
        f"| health latency, median / worst (ms) | {statistics.median(latencies) * 1000:.0f} / "
        f"{max(latencies) * 1000:.0f} |\n"
        f"| server log during the whole run (bytes) | {size} |"
    )


if __name__ == "__main__":
    main()
