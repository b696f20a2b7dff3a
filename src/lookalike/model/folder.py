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
import math
import os
import platform
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lookalike._io import atomic_write_json, atomic_write_with, sha256_file
from lookalike._version import __version__
from lookalike.errors import LookalikeError, ModelFolderError
from lookalike.model.card import MAX_EMBEDDING_DIM, ModelCard, implied_tensors

CONFIG_FILE = "config.json"
TENSORS_FILE = "model.safetensors"
MAX_CONFIG_BYTES = 16 * 2**20
"""Largest ``config.json`` read (real ones are a few KB)."""

FLOAT_DTYPES = frozenset({"F16", "BF16", "F32", "F64"})
"""safetensors dtypes a card's own tensors may have."""

_ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2}
_ITEMSIZE |= {"F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
_MAX_HEADER = 100 * 2**20


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
        size = config_path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ModelFolderError(
                f"{config_path} is {size:,} bytes, more than a model config can be "
                f"({MAX_CONFIG_BYTES:,}); the file is damaged or not a lookalike config"
            )
        data = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError and integers of more than 4300 digits.
        reason = "nested too deeply" if isinstance(exc, RecursionError) else exc
        raise ModelFolderError(f"{config_path} is not valid JSON: {reason}") from exc
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
        ModelFolderError: No tensors file, not a readable safetensors file, or a floating
            point tensor holding NaN or infinity.
    """
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    tensors_path = Path(path) / TENSORS_FILE
    if not tensors_path.is_file():
        raise ModelFolderError(f"{path} has no {TENSORS_FILE}; the folder is incomplete")
    try:
        tensors = dict(load_file(str(tensors_path)))
    except (SafetensorError, OSError) as exc:
        raise ModelFolderError(f"{tensors_path} is not a readable safetensors file: {exc}") from exc
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelFolderError(
                f"{tensors_path} holds non-finite values (NaN or infinity) in {name!r}; "
                "the weights are damaged: retrain or restore the folder"
            )
    return tensors


def tensor_header(path: str | os.PathLike[str]) -> dict[str, tuple[str, tuple[int, ...]]]:
    """The tensors a safetensors file declares, read from its header alone (torch-free).

    The header is checked against the file: its length, each tensor's dtype, shape and byte
    range, so a truncated or forged file is refused before anything is allocated for it.

    Args:
        path: A ``.safetensors`` file.

    Returns:
        Tensor name → (safetensors dtype such as ``"F32"``, shape).

    Raises:
        ModelFolderError: Missing, unreadable, truncated, or a header that does not fit.
    """
    file = Path(path)

    def bad(why: str) -> ModelFolderError:
        return ModelFolderError(f"{file} is not a readable safetensors file: {why}")

    try:
        with file.open("rb") as fp:
            size = os.fstat(fp.fileno()).st_size
            head = fp.read(8)
            length = int.from_bytes(head, "little") if len(head) == 8 else -1
            if not 0 < length <= min(_MAX_HEADER, size - 8):
                raise bad(f"a header of {length} bytes in a file of {size}")
            header = json.loads(fp.read(length))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise bad(str(exc) or type(exc).__name__) from exc
    if not isinstance(header, dict):
        raise bad("the header is not an object")
    data_bytes = size - 8 - length
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (start, stop) = entry["dtype"], entry["shape"], entry["data_offsets"]
            dims = tuple(int(d) for d in shape if isinstance(d, int) and d >= 0)
            count = math.prod(dims) * _ITEMSIZE[dtype]
        except (KeyError, TypeError, ValueError) as exc:
            raise bad(f"tensor {name!r} has a malformed entry") from exc
        if len(dims) != len(shape) or not (
            isinstance(start, int) and isinstance(stop, int) and 0 <= start <= stop <= data_bytes
        ):
            raise bad(f"tensor {name!r} lies outside the file (truncated?)")
        if stop - start != count:
            raise bad(f"tensor {name!r} holds {stop - start} bytes, its shape needs {count}")
        out[name] = (dtype, dims)
    return out


def check_tensors(path: str | os.PathLike[str], card: ModelCard) -> None:
    """Check a folder's tensors file against what its card implies, before anything is built.

    Every tensor of the card's own layers (:func:`lookalike.model.card.implied_tensors`) must
    be there, floating point, with the implied shape; no other tensor may be there but the
    backbone's, which must be there exactly when the card says the backbone is stored. So a
    card cannot make the loader allocate more than the file itself holds.

    Args:
        path: The model folder.
        card: Its card.

    Raises:
        ModelFolderError: A tensor missing, unexpected, of another shape or dtype, or a file
            that is not a readable safetensors file (the message names the tensor).
    """
    tensors_path = Path(path) / TENSORS_FILE
    if not tensors_path.is_file():
        raise ModelFolderError(f"{path} has no {TENSORS_FILE}; the folder is incomplete")
    header = tensor_header(tensors_path)
    where = f"{tensors_path} does not fit its {CONFIG_FILE}"
    for name, shape in implied_tensors(card).items():
        if name not in header:
            raise ModelFolderError(f"{where}: it lacks the tensor {name!r} of shape {list(shape)}")
        dtype, got = header[name]
        if dtype not in FLOAT_DTYPES:
            raise ModelFolderError(f"{where}: tensor {name!r} is {dtype}, not floating point")
        fits = len(got) == len(shape) and all(e in (-1, g) for e, g in zip(shape, got, strict=True))
        if not fits or any(g > MAX_EMBEDDING_DIM for g in got):
            raise ModelFolderError(
                f"{where}: tensor {name!r} has shape {list(got)}, the card implies {list(shape)}"
            )
    implied = implied_tensors(card)
    unexpected = [n for n in header if not n.startswith("backbone.") and n not in implied]
    if unexpected:
        raise ModelFolderError(f"{where}: unexpected tensors {sorted(unexpected)[:3]}")
    stored = any(n.startswith("backbone.") for n in header)
    if stored != card.backbone_weights.stored:
        says = "stored in it" if card.backbone_weights.stored else "referenced by sha256"
        raise ModelFolderError(
            f"{where}: the card says the backbone's weights are {says}, but the file "
            f"{'holds' if stored else 'lacks'} them"
        )


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
