"""lookalike._io on real files: atomic writes, file hashes, the verified download."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import BinaryIO

import pytest

from lookalike import _io
from lookalike.errors import LookalikeError


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_atomic_write_bytes_writes_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "data.bin"
    _io.atomic_write_bytes(target, b"first")
    assert target.read_bytes() == b"first"
    _io.atomic_write_bytes(target, b"second, longer")
    assert target.read_bytes() == b"second, longer"
    assert names(target.parent) == ["data.bin"]
    assert target.stat().st_mode & 0o777 == 0o600  # private, as mkstemp makes it
    _io.atomic_write_bytes(target, b"shared", mode=0o644)
    assert target.stat().st_mode & 0o777 == 0o644


def test_atomic_write_json_round_trip(tmp_path: Path) -> None:
    target = tmp_path / "config.json"
    obj = {"a": [1, 2.5, None], "b": {"c": "é"}, "d": True}
    _io.atomic_write_json(target, obj)
    text = target.read_text(encoding="utf-8")
    assert json.loads(text) == obj
    assert text.endswith("}\n") and '\n  "a"' in text  # indent 2, a final newline
    _io.atomic_write_json(target, [1], indent=None)
    assert target.read_text(encoding="utf-8") == "[1]\n"


def test_atomic_write_with_hands_the_writer_a_path_with_the_suffix(tmp_path: Path) -> None:
    target = tmp_path / "arrays.npy"
    seen: list[Path] = []

    def writer(tmp: Path) -> None:
        seen.append(tmp)
        tmp.write_bytes(b"payload")

    _io.atomic_write_with(target, writer)
    assert target.read_bytes() == b"payload"
    assert seen[0].parent == tmp_path and seen[0].name.startswith(".")
    assert seen[0].suffix == ".npy" and not seen[0].exists()
    assert names(tmp_path) == ["arrays.npy"]


@pytest.mark.parametrize("error", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_a_failing_writer_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, error: BaseException
) -> None:
    target = tmp_path / "model.safetensors"
    _io.atomic_write_bytes(target, b"old")

    def writer(tmp: Path) -> None:
        tmp.write_bytes(b"half of the new")
        raise error

    with pytest.raises(type(error)):
        _io.atomic_write_with(target, writer)
    assert target.read_bytes() == b"old"
    assert names(tmp_path) == ["model.safetensors"]


def test_a_failing_fsync_leaves_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "k.onnx"
    _io.atomic_write_bytes(target, b"old")

    def failing(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing)
    with pytest.raises(OSError, match="No space"):
        _io.atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert names(tmp_path) == ["k.onnx"]


def test_atomic_write_stream_names_the_file_after_writing(tmp_path: Path) -> None:
    def write(handle: BinaryIO) -> str:
        data = b"vectors"
        handle.write(data)
        return f"vectors-{hashlib.blake2b(data, digest_size=4).hexdigest()}.bin"

    path = _io.atomic_write_stream(tmp_path, write, prefix=".vectors.tmp-")
    assert path.parent == tmp_path and path.read_bytes() == b"vectors"
    assert names(tmp_path) == [path.name]

    def broken(handle: BinaryIO) -> str:
        raise ValueError("no name")

    with pytest.raises(ValueError):
        _io.atomic_write_stream(tmp_path, broken, prefix=".vectors.tmp-")
    assert names(tmp_path) == [path.name]


@pytest.mark.parametrize("size", [0, 1, (1 << 20) + 17])
def test_hashes_equal_hashlib(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert _io.sha256_file(path) == hashlib.sha256(data).hexdigest()
    assert _io.sha256_file(path, chunk=1000) == hashlib.sha256(data).hexdigest()
    assert _io.blake2b_file(path) == hashlib.blake2b(data, digest_size=16).hexdigest()
    assert _io.blake2b_file(str(path), digest_size=32, chunk=4096) == (
        hashlib.blake2b(data, digest_size=32).hexdigest()
    )


@pytest.fixture
def downloads_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lift the session's offline mode (conftest) for one test."""
    monkeypatch.delenv("LOOKALIKE_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE")


@pytest.fixture
def online(tmp_path: Path, downloads_on: None) -> tuple[str, bytes, str]:
    """A 'remote' file served through a file:// URL (real urllib, no network)."""
    payload = os.urandom(3000)
    source = tmp_path / "remote" / "weights.pth"
    source.parent.mkdir()
    source.write_bytes(payload)
    return source.as_uri(), payload, hashlib.sha256(payload).hexdigest()


def test_download_verified(tmp_path: Path, online: tuple[str, bytes, str]) -> None:
    url, payload, sha = online
    dest = tmp_path / "cache" / "weights.pth"
    seen: list[tuple[Path, str]] = []
    got = _io.download_verified(
        url, dest, sha256=sha, timeout=5, check=lambda tmp, d: seen.append((tmp, d))
    )
    assert got == dest and dest.read_bytes() == payload
    assert seen[0][1] == sha and seen[0][0].suffix == ".pth" and not seen[0][0].exists()
    assert names(dest.parent) == ["weights.pth"]
    prefix = tmp_path / "cache" / "prefix.pth"
    _io.download_verified(url, prefix, sha256=sha[:8].upper(), timeout=5)
    assert prefix.read_bytes() == payload


def test_download_with_a_wrong_sha256_leaves_no_file(
    tmp_path: Path, online: tuple[str, bytes, str]
) -> None:
    url, _, sha = online
    cache = tmp_path / "cache"
    with pytest.raises(LookalikeError, match=f"sha256 {sha}, expected {'0' * 64}"):
        _io.download_verified(url, cache / "weights.pth", sha256="0" * 64, timeout=5)
    assert names(cache) == []

    def reject(tmp: Path, digest: str) -> None:
        raise ValueError("bad header")

    with pytest.raises(ValueError, match="bad header"):
        _io.download_verified(url, cache / "weights.pth", sha256=sha, timeout=5, check=reject)
    assert names(cache) == []


@pytest.mark.usefixtures("downloads_on")
def test_download_failures_are_os_errors(tmp_path: Path) -> None:
    missing = (tmp_path / "nowhere.bin").as_uri()
    with pytest.raises(OSError):
        _io.download_verified(missing, tmp_path / "got.bin", sha256=None, timeout=5)
    assert names(tmp_path) == []


def test_download_respects_offline_mode(
    tmp_path: Path, online: tuple[str, bytes, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, payload, sha = online
    monkeypatch.setenv("LOOKALIKE_OFFLINE", "1")
    assert _io.offline_mode()
    dest = tmp_path / "cache" / "weights.pth"
    with pytest.raises(LookalikeError, match="offline mode is on"):
        _io.download_verified(url, dest, sha256=sha, timeout=5)
    assert not dest.exists()
    _io.download_verified(url, dest, sha256=sha, timeout=5, even_offline=True)
    assert dest.read_bytes() == payload
    monkeypatch.setenv("LOOKALIKE_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "no")
    assert not _io.offline_mode()
