"""Peak memory of ``lookalike serve`` under concurrent worst-case uploads, with and without
the busy limit.

Starts a real ``lookalike serve`` (uvicorn, a small random CNN: the model is not what costs
memory here) in a subprocess on a loopback port, then sends ``CLIENTS`` concurrent
``POST /api/compare`` requests, each uploading the worst image within the server's limits:
an 8000 × 8000 32-bit float TIFF (64 megapixels, the server's pixel limit; a few hundred KB
on disk, 256 MB decoded) as both images. Reported per run: the server's peak RSS above its
RSS before the burst (``VmHWM`` − ``VmRSS`` from ``/proc``, Linux only), the answers
(200 / 503), and the wall time.

* **bounded** — the defaults: ``--max-busy`` one per CPU core, 2 to 8 (at most that many
  image requests at once; a request that waits more than 20 s for a slot gets 503 with a
  reason);
* **unbounded** — ``--max-busy 256``: every request runs at once, as before issue 14.

Run: ``PYTHONPATH=src python benchmarks/bench_server_busy.py`` (about a minute on 2 cores;
up to a few GB of memory for the unbounded run). Prints a Markdown section.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from bench_server import free_port

CLIENTS = 8


def worst_tiff() -> bytes:
    """An 8000 × 8000 float32 TIFF that compresses to a few hundred KB (a grey block on
    black)."""
    pixels = np.zeros((8000, 8000), dtype=np.float32)
    pixels[1000:3000, 2000:6000] = 0.5
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="F").save(buffer, format="TIFF", compression="tiff_adobe_deflate")
    return buffer.getvalue()


def proc_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def model_folder(root: Path) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from server_helpers import small_model_dir

    return small_model_dir(root)


def run(model: Path, data: Path, max_busy: int | None, image: bytes) -> dict[str, object]:
    """One server, one burst: peak RSS rise (MB), answers, seconds."""
    port = free_port()
    env = {**os.environ, "LOOKALIKE_OFFLINE": "1"}
    command = [sys.executable, "-m", "lookalike", "serve", "--model", str(model)]
    command += ["--port", str(port), "--data-dir", str(data), "--log-level", "warning"]
    if max_busy is not None:
        command += ["--max-busy", str(max_busy)]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("the server did not start")
            time.sleep(0.2)
        before = proc_kb(server.pid, "VmRSS")
        statuses: list[int] = []
        files = {"a": ("a.tif", image), "b": ("b.tif", image)}

        def client() -> None:
            try:
                response = httpx.post(f"{url}/api/compare", files=files, timeout=300)
                statuses.append(response.status_code)
            except httpx.HTTPError:
                statuses.append(0)

        start = time.monotonic()
        threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
        seconds = time.monotonic() - start
        peak = proc_kb(server.pid, "VmHWM")
    finally:
        server.terminate()
        server.wait(30)
    from lookalike.server.limits import default_max_busy

    return {
        "max_busy": max_busy or default_max_busy(),
        "rise_mb": (peak - before) / 1024,
        "ok": statuses.count(200),
        "busy": statuses.count(503),
        "other": len(statuses) - statuses.count(200) - statuses.count(503),
        "seconds": seconds,
    }


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    image = worst_tiff()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = model_folder(root)
        # Unbounded first: a fresh server each time, so the peaks do not share a history.
        results = [run(model, root / f"data{n}", n, image) for n in (256, None)]
    unbounded, bounded = results
    lines = [
        f"{CLIENTS} concurrent `POST /api/compare`, each with two 8000 × 8000 float32 TIFFs "
        f"({len(image) / 1024:.0f} KB each, 64 megapixels: the server's pixel limit). Peak "
        "server RSS above its RSS before the burst; one fresh server per row.",
        "",
        "| run | --max-busy | peak RSS rise (MB) | 200 | 503 | other | seconds |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in (("unbounded (as before)", unbounded), ("bounded (default)", bounded)):
        lines.append(
            f"| {name} | {r['max_busy']} | {r['rise_mb']:.0f} | {r['ok']} | {r['busy']} | "
            f"{r['other']} | {r['seconds']:.1f} |"
        )
    rise = {name: float(str(r["rise_mb"])) for name, r in (("u", unbounded), ("b", bounded))}
    ratio = rise["b"] / max(1.0, rise["u"])
    lines += ["", f"Bounded / unbounded peak rise: **{ratio:.2f}**."]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
