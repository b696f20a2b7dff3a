"""Write a benchmark's results into its own section of BENCHMARKS.md (replacing the old one)."""

from __future__ import annotations

import platform
import re
from datetime import datetime, timezone
from pathlib import Path

BENCHMARKS_MD = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"
HEADER = (
    "# lookalike benchmarks\n\n"
    "Each section is written by the script it names (run it to refresh). Machines here are\n"
    "shared and noisy, so every figure that matters is a ratio against a baseline measured in\n"
    "the same run; absolute times are context only.\n"
)


def machine() -> str:
    """One line describing where the benchmark ran."""
    import os

    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def write_section(key: str, title: str, body: str) -> None:
    """Replace (or append) the section ``key`` of BENCHMARKS.md with ``body`` (Markdown)."""
    text = BENCHMARKS_MD.read_text(encoding="utf-8") if BENCHMARKS_MD.exists() else HEADER
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    block = (
        f"<!-- begin {key} -->\n## {title}\n\n"
        f"_Written by `benchmarks/{key}.py` on {stamp} ({machine()})._\n\n"
        f"{body.strip()}\n<!-- end {key} -->\n"
    )
    pattern = re.compile(
        rf"<!-- begin {re.escape(key)} -->.*?<!-- end {re.escape(key)} -->\n", re.S
    )
    text = (
        pattern.sub(lambda _: block, text)
        if pattern.search(text)
        else text.rstrip() + "\n\n" + block
    )
    BENCHMARKS_MD.write_text(text, encoding="utf-8")
