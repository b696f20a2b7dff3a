"""Model folders: ``config.json`` + ``model.safetensors``, never a pickle.

Layout::

    MODEL_DIR/
      config.json         the model card (lookalike.model.card.ModelCard): format, architecture,
                          preprocessing, backbone weights, thresholds, metrics, provenance
      model.safetensors   tensors (all of them, or all but the backbone's when the backbone is
                          an unchanged pretrained one, referenced by name and sha256)

A folder saved without its backbone is rebuilt from the registry's pretrained weights,
whose sha256 must match the one recorded. This module reads and writes cards and tensors;
it never builds a network (that is :mod:`lookalike.model.network`), so it does not import it.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lookalike._io import atomic_write_json, atomic_write_with, sha256_file
from lookalike._version import __version__
from lookalike.errors import LookalikeError, ModelFolderError
from lookalike.model.card import ModelCard

CONFIG_FILE = "config.json"
TENSORS_FILE = "model.safetensors"


def read_card(path: str | os.PathLike[str]) -> ModelCard:
    """Read and check a model folder's ``config.json``.

    Raises:
        ModelFolderError: Not a folder, no config, unreadable JSON, an unknown format, or a
            field missing or malformed (the message names it).
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
        data = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFolderError(f"{config_path} is not valid JSON: {exc}") from exc
    return ModelCard.from_dict(data, where=str(config_path))


def read_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A model folder's ``config.json`` as a checked JSON object (``read_card(path).to_dict()``).

    Raises:
        ModelFolderError: See :func:`read_card`.
    """
    return read_card(path).to_dict()


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
    card = read_card(path)
    card = replace(
        card,
        thresholds={**card.thresholds, **{k: float(v) for k, v in (thresholds or {}).items()}},
        metrics={**card.metrics, **(metrics or {})},
    )
    config = card.to_dict()
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


def write_folder(path: str | os.PathLike[str], card: ModelCard, tensors: dict[str, Any]) -> Path:
    """Write a model folder: the tensors, then ``config.json`` (the commit record), atomically.

    Args:
        path: Folder to write (created; existing files in it are replaced).
        card: The model card.
        tensors: Name → CPU tensor (contiguous), stored as safetensors.

    Returns:
        The folder.
    """
    from safetensors.torch import save_file

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_with(folder / TENSORS_FILE, lambda tmp: save_file(tensors, str(tmp)))
    atomic_write_json(folder / CONFIG_FILE, card.to_dict())
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


def tensors_sha256(path: str | os.PathLike[str]) -> str | None:
    """sha256 of a model folder's ``model.safetensors`` (the tensors part of its key).

    Returns:
        The hex digest, or ``None`` when the folder has no tensors file.

    Raises:
        OSError: The file exists but cannot be read.
    """
    tensors_path = Path(path) / TENSORS_FILE
    return sha256_file(tensors_path) if tensors_path.is_file() else None


def folder_files(path: str | os.PathLike[str]) -> dict[str, int]:
    """A model folder's files and their sizes in bytes, by name.

    Raises:
        LookalikeError: The folder cannot be listed.
    """
    folder = Path(path)
    try:
        return {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file()}
    except OSError as exc:
        raise LookalikeError(f"cannot list {folder}: {exc}") from exc


def describe(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A model folder's card as JSON plus its file sizes (``files``), without building the model.

    Raises:
        ModelFolderError: See :func:`read_card`.
    """
    return {**read_card(path).to_dict(), "files": folder_files(path)}
