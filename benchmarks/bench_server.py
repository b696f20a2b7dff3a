"""Web API under load: ``POST /api/compare`` from 1 and from 16 concurrent clients.

Starts a real ``lookalike serve`` (uvicorn, the default pretrained ``mobilenet_v2``) in a
subprocess on a loopback port, then measures, in the same run and against the same server:

* a single-client baseline (one request at a time), and
* 16 concurrent clients (threads, one ``httpx.Client`` each) for 30 s,

each phase bounded in time and in request count. Every request uploads the same two
photos (the bundled ``chelsea.jpg`` and ``coffee.jpg``) as multipart form data. Reported:
p50/p99 latency, requests/s, errors (must be zero), and the 16-client/1-client ratios.
The clients run on the same machine as the server and take CPU from it.

Run: ``bash scripts/dev run python benchmarks/bench_server.py`` (about 3 minutes on 2 cores).
Writes the ``bench_server`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from _report import write_section


@dataclass
class Phase:
    """Latencies (seconds) and errors of one load phase."""

    clients: int
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    client_cpu: float = 0.0  # CPU seconds the load generator itself used

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) * 1000 if self.latencies else float("nan")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(port: int, data_dir: Path, engine: str) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable, "-m", "lookalike", "serve", "--port", str(port),
        "--data-dir", str(data_dir), "--engine", engine, "--log-level", "warning",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"server exited: {proc.stderr.read().decode() if proc.stderr else ''}"
            )
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError("server did not start in 300 s")


def run_phase(
    url: str,
    files: dict[str, tuple[str, bytes, str]],
    clients: int,
    seconds: float,
    max_requests: int,
) -> Phase:
    """``clients`` threads post compare requests until ``seconds`` pass or ``max_requests`` ran."""
    phase = Phase(clients)
    lock = threading.Lock()
    issued = 0
    deadline = time.perf_counter() + seconds

    def worker() -> None:
        nonlocal issued
        with httpx.Client(timeout=120) as client:
            while time.perf_counter() < deadline:
                with lock:
                    if issued >= max_requests:
                        return
                    issued += 1
                start = time.perf_counter()
                try:
                    response = client.post(url, files=files)
                    ok = response.status_code == 200 and "cosine" in response.json()
                    error = "" if ok else f"HTTP {response.status_code}: {response.text[:100]}"
                except httpx.HTTPError as exc:
                    error = f"{type(exc).__name__}: {exc}"
                elapsed = time.perf_counter() - start
                with lock:
                    (phase.errors.append(error) if error else phase.latencies.append(elapsed))

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    start, cpu = time.perf_counter(), time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    phase.seconds = time.perf_counter() - start
    phase.client_cpu = time.process_time() - cpu
    return phase


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0, help="concurrent phase length")
    parser.add_argument("--baseline-seconds", type=float, default=15.0)
    parser.add_argument("--max-requests", type=int, default=5000, help="per phase")
    parser.add_argument(
        "--engines", default="auto,torch", help="server --engine values to measure, in order"
    )
    args = parser.parse_args()

    from lookalike.samples import sample_paths

    samples = sample_paths()
    files = {
        "a": ("chelsea.jpg", samples["chelsea"].read_bytes(), "image/jpeg"),
        "b": ("coffee.jpg", samples["coffee"].read_bytes(), "image/jpeg"),
    }
    rows = []
    for engine in args.engines.split(","):
        port = free_port()
        with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp:
            proc = start_server(port, Path(tmp), engine)
            try:
                base = f"http://127.0.0.1:{port}"
                served = httpx.get(f"{base}/api/health").json()["engine"]
                url = f"{base}/api/compare"
                run_phase(url, files, 2, 3.0, 20)  # warm-up
                single = run_phase(url, files, 1, args.baseline_seconds, args.max_requests)
                many = run_phase(url, files, args.clients, args.seconds, args.max_requests)
            finally:
                proc.terminate()
                proc.wait(30)
        rows.append((engine, served, single, many))
        for phase in (single, many):
            print(
                f"engine {engine} ({served}), {phase.clients:>2} client(s): "
                f"{len(phase.latencies)} requests in {phase.seconds:.1f} s "
                f"= {phase.rps:.2f} req/s, p50 {phase.pct(50):.0f} ms, "
                f"p99 {phase.pct(99):.0f} ms, errors {len(phase.errors)}"
            )
            for error in phase.errors[:3]:
                print(f"  error: {error}")

    lines = [
        f"`POST /api/compare` with two photos (chelsea.jpg {len(files['a'][1]) // 1024} KB, "
        f"coffee.jpg {len(files['b'][1]) // 1024} KB) against `lookalike serve` "
        "(uvicorn, default `mobilenet_v2` at 224 px, CPU) on loopback. Single client: one "
        f"request at a time for {args.baseline_seconds:.0f} s; then {args.clients} concurrent "
        f"clients (threads, one httpx client each) for {args.seconds:.0f} s; at most "
        f"{args.max_requests} requests per phase. The clients share the machine's "
        f"{os.cpu_count()} cores with the server.",
        "",
        "| engine | clients | requests | req/s | p50 ms | p99 ms | errors | client CPU (cores) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for engine, served, single, many in rows:
        label = f"{engine} ({served})" if engine != served else engine
        for phase in (single, many):
            lines.append(
                f"| {label} | {phase.clients} | {len(phase.latencies)} | {phase.rps:.2f} | "
                f"{phase.pct(50):.0f} | {phase.pct(99):.0f} | {len(phase.errors)} | "
                f"{phase.client_cpu / phase.seconds:.2f} |"
            )
    lines.append("")
    for engine, served, single, many in rows:
        lines.append(
            f"- **{engine} ({served})**: {args.clients} clients get "
            f"**{many.rps / single.rps:.2f}×** the single client's requests/s; "
            f"p50 latency {many.pct(50) / single.pct(50):.1f}× the single client's "
            f"({many.pct(50):.0f} vs {single.pct(50):.0f} ms); "
            f"{len(single.errors) + len(many.errors)} errors."
        )
    lines.append(
        "\nOne inference thread embeds whatever has queued (up to 4 images on CPU, 32 on "
        "CUDA) in one forward pass, so concurrent requests queue instead of oversubscribing "
        "the cores: latency grows with the queue while throughput holds. Errors must be zero."
    )
    write_section("bench_server", "Web API under load", "\n".join(lines))
    if any(single.errors or many.errors for _, _, single, many in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
