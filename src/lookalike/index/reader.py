"""Reading image files for the index: content hashes, and decoding exactly the bytes hashed.

:func:`hash_file` is the index's content hash (BLAKE2b-128 of a file's bytes).
:class:`VerifiedReader` opens the files the embedding pipeline decodes: it reads each one once
and hashes and decodes those same bytes, so a vector is always stored under the hash of what
it was computed from (see :mod:`lookalike.index.update`). Both also take fsspec URIs
(``s3://bucket/a.jpg``, ``file:///abs/a.jpg``: an index whose root is a URI,
:mod:`lookalike.index.uri_root`): the object is streamed to be hashed, and read once into
memory to be hashed and decoded.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Any

import numpy.typing as npt

from lookalike._io import blake2b_file
from lookalike.errors import DataError, ImageError
from lookalike.imaging.preprocess import Preprocess
from lookalike.inference.uris import filesystem, is_uri, read_bytes

__all__ = ["MAX_READ_BYTES", "VerifiedReader", "hash_bytes", "hash_file", "hash_or_reason"]

MAX_READ_BYTES = 256 << 20
"""Files up to this size are read into memory once to be hashed and decoded; larger ones are
hashed before and after they are decoded from disk, and used only if both hashes agree; a
URI (an object) larger than this is refused."""
_HASH_CHUNK = 1 << 20


def hash_file(path: Path) -> str:
    """BLAKE2b-128 hex digest of a file's bytes.

    Raises:
        OSError: If the file cannot be read.
    """
    return blake2b_file(path, digest_size=16, chunk=_HASH_CHUNK)


def hash_or_reason(name: str) -> tuple[str | None, str]:
    """:func:`hash_file` of a path (or of a URI's object), or why it cannot be read (what the
    index reports).

    Returns:
        ``(hex digest, "")``, or ``(None, "cannot read file: <reason>")``.
    """
    try:
        return (_hash_uri(name) if is_uri(name) else hash_file(Path(name))), ""
    except OSError as exc:
        return None, f"cannot read file: {exc.strerror or exc}"
    except (DataError, ValueError) as exc:  # a URI fsspec cannot use
        return None, f"cannot read file: {exc}"


def _hash_uri(name: str) -> str:
    """BLAKE2b-128 of an object read through fsspec, streamed (equal to :func:`hash_file`)."""
    fs, path = filesystem(name)
    digest = hashlib.blake2b(digest_size=16)
    with fs.open(path, "rb") as fp:
        while chunk := fp.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def hash_bytes(data: bytes) -> str:
    """BLAKE2b-128 hex digest of bytes (equal to :func:`hash_file` of a file holding them)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class VerifiedReader:
    """Opens files for the embedding pipeline, hashing exactly the bytes it decodes.

    Each call reads the file once (through a non-blocking open of a regular file, so a file
    replaced by a pipe cannot hang it), records the BLAKE2b-128 of those bytes in
    :attr:`read` and decodes the same bytes. A file larger than :data:`MAX_READ_BYTES` is
    hashed, decoded from disk and hashed again, and refused unless both hashes agree.

    Args:
        preprocess: The model's preprocessing.

    Attributes:
        read: ``{path: (hash, size in bytes)}`` of every file read, decoded or not.
    """

    def __init__(self, preprocess: Preprocess) -> None:
        self.preprocess = preprocess
        self.read: dict[str, tuple[str, int]] = {}

    def __call__(self, name: str) -> npt.NDArray[Any]:
        """Read, hash and decode one file into the model's input (C, H, W), float32.

        Raises:
            ImageError: The file cannot be read or decoded, or changed while it was decoded.
        """
        data = self._bytes(name)
        if data is None:
            return self._large(name)
        self.read[name] = (hash_bytes(data), len(data))
        try:
            return self.preprocess.load(data)
        except ImageError as exc:
            raise ImageError(name, exc.cause) from exc

    def _bytes(self, name: str) -> bytes | None:
        """The file's bytes, or ``None`` when it is larger than :data:`MAX_READ_BYTES`."""
        if is_uri(name):  # an object: read once, whatever its size (up to the limit)
            return read_bytes(name, limit=MAX_READ_BYTES)
        try:
            fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
            with os.fdopen(fd, "rb") as fp:
                st = os.fstat(fp.fileno())
                if not stat.S_ISREG(st.st_mode):
                    raise ImageError(name, "is not a regular file")
                if st.st_size > MAX_READ_BYTES:
                    return None
                return fp.read()
        except OSError as exc:
            raise ImageError(name, f"cannot read file: {exc.strerror or exc}") from exc

    def _large(self, name: str) -> npt.NDArray[Any]:
        """Hash, decode from disk, hash again: the decoded pixels are those of that hash."""
        try:
            path = Path(name)
            before = hash_file(path)
            array = self.preprocess.load(name)
            after = hash_file(path)
            size = path.stat().st_size
        except OSError as exc:
            raise ImageError(name, f"cannot read file: {exc.strerror or exc}") from exc
        if before != after:
            raise ImageError(name, "the file changed while it was read; index it again")
        self.read[name] = (after, size)
        return array
