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
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lookalike._version import __version__
from lookalike.errors import LookalikeError, ModelFolderError

if TYPE_CHECKING:
    from torch import nn

    from lookalike.model.network import SiameseModel

FORMAT = "lookalike.model.network"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
TENSORS_FILE = "model.safetensors"


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON to ``path`` through a temporary file and a rename (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=False)
        handle.write("\n")
    Path(tmp).replace(path)


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
    write_json_atomic(Path(path) / CONFIG_FILE, config)
    return config


def _provenance(model: SiameseModel) -> dict[str, Any]:
    import torch

    info = dict(model.provenance)
    info.setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    info.setdefault("how", "pretrained backbone, untrained")
    info.update(
        lookalike_version=__version__,
        torch_version=torch.__version__,
        python_version=platform.python_version(),
        saved=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    return info


def save_model(
    model: SiameseModel, path: str | os.PathLike[str], *, include_backbone: bool = True
) -> Path:
    """Save a model folder.

    Args:
        model: The model.
        path: Folder to write (created; existing files in it are replaced).
        include_backbone: Store the backbone's tensors. ``False`` stores only a reference
            (name + pretrained sha256): smaller, for heads trained on a frozen pretrained backbone.

    Returns:
        The folder.

    Raises:
        ModelFolderError: ``include_backbone=False`` for a backbone without pretrained weights.
    """
    from safetensors.torch import save_file

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    if not include_backbone and (model.weights_sha256 is None or model.custom_class):
        raise ModelFolderError(
            "include_backbone=False needs a registered backbone with pretrained weights"
        )
    state = {
        k: v.detach().cpu().contiguous()
        for k, v in model.state_dict().items()
        if include_backbone or not k.startswith("backbone.")
    }
    config: dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION}
    config.update(model.config())
    config["backbone_weights"] = {
        "stored": include_backbone,
        "pretrained_sha256": model.weights_sha256,
        "custom_class": model.custom_class,
    }
    config["thresholds"] = dict(model.thresholds)
    config["metrics"] = dict(model.metrics)
    config["provenance"] = _provenance(model)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".model.", suffix=".tmp")
    os.close(fd)
    save_file(state, tmp)
    Path(tmp).replace(folder / TENSORS_FILE)
    write_json_atomic(folder / CONFIG_FILE, config)
    return folder


def load_model(path: str | os.PathLike[str], *, module: nn.Module | None = None) -> SiameseModel:
    """Load a model folder written by :func:`save_model`.

    Args:
        path: The folder.
        module: An instance of the custom backbone class, for folders that hold one.

    Returns:
        The model, on CPU, in eval mode.

    Raises:
        ModelFolderError: Not a model folder, missing tensors, or a custom backbone
            without ``module``.
        WeightsError: A referenced pretrained backbone is unavailable or its sha256 differs.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from lookalike.imaging.preprocess import Preprocess
    from lookalike.model.backbones import build_backbone
    from lookalike.model.network import SiameseModel

    folder = Path(path)
    config = read_config(folder)
    tensors_path = folder / TENSORS_FILE
    if not tensors_path.is_file():
        raise ModelFolderError(f"{folder} has no {TENSORS_FILE}; the folder is incomplete")
    try:
        stored = config["backbone_weights"]
        preprocess = Preprocess.from_dict(config["preprocess"])
        arch = {
            "pooling": config["pooling"],
            "projection": config["projection"],
            "normalize": config["normalize"],
            "head": config["head"] is not None,
        }
        name = config["backbone"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFolderError(f"{folder / CONFIG_FILE} lacks or mangles a field: {exc}") from exc
    if name == "custom":
        if module is None:
            raise ModelFolderError(
                f"{folder} holds a custom backbone ({stored.get('custom_class')}); "
                "pass an instance of it: SiameseModel.load(path, module=MyBackbone())"
            )
        model = SiameseModel.from_module(
            module, preprocess, feature_dim=config["feature_dim"], **arch
        )
    else:
        backbone = build_backbone(
            name, pretrained=not stored["stored"], in_chans=preprocess.channels
        )
        if not stored["stored"] and backbone.weights_sha256 != stored["pretrained_sha256"]:
            raise ModelFolderError(
                f"{folder} expects {name} weights with sha256 {stored['pretrained_sha256']}, "
                f"found {backbone.weights_sha256}"
            )
        backbone.preprocess = preprocess
        model = SiameseModel(backbone, **arch)
        model.weights_sha256 = stored["pretrained_sha256"]
    try:
        state = load_file(str(tensors_path))
    except (SafetensorError, OSError) as exc:
        raise ModelFolderError(f"{tensors_path} is not a readable safetensors file: {exc}") from exc
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise ModelFolderError(f"{tensors_path} does not fit the configured model: {exc}") from exc
    if not stored["stored"]:
        missing = [k for k in missing if not k.startswith("backbone.")]
    if missing or unexpected:
        raise ModelFolderError(
            f"{tensors_path} does not fit the configured model "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    model.thresholds = {k: float(v) for k, v in config.get("thresholds", {}).items()}
    model.metrics = dict(config.get("metrics", {}))
    model.provenance = dict(config.get("provenance", {}))
    model.eval()
    return model


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
