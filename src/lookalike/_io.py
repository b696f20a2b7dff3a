"""File-system chores, written once: atomic writes, file hashes, one verified download.

**Atomic writes.** Every file written here goes first to a temporary file in the
destination's folder (a dot-name from :func:`tempfile.mkstemp`, so it is never mistaken for
the real file), flushed and ``fsync``-ed, renamed over the destination with
:func:`os.replace`, and the folder is then ``fsync``-ed too where the platform allows it. A
reader sees the old file or the complete new one, never half of one, and any error (an
interrupt included) deletes the temporary file. A temporary file handed to a writer or a
check by path keeps the destination's suffix, so code that looks at it (NumPy's ``.npy``,
gzip's ``.gz``) treats it as it would the final name. Like :func:`tempfile.mkstemp`, the
files are private to their owner (mode ``0o600``) unless a ``mode`` is given.

**Hashes** stream the file in blocks: memory never holds it whole.

**Downloads** go through :func:`download_verified` only: :mod:`urllib`, written atomically,
checked before the file gets its name, refused in offline mode (:func:`offline_mode`).

This module sits on the lowest floor: it imports the standard library and
:mod:`lookalike.errors`, nothing else.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from lookalike.errors import LookalikeError

__all__ = [
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_stream",
    "atomic_write_with",
    "blake2b_file",
    "download_verified",
    "offline_mode",
    "reachable",
    "sha256_file",
]

CHUNK = 1 << 20
"""Bytes per read or write when a file is streamed (1 MiB)."""

PathLike = str | os.PathLike[str]


def offline_mode() -> bool:
    """Return True when downloads are disabled (``LOOKALIKE_OFFLINE`` or ``HF_HUB_OFFLINE``)."""
    return any(
        os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}
        for var in ("LOOKALIKE_OFFLINE", "HF_HUB_OFFLINE")
    )


def reachable(url: str, *, timeout_s: float = 3.0) -> bool:
    """Whether ``url``'s host accepts a TCP connection within ``timeout_s`` seconds.

    A cheap probe before a client library that retries for a minute (the Hugging Face hub
    client does) is handed a download that cannot work: the caller fails in seconds with its
    own message instead.
    """
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname:
        return False
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout_s):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------- atomic writes


def atomic_write_bytes(path: PathLike, data: bytes, *, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` atomically (see the module notes).

    Args:
        path: Destination; its folder is created.
        data: The bytes.
        mode: Permission bits of the file (``None``: private, as :func:`tempfile.mkstemp`).
    """
    target = Path(path)

    def write(handle: BinaryIO) -> str:
        handle.write(data)
        return target.name

    atomic_write_stream(target.parent, write, prefix=_temp_prefix(target), mode=mode)


def atomic_write_json(path: PathLike, obj: Any, *, indent: int | None = 2) -> None:
    """Write ``obj`` as UTF-8 JSON (with a final newline) to ``path`` atomically.

    Args:
        path: Destination; its folder is created.
        obj: Anything :func:`json.dumps` accepts.
        indent: Passed to :func:`json.dumps`.
    """
    text = json.dumps(obj, indent=indent) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_with(
    path: PathLike, writer: Callable[[Path], None], *, mode: int | None = None
) -> None:
    """Publish ``path`` atomically from a writer that needs a file name, not a handle.

    For writers such as safetensors' ``save_file``, ``torch.save``, NumPy or an SQLite
    export: ``writer`` gets the temporary file's path (an existing empty file with the
    destination's suffix), writes it completely and returns; the file is then synced and
    renamed into place. Whatever ``writer`` raises propagates, the old ``path`` untouched.

    Args:
        path: Destination; its folder is created.
        writer: Writes the file at the path it is given.
        mode: Permission bits of the file (``None``: private, as :func:`tempfile.mkstemp`).
    """
    target = Path(path)

    def fill(tmp: Path) -> Path:
        writer(tmp)
        _fsync_file(tmp)
        return target

    _publish(target.parent, _temp_prefix(target), target.suffix, fill, mode)


def atomic_write_stream(
    folder: PathLike,
    write: Callable[[BinaryIO], str],
    *,
    prefix: str = ".tmp.",
    mode: int | None = None,
) -> Path:
    """Stream a new file into ``folder`` and publish it under the name ``write`` returns.

    The name is chosen after the bytes are written, so it may carry a digest of them (see
    :func:`lookalike.index.faiss_structures.write_file`).

    Args:
        folder: Where the file goes; created when missing.
        write: Writes the whole file to the binary handle it is given and returns the file's
            name (a plain name in ``folder``).
        prefix: Start of the temporary file's name (begin it with a dot).
        mode: Permission bits of the file (``None``: private, as :func:`tempfile.mkstemp`).

    Returns:
        The file published.
    """
    where = Path(folder)

    def fill(tmp: Path) -> Path:
        with tmp.open("wb") as handle:
            name = write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        return where / name

    return _publish(where, prefix, "", fill, mode)


