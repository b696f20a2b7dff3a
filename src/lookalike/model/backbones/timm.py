"""Backbones built with timm: any ``timm:<name>``, ``efficientnet_b0`` and ``efficientnet_lite0``.

A ``timm:<name>`` backbone's facts (feature size, preprocessing) come from the timm model
itself, read from the very instance that is then built, so building one creates the timm
model once. :func:`timm_spec` (for ``get_spec``) builds one just to read those facts.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from lookalike._io import atomic_write_with, offline_mode, reachable, sha256_file
from lookalike.errors import BackboneError, WeightsError
from lookalike.imaging.preprocess import Preprocess
from lookalike.model import weights as W
from lookalike.model.backbones.factories import (
    Backbone,
    BuildRequest,
    Factory,
    adapt_first_conv,
    load_strict,
    resolve_state,
)
from lookalike.model.backbones.specs import TIMM_PREFIX, BackboneSpec

__all__ = ["FACTORIES", "TimmFeatures", "build_timm", "timm_spec"]


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


def _create(arch: str) -> nn.Module:
    """A 3-channel timm model without classifier or pooling, random weights."""
    try:
        import timm
    except ImportError as exc:  # pragma: no cover - timm is a core dependency
        raise BackboneError("timm backbones need timm: pip install timm") from exc
    try:
        model: nn.Module = timm.create_model(
            arch, pretrained=False, num_classes=0, global_pool="", in_chans=3
        )
    except RuntimeError as exc:
        raise BackboneError(f"timm has no model {arch!r}: {exc}") from exc
    return model


def _preprocess_of(model: nn.Module) -> Preprocess:
    """The preprocessing a timm model's ``pretrained_cfg`` asks for."""
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    size = cfg.get("input_size", (3, 224, 224))
    interpolation = cfg.get("interpolation", "bilinear")
    return Preprocess(
        input_size=(int(size[1]), int(size[2])),
        mean=tuple(float(v) for v in cfg.get("mean", (0.485, 0.456, 0.406))),
        std=tuple(float(v) for v in cfg.get("std", (0.229, 0.224, 0.225))),
        interpolation=interpolation if interpolation in ("bilinear", "bicubic") else "bilinear",
    )


def _hub_state(arch: str) -> dict[str, object]:
    """Download timm's pretrained weights (online only) and cache them as safetensors."""
    cached = W.cache_dir() / "weights" / f"timm-{arch.replace('/', '_')}.safetensors"
    if cached.is_file():
        return W.load_state_dict(cached)
    if offline_mode():
        raise WeightsError(
            f"pretrained weights for timm model {arch!r} come from the online hub and offline "
            "mode is on; pass an explicit weights file, or use pretrained=False"
        )
    hub = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    if not reachable(hub):
        raise WeightsError(
            f"pretrained weights for timm model {arch!r} come from the online hub and {hub} "
            "cannot be reached; pass an explicit weights file (--weights), or use "
            "pretrained=False (--no-pretrained)"
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


def _load_into(model: nn.Module, state: dict[str, object], arch: str) -> None:
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own}
    missing = [k for k in own if k not in usable]
    if missing:
        raise WeightsError(f"weights for {arch} miss {len(missing)} tensors, e.g. {missing[:3]}")
    model.load_state_dict(usable, strict=False)


def build_timm(
    arch: str,
    request: BuildRequest,
    *,
    name: str | None = None,
    preprocess: Preprocess | None = None,
) -> Backbone:
    """Build a timm model as a backbone (the model is created once).

    Args:
        arch: timm model name.
        request: What to build; pretrained weights come from ``request.weights_file`` or
            timm's online hub (cached as safetensors).
        name: The backbone's name (``timm:<arch>`` when ``None``).
        preprocess: The preprocessing (``None``: the model's own ``pretrained_cfg``).

    Raises:
        BackboneError: timm has no such model.
        WeightsError: Pretrained weights unavailable or not fitting.
    """
    model = _create(arch)
    pre = _preprocess_of(model) if preprocess is None else preprocess
    sha = None
    if request.pretrained:
        if request.weights_file is not None:
            path = Path(request.weights_file)
            if not path.is_file():
                raise WeightsError(f"weights file {path} does not exist")
            sha = sha256_file(path)
            state = W.load_state_dict(path)
        else:
            state = _hub_state(arch)
        _load_into(model, state, arch)
    adapt_first_conv(model, request.in_chans)
    wrapped = TimmFeatures(model)
    return Backbone(name or TIMM_PREFIX + arch, wrapped, wrapped.num_features, pre, sha)


def timm_spec(arch: str) -> BackboneSpec:
    """The spec of ``timm:<arch>``, read from a timm model built for the purpose.

    Raises:
        BackboneError: timm has no such model.
    """
    model = _create(arch)
    return BackboneSpec(
        name=TIMM_PREFIX + arch,
        description=f"timm model {arch} (weights from the online hub)",
        feature_dim=int(getattr(model, "num_features", 0)),
        preprocess=_preprocess_of(model),
        weights=None,
        pretrained_default=True,
    )


def _build_efficientnet_b0(spec: BackboneSpec, request: BuildRequest) -> Backbone:
    return build_timm("efficientnet_b0", request, name=spec.name, preprocess=spec.preprocess)


def _build_efficientnet_lite0(spec: BackboneSpec, request: BuildRequest) -> Backbone:
    """Offline weights in efficientnet-pytorch naming, mapped onto timm's model by position."""
    model = _create("efficientnet_lite0")
    sha = None
    if request.pretrained:
        state, sha = resolve_state(spec, request)
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
        load_strict(model, mapped, spec.name)
    adapt_first_conv(model, request.in_chans)
    wrapped = TimmFeatures(model)
    return Backbone(spec.name, wrapped, spec.feature_dim, spec.preprocess, sha)


FACTORIES: dict[str, Factory] = {
    "efficientnet_b0": _build_efficientnet_b0,
    "efficientnet_lite0": _build_efficientnet_lite0,
}
"""Registry name → builder, for the registered backbones built with timm."""
