"""Model folders: ``config.json`` + ``model.safetensors``, never a pickle.

Layout::

    MODEL_DIR/
      config.json         format, architecture, preprocessing, thresholds, metrics, provenance
      model.safetensors   tensors (all of them, or all but the backbone's when the backbone is
                          an unchanged pretrained one, referenced by name and sha256)

A folder saved without its backbone is rebuilt from the registry's pretrained weights,
whose sha256 must match the one recorded.
"""

from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lookalike._io import atomic_write_json, atomic_write_with
from lookalike._version import __version__
from lookalike.errors import LookalikeError, ModelFolderError

FORMAT = "lookalike.model"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
TENSORS_FILE = "model.safetensors"


def read_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a model folder's ``config.json``.

    Raises:
        ModelFolderError: Not a folder, no config, unreadable JSON, or an unknown format.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ModelFolderError(f"{folder} is not a model folder (no such directory)")
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        raise ModelFolderError(
            f"{folder} is not a lookalike model folder (no {CONFIG_FILE}); "
            "create one with SiameseModel.save or `lookalike train`"
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFolderError(f"{config_path} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ModelFolderError(f"{config_path} is not a lookalike model config")
    if int(config.get("format_version", 0)) > FORMAT_VERSION:
        raise ModelFolderError(
            f"{folder} was written by a newer lookalike "
            f"(format {config['format_version']}); upgrade lookalike to read it"
        )
    return config


def update_config(
    path: str | os.PathLike[str],
    *,
    thresholds: dict[str, float] | None = None,
    metrics: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Merge thresholds and metrics into a model folder's ``config.json``; weights untouched.

    Returns:
        The updated config.

    Raises:
        ModelFolderError: ``path`` is not a model folder.
    """
    config = read_config(path)
    config["thresholds"] = {**config.get("thresholds", {}), **(thresholds or {})}
    config["metrics"] = {**config.get("metrics", {}), **(metrics or {})}
    atomic_write_json(Path(path) / CONFIG_FILE, config)
    return config


def provenance(recorded: dict[str, Any]) -> dict[str, Any]:
    """A model's provenance as saved: what it recorded plus the versions that saved it."""
    import torch

    info = dict(recorded)
    info.setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    info.setdefault("how", "pretrained backbone, untrained")
    info.update(
        lookalike_version=__version__,
        torch_version=torch.__version__,
        python_version=platform.python_version(),
        saved=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    return info


def write_folder(
    path: str | os.PathLike[str], config: dict[str, Any], tensors: dict[str, Any]
) -> Path:
    """Write a model folder: the tensors, then ``config.json`` (the commit record), atomically.

    Args:
        path: Folder to write (created; existing files in it are replaced).
        config: The card fields (``format`` and ``format_version`` are added).
        tensors: Name → CPU tensor (contiguous), stored as safetensors.

    Returns:
        The folder.
    """
    from safetensors.torch import save_file

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    card = {"format": FORMAT, "format_version": FORMAT_VERSION, **config}
    atomic_write_with(folder / TENSORS_FILE, lambda tmp: save_file(tensors, str(tmp)))
    atomic_write_json(folder / CONFIG_FILE, card)
    return folder


def read_tensors(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The tensors of a model folder (name → CPU tensor).

    Raises:
        ModelFolderError: No tensors file, or not a readable safetensors file.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    tensors_path = Path(path) / TENSORS_FILE
    if not tensors_path.is_file():
        raise ModelFolderError(f"{path} has no {TENSORS_FILE}; the folder is incomplete")
    try:
        return dict(load_file(str(tensors_path)))
    except (SafetensorError, OSError) as exc:
        raise ModelFolderError(f"{tensors_path} is not a readable safetensors file: {exc}") from exc


def describe(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Return a model folder's config plus file sizes, without building the model."""
    folder = Path(path)
    config = read_config(folder)
    try:
        config["files"] = {
            p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file()
        }
    except OSError as exc:
        raise LookalikeError(f"cannot list {folder}: {exc}") from exc
    return config
