"""Choosing and building an engine: :func:`load_embedder`.

Its ``engine="auto"`` rule:

* ``device`` ``cuda``/``cuda:N``, or ``auto`` on a machine that looks like it has an NVIDIA
  GPU (``/dev/nvidia0`` or ``nvidia-smi`` present; only then is torch imported to ask
  ``torch.cuda.is_available()``) → torch on CUDA;
* otherwise, with onnxruntime installed, ONNX Runtime on CPU — from the cached export
  when there is one (torch is then never imported), else exported once and cached;
* models without a cache key (random weights) run in torch, and so do models whose export
  fails (with a warning);
* ``engine="onnx"`` without onnxruntime warns and runs in torch;
* ``engine="onnx-int8"`` runs the model's int8 export (:mod:`lookalike.inference.quantize`)
  in ONNX Runtime on CPU, never silently anything else: the cached int8 file of the model
  (keyed by the model key and the calibration images), quantised on first use when a
  calibration folder is known (``calibration=``, or the one an earlier
  ``lookalike export --int8`` recorded), and only when its recorded agreement check passed.
  Its embeddings keep the float32 model's key: the agreement check bounds how far they
  move, so an index built in float32 is searched in int8 and vice versa (``engine`` on the
  embedder and ``lookalike.quantization`` in the file record which ran).

Model folders, and registry backbones whose weights' full sha256 the registry knows
(``mobilenet_v2``, ``efficientnet_lite0``), are keyed without torch
(:meth:`lookalike.model.card.ModelCard.key` from the folder's card, or from the torch-free
facts of :mod:`lookalike.model.backbones.specs`), so a warm ``lookalike compare`` on CPU
never imports it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from lookalike._io import sha256_file
from lookalike._limits import check_threads
from lookalike.errors import ExportError, LookalikeError, ModelFolderError
from lookalike.imaging.preprocess import Preprocess
from lookalike.inference import export as X
from lookalike.inference.embedder import BaseEmbedder
from lookalike.inference.onnx_engine import NumpyPairHead, OnnxEmbedder
from lookalike.inference.source import ModelSource
from lookalike.inference.torch_engine import TorchEmbedder
from lookalike.model.backbones.specs import find_spec
from lookalike.model.card import ModelCard
from lookalike.model.folder import TENSORS_FILE, read_card, tensors_sha256

if TYPE_CHECKING:
    from torch import nn

    from lookalike.model.network import SiameseModel

EngineName = Literal["auto", "torch", "onnx", "onnx-int8"]
ENGINES: tuple[str, ...] = ("auto", "torch", "onnx", "onnx-int8")


@dataclass
class _Plan:
    """What :func:`load_embedder` knows before importing torch."""

    name: str
    key: str | None = None
    preprocess: Preprocess | None = None
    thresholds: dict[str, float] = field(default_factory=dict)
    folder: Path | None = None
    card: ModelCard | None = None
    keyable_after_build: bool = False


def _plan(source: ModelSource) -> _Plan:
    """The model's name, key, preprocessing and thresholds, read without torch when possible.

    A folder is keyed by its card and tensors file; a registry backbone with pretrained
    weights by the registry's torch-free facts (or an explicit weights file's sha256). Other
    backbones (prefix-only or unknown sha256, ``timm:``) are keyed after they are built.
    """
    image_size, pretrained, weights_file = source.image_size, source.pretrained, source.weights
    if source.folder is not None:
        folder = Path(source.folder)
        card = read_card(folder)
        if image_size:
            card = card.with_input_size(image_size)
        plan = _Plan(str(folder), None, card.preprocess, dict(card.thresholds), folder, card)
        tensors = tensors_sha256(folder)
        if tensors is not None:
            plan.key = card.key(tensors)
        return plan
    name = source.backbone_name
    plan = _Plan(name, keyable_after_build=pretrained is not False)
    spec = find_spec(name) if pretrained is not False else None
    sha = spec.pretrained_sha256 if spec is not None else None
    if sha is not None and weights_file is not None:
        sha = sha256_file(weights_file) if Path(weights_file).is_file() else None
    if spec is not None and sha:
        preprocess = spec.preprocess.with_input_size(image_size) if image_size else spec.preprocess
        plan.preprocess = preprocess
        plan.key = pretrained_key(name, spec.feature_dim, sha, preprocess)
    return plan


def pretrained_key(name: str, feature_dim: int, sha256: str, preprocess: Preprocess) -> str:
    """The key of ``SiameseModel.create(name)`` with the pretrained weights of that sha256."""
    card = ModelCard.pretrained_backbone(
        name, feature_dim=feature_dim, weights_sha256=sha256, preprocess=preprocess
    )
    return card.key()


def _head_from_folder(folder: Path, card: ModelCard) -> NumpyPairHead | None:
    """Read a folder's pair head as NumPy arrays (torch-free); ``None`` without a head.

    Raises:
        ModelFolderError: The tensors file is unreadable or holds no head.
    """
    if not card.head:
        return None
    from safetensors import safe_open

    path = folder / TENSORS_FILE
    try:
        with safe_open(str(path), framework="numpy") as tensors:
            names = [k for k in tensors.keys() if k.startswith("head.")]  # noqa: SIM118
            return NumpyPairHead.from_state({k: tensors.get_tensor(k) for k in names})
    except Exception as exc:  # safetensors raises its own error types
        raise ModelFolderError(f"cannot read the pair head from {path}: {exc}") from exc


def build_model(source: ModelSource, *, module: nn.Module | None = None) -> SiameseModel:
    """Build the PyTorch model a source describes (imports torch).

    Args:
        source: The model.
        module: An instance of the custom backbone class, for folders that hold one.

    Returns:
        The model on the CPU, in eval mode.

    Raises:
        LookalikeError: A bad model folder or unavailable weights.
    """
    from lookalike.model.network import SiameseModel

    if source.folder is not None:
        model = SiameseModel.load(source.folder, module=module)
        if source.image_size:
            model.preprocess = model.preprocess.with_input_size(source.image_size)
        return model
    return SiameseModel.create(
        source.backbone_name,
        pretrained=source.pretrained,
        weights_file=source.weights,
        input_size=source.image_size,
    )


def _gpu_hint() -> bool:
    """Whether this machine looks like it has an NVIDIA GPU (no torch import)."""
    return Path("/dev/nvidia0").exists() or shutil.which("nvidia-smi") is not None


def _onnxruntime_installed() -> bool:
    """Whether onnxruntime can be imported (checked without importing it)."""
    return importlib.util.find_spec("onnxruntime") is not None


def choose_engine(engine: str, device: str) -> str:
    """The one engine policy (the CLI and the server both use it).

    ``"torch"`` is always honoured; CUDA devices run torch; on CPU ONNX Runtime runs when
    it is installed (``"auto"`` falls back to torch with no warning, ``"onnx"`` warns), except
    that ``"auto"`` with ``device="auto"`` prefers torch on a machine with a usable GPU.
    ``"onnx-int8"`` is honoured or refused, never replaced.

    Args:
        engine: ``"auto"``, ``"torch"``, ``"onnx"`` or ``"onnx-int8"``.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Returns:
        ``"torch"``, ``"onnx"`` or ``"onnx-int8"``.

    Raises:
        LookalikeError: An unknown engine, ONNX asked for on CUDA, or ``"onnx-int8"``
            without onnxruntime.
    """
    if engine not in ENGINES:
        raise LookalikeError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    cuda = device.startswith("cuda")
    if engine == "torch":
        return "torch"
    if engine == "onnx-int8":
        if cuda:
            raise LookalikeError("the int8 engine runs on CPU; use --engine torch for CUDA")
        if not _onnxruntime_installed():
            raise LookalikeError("the int8 engine needs onnxruntime: pip install lookalike[onnx]")
        return "onnx-int8"
    if cuda:
        if engine == "onnx":
            raise LookalikeError("the ONNX engine runs on CPU; use --engine torch for CUDA")
        return "torch"
    if not _onnxruntime_installed():
        if engine == "onnx":
            warnings.warn(
                "onnxruntime is not installed, so the torch engine runs instead "
                "(pip install lookalike[onnx])",
                RuntimeWarning,
                stacklevel=3,
            )
        return "torch"
    if engine == "auto" and device == "auto" and _gpu_hint():
        import torch

        if torch.cuda.is_available():
            return "torch"
    return "onnx"


def load_embedder(
    source: ModelSource | str | os.PathLike[str] | None = None,
    *,
    model: SiameseModel | None = None,
    module: nn.Module | None = None,
    engine: str = "auto",
    device: str = "auto",
    threads: int | None = None,
    calibration: str | os.PathLike[str] | None = None,
) -> BaseEmbedder:
    """Load a model into an inference engine.

    With ``engine="onnx"`` (or ``"auto"`` on CPU) and the model's export cached, this
    imports neither torch nor the model code: the key comes from ``config.json`` and
    ``model.safetensors`` (folders) or the registry's torch-free facts (backbones).
    Every caller (CLI, server, Python) gets the same key for the same source, so they share
    one export.

    Args:
        source: A :class:`ModelSource`, a model folder path, or ``None`` for the default
            pretrained backbone.
        model: The source's model, already built (the server holds one): it is used instead
            of building another.
        module: An instance of the custom backbone class, for folders that hold one
            (not needed when the folder's export is cached).
        engine: ``"auto"``, ``"torch"``, ``"onnx"`` or ``"onnx-int8"`` (see
            :func:`choose_engine` and the module docstring).
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        threads: CPU threads for inference, 1 to
            :func:`~lookalike._limits.max_threads` (``None``: the engine's default).

    Returns:
        A :class:`TorchEmbedder` or an :class:`OnnxEmbedder`; its ``key`` is the model key.

    Raises:
        LookalikeError: Invalid options (``threads`` out of range included), a bad model
            folder, unavailable weights, or an export that fails under ``engine="onnx"``
            (``"auto"`` falls back to torch with a warning).
    """
    source = ModelSource.of(source)
    check_threads(threads)
    choice = choose_engine(engine, device)
    plan = _plan(source)
    if choice == "onnx-int8":
        return _with_domain(_int8_embedder(source, plan, model, module, threads, calibration), plan)
    if choice == "onnx" and plan.key is not None and plan.preprocess is not None:
        cached = X.cache_path(plan.key)
        if cached.is_file():
            try:
                folder, card = plan.folder, plan.card
                head = _head_from_folder(folder, card) if folder and card else None
                cached_embedder = OnnxEmbedder.open(
                    cached,
                    plan.preprocess,
                    threads=threads,
                    expect_key=plan.key,
                    name=plan.name,
                    thresholds=plan.thresholds,
                    head=head,
                )
                return _with_domain(cached_embedder, plan)
            except LookalikeError:
                pass  # corrupt or stale: rebuilt and exported again below
    if model is None:
        model = build_model(source, module=module)
    key = plan.key
    if plan.keyable_after_build and model.weights_sha256 is not None:
        # From the weights actually loaded: equal to the torch-free key when the specs agree.
        key = pretrained_key(plan.name, model.feature_dim, model.weights_sha256, model.preprocess)
    if choice == "onnx" and (key is not None or engine == "onnx"):
        try:
            exported = OnnxEmbedder.from_model(
                model, key=key, cache=key is not None, threads=threads, name=plan.name
            )
            return _with_domain(exported, plan)
        except ExportError as exc:
            if engine == "onnx":
                raise
            warnings.warn(f"{exc}; running in torch instead", RuntimeWarning, stacklevel=2)
    from lookalike.model.device import set_threads

    set_threads(threads)
    return _with_domain(TorchEmbedder(model.to_device(device), name=plan.name, key=key), plan)


def _with_domain(embedder: BaseEmbedder, plan: _Plan) -> BaseEmbedder:
    """The engine, carrying the domain record of the folder's card (see inference.domain)."""
    if plan.card is not None:
        embedder.domain = plan.card.domain
    return embedder


def _int8_embedder(
    source: ModelSource,
    plan: _Plan,
    model: SiameseModel | None,
    module: nn.Module | None,
    threads: int | None,
    calibration: str | os.PathLike[str] | None,
) -> OnnxEmbedder:
    """The model's int8 export in ONNX Runtime (see the module docstring).

    Raises:
        LookalikeError: No int8 export and no calibration folder known, an export whose
            agreement check failed, or a model without a key.
    """
    from lookalike.inference import quantize as Q

    reference: BaseEmbedder | None = None
    key = plan.key
    if key is None:  # keyed once built (a timm backbone, a prefix-only sha256)
        reference = load_embedder(
            source, model=model, module=module, engine="onnx", device="cpu", threads=threads
        )
        key = reference.key
    if key is None:
        raise LookalikeError(
            f"the int8 engine needs a model with known weights; {source.describe()} has none"
        )
    settings = Q.Int8Settings()
    folder: str | None = None if calibration is None else str(calibration)
    if folder is not None:
        calibration_set, _ = Q.sample_images(folder, settings)
        wanted = Q.int8_cache_path(key, Q.calibration_digest(calibration_set, settings))
        cached = wanted if wanted.is_file() else None
    else:
        cached, folder = Q.find_cached(key)
    head = _head_from_folder(plan.folder, plan.card) if plan.folder and plan.card else None
    common = {"name": plan.name, "thresholds": plan.thresholds, "head": head}
    preprocess = plan.preprocess or (reference.preprocess if reference is not None else None)
    if cached is not None and preprocess is not None:
        try:
            embedder = OnnxEmbedder.open(
                cached, preprocess, threads=threads, expect_key=key, **common
            )
        except LookalikeError:
            embedder = None  # corrupt or stale: quantised again below when a folder is known
        if embedder is not None:
            meta = embedder.session.get_modelmeta().custom_metadata_map
            agreement = Q.recorded_agreement(meta)
            if agreement is None or not agreement.passed:
                raise LookalikeError(
                    f"the int8 model {cached} did not pass its agreement check; use --engine onnx"
                )
            embedder.engine = "onnx-int8"
            return embedder
    if folder is None or not Path(folder).is_dir():
        raise LookalikeError(
            f"no int8 model of {source.describe()} yet: run `lookalike export --int8 "
            "--calibration DIR` first (or give --calibration DIR)"
        )
    if not isinstance(reference, OnnxEmbedder):
        reference = load_embedder(
            source, model=model, module=module, engine="onnx", device="cpu", threads=threads
        )
    if not isinstance(reference, OnnxEmbedder):
        raise LookalikeError("the int8 engine needs onnxruntime: pip install lookalike[onnx]")
    built = Q.quantize_embedder(reference, folder, settings=settings)
    if not built.agreement.passed:
        a = built.agreement
        raise LookalikeError(
            f"the int8 model of {source.describe()} fails its agreement check (mean cosine "
            f"{a.mean_cosine:.4f}, recall@10 change {a.recall_change:+.1f} points on "
            f"{a.images} held-out images); use --engine onnx"
        )
    try:
        Q.store_cached(key, built, folder)
    except OSError as exc:  # a read-only cache costs the next run time, not this result
        warnings.warn(f"cannot cache the int8 model: {exc}", RuntimeWarning, stacklevel=3)
    embedder = OnnxEmbedder.from_bytes(
        built.data, reference.preprocess, threads=threads, key=key, **common
    )
    embedder.engine = "onnx-int8"
    return embedder
