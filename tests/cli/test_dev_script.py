"""``bash scripts/dev run`` works from the user's own folder, as the README shows."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "src" / "lookalike" / "samples"


def _script_env() -> Path:
    """The environment folder ``scripts/dev`` would use (same hash as the script)."""
    text = b"".join(
        (ROOT / "requirements" / name).read_bytes()
        for name in ("constraints.txt", "weights.txt", "system.txt")
    )
    return Path(sys.prefix).parent / hashlib.sha256(text).hexdigest()[:16]


@pytest.mark.skipif(
    Path(sys.prefix) != _script_env() or not (Path(sys.prefix) / ".lookalike-complete").is_file(),
    reason="tests are not running inside the environment scripts/dev manages",
)
def test_run_resolves_relative_paths_in_the_callers_folder(tmp_path: Path) -> None:
    shutil.copy(SAMPLES / "chelsea.jpg", tmp_path / "a.jpg")
    shutil.copy(SAMPLES / "chelsea_edited.jpg", tmp_path / "b.jpg")
    argv = ["bash", str(ROOT / "scripts" / "dev"), "run", "lookalike", "compare", "a.jpg", "b.jpg"]
    argv += ["--json"]
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert '"cosine"' in done.stdout
    # An output path is relative to the caller too.
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "dev"), "run", "sh", "-c", "pwd > where.txt"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "where.txt").read_text().strip() == str(tmp_path)