def _temp_prefix(target: Path) -> str:
    return f".{target.name}."


def _publish(
    folder: Path, prefix: str, suffix: str, fill: Callable[[Path], Path], mode: int | None
) -> Path:
    """The one recipe: a temporary file in ``folder``, filled, renamed, the folder synced.

    ``fill`` writes and syncs the temporary file and returns the destination path.
    """
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=f".tmp{suffix}")
    os.close(fd)
    tmp = Path(name)
    try:
        target = fill(tmp)
        if mode is not None:
            tmp.chmod(mode)
        tmp.replace(target)  # os.replace: atomic
    except BaseException:  # an interrupt too: never leave the temporary file behind
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(folder)
    return target


def _fsync_file(path: Path) -> None:
    """Flush a file someone else wrote (and closed) to disk."""
    fd = os.open(path, os.O_RDWR)  # Windows commits only handles open for writing
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (a rename) to disk where the platform allows it (best effort)."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(folder, flags)
    except OSError:  # Windows cannot open a folder
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- hashes


def sha256_file(path: PathLike, *, chunk: int = CHUNK) -> str:
    """Return the hex sha256 of a file, read in blocks of ``chunk`` bytes.

    Raises:
        OSError: The file cannot be read.
    """
    return _hash_file(hashlib.sha256(), path, chunk)


def blake2b_file(path: PathLike, *, digest_size: int = 16, chunk: int = CHUNK) -> str:
    """Return the hex BLAKE2b (``digest_size`` bytes; 16: BLAKE2b-128) of a file, streamed.

    Raises:
        OSError: The file cannot be read.
    """
    return _hash_file(hashlib.blake2b(digest_size=digest_size), path, chunk)


def _hash_file(hasher: Any, path: PathLike, chunk: int) -> str:
    with Path(path).open("rb") as handle:
        while block := handle.read(chunk):
            hasher.update(block)
    digest: str = hasher.hexdigest()
    return digest


# --------------------------------------------------------------------------- download


def download_verified(
    url: str,
    dest: PathLike,
    *,
    sha256: str | None,
    timeout: float,
    check: Callable[[Path, str], None] | None = None,
    even_offline: bool = False,
) -> Path:
    """Download ``url`` to ``dest`` atomically; only a verified file gets the name ``dest``.

    The bytes are hashed (sha256) as they arrive. The temporary file is then checked against
    ``sha256`` and by ``check``; a file that fails is deleted, and ``dest`` is left as it was.

    Args:
        url: What to fetch (any scheme :mod:`urllib` opens, ``file://`` included).
        dest: Destination; its folder is created.
        sha256: Expected sha256 (full hex digest, or a hex prefix of it); ``None`` skips it.
        timeout: Seconds allowed for the connection and each read.
        check: Called as ``check(temporary_file, its_sha256)`` before the rename, to verify
            what ``sha256`` cannot (another checksum, a header); it raises to reject the file.
        even_offline: Download although offline mode is on: for a caller that already
            decided (e.g. an explicit ``allow_download=True``).

    Returns:
        ``dest``, as a path.

    Raises:
        LookalikeError: Offline mode is on, or the sha256 does not match.
        OSError: The download failed (:class:`urllib.error.URLError`, timeouts and refused
            connections are all ``OSError``).
        Exception: Whatever ``check`` raises.
    """
    target = Path(dest)
    if offline_mode() and not even_offline:
        raise LookalikeError(
            f"not downloading {url}: offline mode is on (LOOKALIKE_OFFLINE or HF_HUB_OFFLINE)"
        )

    def fetch(tmp: Path) -> None:
        hasher = hashlib.sha256()
        with tmp.open("wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            while block := response.read(CHUNK):
                hasher.update(block)
                out.write(block)
        actual = hasher.hexdigest()
        if sha256 is not None and not actual.startswith(sha256.lower()):
            raise LookalikeError(
                f"downloaded {url} has sha256 {actual}, expected {sha256}; "
                "the download is corrupt or not the file expected"
            )
        if check is not None:
            check(tmp, actual)

    atomic_write_with(target, fetch)
    return target
