"""The loaded image index, used from one dedicated thread.

:class:`lookalike.index.index.Index` holds a SQLite connection, which may only be used by the
thread that opened it, and a FAISS structure; the API calls come from a threadpool. So the
index is opened, searched and closed by one worker thread, and every call is handed to it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from lookalike.errors import IndexFolderError
from lookalike.inference.source import ModelSource

if TYPE_CHECKING:
    from lookalike.index.index import Hit, Index

T = TypeVar("T")


class IndexService:
    """An open index served from its own thread.

    Args:
        index_dir: The index folder.
        embedding_dim: The served model's embedding size (the index must match it).
        model_key: The served model's key: an index built with another model is refused,
            with the same message as the CLI's.
        model_source: Where the served model comes from (named in that message).

    Raises:
        IndexFolderError: No index there, one built with another model, or one of another
            embedding size.
        LookalikeError: FAISS is not installed.
    """

    def __init__(
        self,
        index_dir: str | os.PathLike[str],
        *,
        embedding_dim: int,
        model_key: str | None = None,
        model_source: ModelSource | None = None,
    ) -> None:
        self.folder = Path(index_dir)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lookalike-index")
        try:
            self._index: Index = self._call(lambda: _open(self.folder, model_key, model_source))
        except BaseException:
            self._pool.shutdown(wait=False)
            raise
        self.root = self._index.root
        if self._index.dim != embedding_dim:
            self.close()
            raise IndexFolderError(
                f"{self.folder} holds {self._index.dim}-dimensional embeddings but the model "
                f"makes {embedding_dim}: serve the model the index was built with"
            )

    def _call(self, fn: Callable[[], T]) -> T:
        return self._pool.submit(fn).result()

    def __len__(self) -> int:
        return self._call(lambda: len(self._index))

    def search(self, vector: np.ndarray, k: int) -> list[Hit]:
        """The ``k`` indexed images closest to one embedding (D,), best first."""
        return self._call(lambda: self._index.search(vector[None, :], k)[0])

    def file(self, path: str) -> Path | bytes | None:
        """The file of an indexed relative path, or ``None`` when it is not one.

        Under a URI root (an index of an object store) the object's bytes, read through
        fsspec in the index's thread.

        ``path`` is as a search hit gives it (:func:`lookalike.imaging.files.shown_path`:
        bytes of a name that are not UTF-8 written ``\\xNN``). Only paths the index holds
        are served: absolute paths, ``..`` and anything the index does not hold are
        refused. A path inside the root that is a symbolic link to a file elsewhere is
        served, as the index itself followed it: the index, not the link's target, decides
        what a hit may show.

        Raises:
            ImageError: An object under a URI root cannot be read now.
        """
        path = unshown_path(path)
        if not path or "\\" in path or "\0" in path:
            return None
        relative = PurePosixPath(path)
        if relative.is_absolute() or any(part in ("", ".", "..") for part in path.split("/")):
            return None
        if not self._call(lambda: path in self._index):
            return None
        target = self._index.resolve(path)
        if isinstance(target, str):  # a URI root: the object, read in the index's thread
            from lookalike.inference.uris import read_bytes

            return self._call(lambda: read_bytes(target))
        try:
            return target if target.is_file() else None
        except OSError:  # a name too long, a permission refused on the way
            return None

    def close(self) -> None:
        """Close the index and stop its thread."""
        try:
            self._call(self._index.close)
        finally:
            self._pool.shutdown(wait=True)


_ESCAPED = re.compile(r"\\x([0-9a-f]{2})")


def unshown_path(shown: str) -> str:
    """The path :func:`lookalike.imaging.files.shown_path` printed, as Python holds it
    (undecodable bytes as lone surrogates, ``surrogateescape``)."""

    def back(match: re.Match[str]) -> str:
        code = int(match.group(1), 16)
        return chr(0xDC00 + code) if code >= 0x80 else chr(code)

    return _ESCAPED.sub(back, shown)


def _open(folder: Path, model_key: str | None, model_source: ModelSource | None) -> Index:
    from lookalike.index.index import Index

    return Index.open(folder, model_key=model_key, model_source=model_source)
