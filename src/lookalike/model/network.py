"""SiameseModel: backbone → pooling → optional projection → L2 normalisation (+ optional PairHead).

One network with shared weights embeds every image; pairs are compared by cosine
similarity, euclidean distance, or the trainable :class:`~lookalike.model.layers.PairHead`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lookalike.errors import ModelFolderError
from lookalike.imaging.images import ImageSource
from lookalike.imaging.preprocess import Preprocess
from lookalike.model.backbones import DEFAULT_BACKBONE, Backbone, build_backbone
from lookalike.model.card import BackboneWeights, ModelCard
from lookalike.model.device import resolve_device
from lookalike.model.domain import DomainRecord
from lookalike.model.folder import (
    TENSORS_FILE,
    check_tensors,
    provenance,
    read_card,
    read_tensors,
    write_folder,
)
from lookalike.model.layers import PairHead, Pool, projection_mlp


class SiameseModel(nn.Module):
    """The shared-weight embedding network and, optionally, its pair head.

    Args:
        backbone: A built :class:`~lookalike.model.backbones.Backbone`.
        pooling: ``"avg"`` (default), ``"gem"``, ``"max"`` or ``"flatten"`` (seed 001's VGG
            flatten; the embedding size then depends on the input size).
        projection: Widths of an optional projection MLP after pooling; empty for none.
        normalize: L2-normalise embeddings (default; seed 000 makes it optional).
        head: Build a :class:`PairHead` on top (trained later by few-shot head training).

    Attributes:
        embedding_dim: Size D of the embeddings.
        thresholds: Calibrated decision thresholds (``{"cosine": 0.8}``, ...), saved with the model.
        metrics: Evaluation figures known for this model, saved with it.
        provenance: How the model was made (filled by training and saving).
    """

    def __init__(
        self,
        backbone: Backbone,
        *,
        pooling: str = "avg",
        projection: Sequence[int] = (),
        normalize: bool = True,
        head: bool = False,
    ) -> None:
        super().__init__()
        self.backbone_name = backbone.name
        self.backbone = backbone.module
        self.feature_dim = backbone.feature_dim
        self.preprocess: Preprocess = backbone.preprocess
        self.weights_sha256 = backbone.weights_sha256
        self.pool = Pool(pooling)
        pooled_dim = self._pooled_dim()
        self.projection_widths = tuple(int(w) for w in projection)
        self.projection = projection_mlp(pooled_dim, self.projection_widths) if projection else None
        self.embedding_dim = self.projection_widths[-1] if projection else pooled_dim
        self.normalize = bool(normalize)
        self.head: PairHead | None = PairHead(self.embedding_dim) if head else None
        self.thresholds: dict[str, float] = {}
        self.metrics: dict[str, Any] = {}
        self.provenance: dict[str, Any] = {}
        self.domain: DomainRecord | None = None  # statistics of the training embeddings
        self.eval()

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        backbone: str = DEFAULT_BACKBONE,
        *,
        pretrained: bool | None = None,
        weights_file: str | os.PathLike[str] | None = None,
        input_size: int | tuple[int, int] | None = None,
        channels: int | None = None,
        pooling: str = "avg",
        projection: Sequence[int] = (),
        normalize: bool = True,
        head: bool = False,
    ) -> SiameseModel:
        """Build a model from a registered backbone name.

        Args:
            backbone: Registry name or ``timm:<name>`` (see ``lookalike backbones``).
            pretrained: Load pretrained weights (``None``: the backbone's default).
            weights_file: Explicit pretrained weights file.
            input_size: Model input size in pixels (int for square, or (height, width)).
            channels: 1 (grayscale) or 3 (RGB) input channels.
            pooling, projection, normalize, head: See the class docstring.

        Raises:
            BackboneError: Unknown backbone or invalid option.
            WeightsError: Pretrained weights unavailable (never silently replaced by random ones).
        """
        built = build_backbone(
            backbone, pretrained=pretrained, weights_file=weights_file, in_chans=channels
        )
        if input_size is not None:
            built.preprocess = built.preprocess.with_input_size(input_size)
        return cls(built, pooling=pooling, projection=projection, normalize=normalize, head=head)

    @classmethod
    def from_module(
        cls,
        module: nn.Module,
        preprocess: Preprocess,
        *,
        feature_dim: int | None = None,
        pooling: str = "avg",
        projection: Sequence[int] = (),
        normalize: bool = True,
        head: bool = False,
    ) -> SiameseModel:
        """Wrap a user's own backbone.

        Args:
            module: Maps (N, C, H, W) images to a (N, F, h, w) feature map (or (N, F) vectors).
            preprocess: The preprocessing the module expects.
            feature_dim: F; measured with a dummy forward pass when ``None``.

        Returns:
            A model whose folder stores the module's weights and the module's class name;
            loading it asks for an instance of that class.
        """
        wrapped = _ensure_map(module)
        if feature_dim is None:
            with torch.no_grad():
                probe = torch.zeros(1, preprocess.channels, *preprocess.input_size)
                feature_dim = int(wrapped.eval()(probe).shape[1])
        backbone = Backbone("custom", wrapped, feature_dim, preprocess)
        model = cls(
            backbone, pooling=pooling, projection=projection, normalize=normalize, head=head
        )
        model.custom_class = f"{type(module).__module__}.{type(module).__qualname__}"
        return model

    def _pooled_dim(self) -> int:
        if self.pool.kind != "flatten":
            return self.feature_dim
        with torch.no_grad():
            probe = torch.zeros(1, self.preprocess.channels, *self.preprocess.input_size)
            return int(self.pool(self.backbone.eval()(probe)).shape[1])

    # -- forward --------------------------------------------------------------------------------

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone feature map (N, F, h, w) for preprocessed images (N, C, H, W)."""
        out: torch.Tensor = self.backbone(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed preprocessed images (N, C, H, W) into (N, D) embeddings (differentiable)."""
        z = self.pool(self.feature_map(x))
        if self.projection is not None:
            z = self.projection(z)
        return F.normalize(z, dim=1) if self.normalize else z

    # -- inference ------------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        """The device the model's parameters live on."""
        return next(self.parameters()).device

    def to_device(self, device: str | torch.device | None = None) -> SiameseModel:
        """Move to ``device`` (``None``/``"auto"``: CUDA if available, else CPU); returns self."""
        return self.to(resolve_device(device))

    def _batches(
        self, images: Sequence[ImageSource] | np.ndarray, batch_size: int
    ) -> Iterator[np.ndarray]:
        if isinstance(images, np.ndarray) and images.ndim == 4:
            for start in range(0, len(images), batch_size):
                yield images[start : start + batch_size].astype(np.float32, copy=False)
            return
        items = list(images)
        for start in range(0, len(items), batch_size):
            yield self.preprocess.batch(items[start : start + batch_size])

    @torch.inference_mode()
    def embed(
        self,
        images: Sequence[ImageSource] | np.ndarray,
        *,
        batch_size: int = 32,
        amp: bool | None = None,
    ) -> np.ndarray:
        """Embed images.

        Args:
            images: Paths, bytes, PIL images or HWC arrays (opened with
                :func:`lookalike.imaging.images.load_image`), or an already preprocessed float array
                of shape (N, C, H, W).
            batch_size: Images per forward pass.
            amp: Mixed precision; ``None`` turns it on on CUDA only.

        Returns:
            float32 array (N, D); rows are unit vectors when ``normalize`` is on.

        Raises:
            ImageError: An image cannot be read (the message names it).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        was_training = self.training
        self.eval()
        device = self.device
        use_amp = device.type == "cuda" if amp is None else amp
        chunks = []
        for batch in self._batches(images, batch_size):
            x = torch.from_numpy(batch)
            if device.type == "cuda":
                x = x.pin_memory().to(device, non_blocking=True)
            with torch.autocast(device.type, enabled=use_amp and device.type == "cuda"):
                z = self.forward(x)
            chunks.append(z.float().cpu().numpy())
        self.train(was_training)
        if not chunks:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        return np.concatenate(chunks).astype(np.float32, copy=False)

    @torch.inference_mode()
    def pair_probability(self, emb_a: np.ndarray, emb_b: np.ndarray) -> np.ndarray | None:
        """P(same) (N,) from the pair head for embeddings (N, D), (N, D); None without a head."""
        if self.head is None:
            return None
        self.head.eval()
        a = torch.as_tensor(np.atleast_2d(emb_a), dtype=torch.float32, device=self.device)
        b = torch.as_tensor(np.atleast_2d(emb_b), dtype=torch.float32, device=self.device)
        out: np.ndarray = self.head.probability(a, b).float().cpu().numpy()
        return out

    # -- persistence ----------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str], *, include_backbone: bool = True) -> None:
        """Save as a model folder (config.json + model.safetensors); see ``model.folder``."""
        _save_folder(self, path, include_backbone=include_backbone)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        module: nn.Module | None = None,
        device: str | torch.device | None = "cpu",
    ) -> SiameseModel:
        """Load a model folder; ``module`` is required for folders with a custom backbone."""
        return _load_folder(path, module=module).to_device(device)

    def card(self) -> ModelCard:
        """The model's card: architecture, preprocessing, thresholds, metrics, provenance.

        The backbone is recorded as stored (an in-memory model holds all its tensors);
        :meth:`save` records ``include_backbone`` and the provenance of the save.
        """
        return ModelCard(
            backbone=self.backbone_name,
            feature_dim=self.feature_dim,
            embedding_dim=self.embedding_dim,
            preprocess=self.preprocess,
            pooling=self.pool.kind,
            projection=self.projection_widths,
            normalize=self.normalize,
            head=self.head.config() if self.head is not None else None,
            backbone_weights=BackboneWeights(
                stored=True, pretrained_sha256=self.weights_sha256, custom_class=self.custom_class
            ),
            thresholds=dict(self.thresholds),
            metrics=dict(self.metrics),
            provenance=dict(self.provenance),
            domain=self.domain if self._domain_fits() else None,
        )

    def _domain_fits(self) -> bool:
        """The domain record is for embeddings of this model's size (not stale)."""
        return self.domain is not None and self.domain.dim == self.embedding_dim

    @classmethod
    def from_card(cls, card: ModelCard, *, module: nn.Module | None = None) -> SiameseModel:
        """Build the network a card describes, with its thresholds, metrics and provenance.

        A backbone referenced by sha256 (``stored`` false) gets the registry's pretrained
        weights; every other tensor keeps its initial value until a state dict is loaded
        (:meth:`load` reads them from the folder).

        Args:
            card: The card.
            module: An instance of the custom backbone class, for a ``custom`` backbone.

        Raises:
            ModelFolderError: A custom backbone without ``module``, pretrained weights whose
                sha256 differs from the recorded one, or a head the card mangles.
            WeightsError: Referenced pretrained weights are unavailable.
        """
        arch: dict[str, Any] = {
            "pooling": card.pooling,
            "projection": card.projection,
            "normalize": card.normalize,
        }
        weights = card.backbone_weights
        if card.backbone == "custom":
            if module is None:
                raise ModelFolderError(
                    f"the model holds a custom backbone ({weights.custom_class}); "
                    "pass an instance of it: SiameseModel.load(path, module=MyBackbone())"
                )
            model = cls.from_module(module, card.preprocess, feature_dim=card.feature_dim, **arch)
        else:
            backbone = build_backbone(
                card.backbone, pretrained=not weights.stored, in_chans=card.preprocess.channels
            )
            if not weights.stored and backbone.weights_sha256 != weights.pretrained_sha256:
                raise ModelFolderError(
                    f"the model expects {card.backbone} weights with sha256 "
                    f"{weights.pretrained_sha256}, found {backbone.weights_sha256}"
                )
            backbone.preprocess = card.preprocess
            model = cls(backbone, **arch)
            model.weights_sha256 = weights.pretrained_sha256
        built = {"feature_dim": model.feature_dim, "embedding_dim": model.embedding_dim}
        for name, size in built.items():
            if size != getattr(card, name):
                raise ModelFolderError(
                    f"the card's field {name!r} is {getattr(card, name)}, but the network it "
                    f"describes has {size}"
                )
        if card.head is not None:
            try:
                model.head = PairHead(**card.head)
            except (TypeError, ValueError) as exc:
                raise ModelFolderError(f"the card's field 'head' is no pair head: {exc}") from exc
        model.thresholds = dict(card.thresholds)
        model.metrics = dict(card.metrics)
        model.provenance = dict(card.provenance)
        model.domain = card.domain
        return model.eval()

    custom_class: str | None = None


class _MapAdapter(nn.Module):
    """Make a module that returns (N, F) vectors look like one returning (N, F, 1, 1) maps."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.module(x)
        return out[:, :, None, None] if out.ndim == 2 else out


def _ensure_map(module: nn.Module) -> nn.Module:
    return _MapAdapter(module)


def _save_folder(
    model: SiameseModel, path: str | os.PathLike[str], *, include_backbone: bool = True
) -> Path:
    """Save a model folder (see :meth:`SiameseModel.save`).

    Raises:
        ModelFolderError: ``include_backbone=False`` for a backbone without pretrained weights.
    """
    if not include_backbone and (model.weights_sha256 is None or model.custom_class):
        raise ModelFolderError(
            "include_backbone=False needs a registered backbone with pretrained weights"
        )
    state = {
        k: v.detach().cpu().contiguous()
        for k, v in model.state_dict().items()
        if include_backbone or not k.startswith("backbone.")
    }
    card = model.card()
    card = replace(
        card,
        backbone_weights=replace(card.backbone_weights, stored=include_backbone),
        provenance=provenance(model.provenance),
    )
    return write_folder(path, card, state)


def _load_folder(path: str | os.PathLike[str], *, module: nn.Module | None = None) -> SiameseModel:
    """Load a model folder written by :func:`_save_folder`.

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
    folder = Path(path)
    card = read_card(folder)
    check_tensors(folder, card)  # the file holds what the card implies, before building it
    try:
        model = SiameseModel.from_card(card, module=module)
    except ModelFolderError as exc:
        raise ModelFolderError(f"{folder}: {exc}") from exc
    tensors_path = folder / TENSORS_FILE
    state = read_tensors(folder)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise ModelFolderError(f"{tensors_path} does not fit the configured model: {exc}") from exc
    if not card.backbone_weights.stored:
        missing = [k for k in missing if not k.startswith("backbone.")]
    if missing or unexpected:
        raise ModelFolderError(
            f"{tensors_path} does not fit the configured model "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    exponent = None if model.pool.gem is None else float(model.pool.gem.p.detach())
    if exponent is not None and not exponent > 0:
        raise ModelFolderError(
            f"{tensors_path} holds a GeM exponent of {exponent}; it must be positive: "
            "the weights are damaged"
        )
    model.eval()
    return model
