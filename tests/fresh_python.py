"""For tests of what an import pulls in: run code in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys


def run_fresh(code: str) -> None:
    """Run ``code`` with ``python -c`` in a new process; fail with its stderr if it fails."""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
