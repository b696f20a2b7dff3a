"""Backbone builders (torch): a :class:`~lookalike.model.backbones.specs.BackboneSpec` → a network.

A factory receives the registry's spec and a :class:`BuildRequest` (pretrained or not, an
explicit weights file, input channels) and returns a :class:`Backbone`: a module mapping
images (N, C, H, W) to a feature map (N, F, h, w), with the preprocessing it expects and the
sha256 of the weights it loaded. This module holds the shared pieces and the builders of
the torchvision-style networks (``mobilenet_v2``, ``vgg16``, ``resnet50``, ``small_cnn``);
the timm-built ones are in :mod:`lookalike.model.backbones.timm`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import nn

from lookalike.errors import BackboneError, WeightsError
from lookalike.imaging.preprocess import Preprocess
from lookalike.model import weights as W
from lookalike.model.backbones.specs import BackboneSpec

__all__ = [
    "FACTORIES",
    "Backbone",
    "BuildRequest",
    "Factory",
    "WeightsPath",
    "adapt_first_conv",
    "load_strict",
    "resolve_state",
]

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


Factory = Callable[[BackboneSpec, BuildRequest], Backbone]
_Net = TypeVar("_Net", bound=nn.Module)


def adapt_first_conv(module: nn.Module, in_chans: int) -> None:
    """Make the first 3-channel convolution accept ``in_chans`` channels (sum or repeat weights)."""
    for child in module.modules():
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
    raise BackboneError("no 3-channel convolution found to adapt to the requested channels")


def resolve_state(spec: BackboneSpec, request: BuildRequest) -> tuple[dict[str, object], str]:
    """The spec's pretrained state dict and the sha256 its file was verified against."""
    if spec.weights is None:
        raise WeightsError(f"backbone {spec.name!r} has no pretrained weights source")
    path, sha = W.resolve_verified(spec.weights, explicit=request.weights_file)
    return W.load_state_dict(path), sha


def load_strict(module: nn.Module, state: dict[str, object], what: str) -> None:
    """Load a state dict that must fit exactly.

    Raises:
        WeightsError: It does not.
    """
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{what}: weights do not fit the architecture: {exc}") from exc


def _build_mobilenet_v2(spec: BackboneSpec, request: BuildRequest) -> Backbone:
    from lookalike.model.backbones.nets.mobilenet_v2 import MobileNetV2

    net = MobileNetV2(num_classes=0)
    sha = None
    if request.pretrained:
        state, sha = resolve_state(spec, request)
        features = {k: v for k, v in state.items() if not k.startswith("classifier.")}
        load_strict(net, features, spec.name)
    adapt_first_conv(net, request.in_chans)
    return Backbone(spec.name, net, spec.feature_dim, spec.preprocess, sha)


def _pretrained_trunk(
    spec: BackboneSpec, request: BuildRequest, net: _Net, trunk: Callable[[_Net], nn.Module]
) -> Backbone:
    """A torchvision classifier with its (strictly loaded) weights, cut to its feature trunk."""
    sha = None
    if request.pretrained:
        state, sha = resolve_state(spec, request)
        load_strict(net, state, spec.name)
    features = trunk(net)
    adapt_first_conv(features, request.in_chans)
    return Backbone(spec.name, features, spec.feature_dim, spec.preprocess, sha)


def _build_vgg16(spec: BackboneSpec, request: BuildRequest) -> Backbone:
    from torchvision.models import vgg16

    return _pretrained_trunk(spec, request, vgg16(weights=None), lambda net: net.features)


def _build_resnet50(spec: BackboneSpec, request: BuildRequest) -> Backbone:
    from torchvision.models import resnet50

    def trunk(net: nn.Module) -> nn.Module:
        return nn.Sequential(*list(net.children())[:-2])  # drop avgpool and fc

    return _pretrained_trunk(spec, request, resnet50(weights=None), trunk)


def _build_small_cnn(spec: BackboneSpec, request: BuildRequest) -> Backbone:
    from lookalike.model.backbones.nets.small_cnn import SmallCNN

    net = SmallCNN(in_chans=request.in_chans)
    return Backbone(spec.name, net, net.feature_dim, spec.preprocess)


FACTORIES: dict[str, Factory] = {
    "mobilenet_v2": _build_mobilenet_v2,
    "vgg16": _build_vgg16,
    "resnet50": _build_resnet50,
    "small_cnn": _build_small_cnn,
}
"""Registry name → builder of the torchvision-style networks (the timm-built ones are in
:data:`lookalike.model.backbones.timm.FACTORIES`)."""
