"""Keeping the server's file system out of its answers.

Library errors name files by their full path, which is right on the command line and wrong
in an HTTP response: it tells any client where the data folder, the index and the model
live, and the user's name. :class:`Redactor` rewrites a message before it is sent: the
server's known folders become their role (``DATA_DIR``, ``INDEX_DIR``, ``INDEX_ROOT``,
``MODEL_DIR``), and any other absolute path is cut to its last component.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

__all__ = ["Redactor"]

# An absolute POSIX path (not a URL path of this API) or a Windows drive path, starting at
# a word boundary that is not part of a URL ("http://host/x" keeps its path).
_ABSOLUTE = re.compile(
    r"(?<![\w:/.~-])(?:/(?!api/|static/|docs\b|openapi\.json)|[A-Za-z]:[\\/])"
    r"[^\s'\"`<>|;,()]*"
)


class Redactor:
    """Rewrites server paths in messages sent to clients.

    Args:
        roots: Role → folder, e.g. ``{"DATA_DIR": Path("lookalike-data")}``; each folder is
            matched as given, absolute and resolved.
    """

    def __init__(self, roots: Mapping[str, str | os.PathLike[str] | None]) -> None:
        pairs: list[tuple[str, str]] = []
        for role, folder in roots.items():
            if folder is None:
                continue
            if isinstance(folder, str) and "://" in folder:  # a URI root: as given
                pairs.append((folder.rstrip("/"), role))
                continue
            path = Path(folder)
            for form in {str(path.absolute()), str(path.resolve())}:
                if len(form) > 1:
                    pairs.append((form.rstrip("/\\"), role))
        # Longest first, so a folder inside another is named by its own role.
        self._roots = sorted(set(pairs), key=lambda p: -len(p[0]))

    def __call__(self, message: str) -> str:
        """``message`` with every server path replaced."""
        for folder, role in self._roots:
            message = message.replace(folder, role)
        return _ABSOLUTE.sub(_last_part, message)


def _last_part(match: re.Match[str]) -> str:
    text = match.group(0)
    trail = ""
    while text and text[-1] in ".:!?":  # the sentence's punctuation, not the path's
        trail = text[-1] + trail
        text = text[:-1]
    name = re.split(r"[\\/]", text.rstrip("\\/"))[-1]
    return (f".../{name}" if name else "...") + trail
