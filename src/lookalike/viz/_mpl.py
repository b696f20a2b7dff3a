"""The package's one way to matplotlib: ``pyplot()`` with the headless Agg backend.

Every figure of :mod:`lookalike.viz` asks :func:`pyplot` for ``matplotlib.pyplot``, so
matplotlib is imported on the first figure drawn (never by ``import lookalike.viz``), the
backend is always Agg (no display needed), and a missing matplotlib is one clear
:class:`~lookalike.errors.LookalikeError`. :func:`save` writes and closes a figure.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lookalike.errors import LookalikeError

__all__ = ["pyplot", "save"]


def pyplot() -> Any:
    """``matplotlib.pyplot`` with the Agg backend.

    Raises:
        LookalikeError: matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise LookalikeError("plots need matplotlib: pip install lookalike[plots]") from exc
    return plt


def save(fig: Any, path: str | os.PathLike[str], *, tight: bool = False) -> Path:
    """Write a figure to ``path`` (parent folders created) and close it.

    Args:
        fig: A matplotlib figure.
        path: The PNG to write.
        tight: Crop to the drawn area (``bbox_inches="tight"``), for figures whose legend
            or title lies outside the axes; otherwise the layout is tightened first.

    Returns:
        The path written.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if tight:
        fig.savefig(out, bbox_inches="tight")
    else:
        fig.tight_layout()
        fig.savefig(out)
    pyplot().close(fig)
    return out
