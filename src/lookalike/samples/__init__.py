"""Sample photos bundled with lookalike (from scikit-image's public-domain sample data).

``chelsea`` (a cat), ``chelsea_edited`` (the same photo cropped, resized, brightened and
recompressed as JPEG quality 60) and ``coffee`` (a cup of espresso).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

SAMPLE_NAMES: tuple[str, ...] = ("chelsea", "chelsea_edited", "coffee")


def sample_paths() -> dict[str, Path]:
    """Return {name: path} of the bundled sample photos."""
    root = resources.files(__name__)
    return {name: Path(str(root.joinpath(f"{name}.jpg"))) for name in SAMPLE_NAMES}
