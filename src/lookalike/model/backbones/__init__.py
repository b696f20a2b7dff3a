"""Backbone registry: a name → a feature extractor plus the preprocessing it expects.

Every backbone maps images (N, C, H, W) to a feature map (N, F, h, w); pooling,
projection and normalisation live in :class:`lookalike.model.network.SiameseModel`. A
:class:`BackboneSpec` carries the preprocessing and the weights source, so transforms
come from the model and are never hard-coded twice (timm's ``pretrained_cfg`` habit).

Registered names: ``mobilenet_v2`` (default, offline ImageNet weights),
``efficientnet_lite0`` (offline ImageNet weights), ``vgg16``, ``resnet50``,
``efficientnet_b0`` (online weights), ``small_cnn`` (no pretrained weights, for small
grayscale images), and any timm model as ``timm:<name>``.

The package is split on the torch seam:

* :mod:`~lookalike.model.backbones.specs` — the torch-free facts (:class:`BackboneSpec`,
  :func:`list_backbones`, :data:`DEFAULT_BACKBONE`);
* :mod:`~lookalike.model.backbones.factories` — the torch builders (:class:`Backbone`,
  :class:`BuildRequest`, :func:`adapt_first_conv`) of the torchvision-style networks;
* :mod:`~lookalike.model.backbones.timm` — ``timm:<name>`` and the timm-built EfficientNets
  (:class:`TimmFeatures`).

This module is the registry (:func:`get_spec`, :func:`build_backbone`, :func:`register`);
importing it does not import torch (the builders are imported when a backbone is built).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lookalike._lazy import lazy_exports
from lookalike.errors import BackboneError, WeightsError
from lookalike.model.backbones.specs import (
    DEFAULT_BACKBONE,
    TIMM_PREFIX,
    BackboneSpec,
    add_spec,
    find_spec,
    list_backbones,
    timm_arch,
)

if TYPE_CHECKING:
    from lookalike.model.backbones.factories import (
        Backbone,
        BuildRequest,
        Factory,
        WeightsPath,
        adapt_first_conv,
    )
    from lookalike.model.backbones.timm import TimmFeatures

__all__ = [
    "DEFAULT_BACKBONE",
    "TIMM_PREFIX",
    "Backbone",
    "BackboneSpec",
    "BuildRequest",
    "Factory",
    "TimmFeatures",
    "WeightsPath",
    "adapt_first_conv",
    "build_backbone",
    "get_spec",
    "list_backbones",
    "register",
]

_LAZY = {
    "Backbone": "lookalike.model.backbones.factories",
    "BuildRequest": "lookalike.model.backbones.factories",
    "Factory": "lookalike.model.backbones.factories",
    "WeightsPath": "lookalike.model.backbones.factories",
    "adapt_first_conv": "lookalike.model.backbones.factories",
    "TimmFeatures": "lookalike.model.backbones.timm",
}

_REGISTERED: dict[str, Factory] = {}
"""Builders of the backbones added with :func:`register`."""


def register(spec: BackboneSpec, factory: Factory) -> BackboneSpec:
    """Add a backbone to the registry (names must be unique).

    Args:
        spec: Its facts.
        factory: Builds it: ``factory(spec, request) -> Backbone``.

    Raises:
        ValueError: The name is taken (or starts with ``timm:``).
    """
    add_spec(spec)
    _REGISTERED[spec.name] = factory
    return spec


def get_spec(name: str) -> BackboneSpec:
    """Look up a backbone by name, including ``timm:<name>`` (which builds the timm model once).

    Raises:
        BackboneError: Unknown name; the message lists the valid ones.
    """
    spec = find_spec(name)
    if spec is not None:
        return spec
    from lookalike.model.backbones.timm import timm_spec

    return timm_spec(str(timm_arch(name)))


def _factory(name: str) -> Factory:
    if name in _REGISTERED:
        return _REGISTERED[name]
    from lookalike.model.backbones import factories, timm

    return {**factories.FACTORIES, **timm.FACTORIES}[name]


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
    from lookalike.model.backbones.factories import BuildRequest

    spec = find_spec(name)  # None: a timm:<name> backbone, whose facts come with the model
    if pretrained is None:
        pretrained = (spec is None or spec.pretrained_default) or weights_file is not None
    if pretrained and spec is not None and spec.weights is None:
        raise WeightsError(
            f"backbone {name!r} has no pretrained weights; use pretrained=False (--no-pretrained)"
        )
    chans = (3 if spec is None else spec.preprocess.channels) if in_chans is None else in_chans
    if chans not in (1, 3):
        raise BackboneError(f"in_chans must be 1 or 3, got {chans}")
    request = BuildRequest(pretrained, weights_file, chans)
    if spec is None:
        from lookalike.model.backbones.timm import build_timm

        backbone = build_timm(str(timm_arch(name)), request)
    else:
        backbone = _factory(name)(spec, request)
    backbone.preprocess = backbone.preprocess.with_channels(chans)
    backbone.module.eval()
    return backbone


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
