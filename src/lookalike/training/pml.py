"""Any pytorch-metric-learning loss or miner by name, the way any timm model is a backbone.

``--loss pml:MultiSimilarityLoss --miner pml:MultiSimilarityMiner``, or
``--loss pml:ArcFaceLoss --loss-args '{"margin": 28.6}'``: the name is looked up in
``pytorch_metric_learning.losses`` / ``.miners``, its arguments are checked against the
constructor's signature before anything runs, and ``num_classes`` / ``embedding_size`` are
filled in from the data and the model when the class takes them. Proxy losses (ArcFace,
CosFace, ProxyAnchor, NormalizedSoftmax, SoftTriple…) have parameters of their own: the
trainer optimises them with the model and saves them in the checkpoint, so a resumed run
continues exactly.
"""

from __future__ import annotations

import inspect
from typing import Any, cast

from torch import nn

from lookalike.errors import LookalikeError

__all__ = ["PML_PREFIX", "check", "is_pml", "pml_loss", "pml_miner"]

PML_PREFIX = "pml:"


def is_pml(name: str | None) -> bool:
    """Whether ``name`` names a pytorch-metric-learning class (``pml:Name``)."""
    return bool(name) and str(name).startswith(PML_PREFIX)


def _module(kind: str) -> Any:
    try:
        if kind == "losses":
            from pytorch_metric_learning import losses

            return losses
        from pytorch_metric_learning import miners

        return miners
    except ImportError as exc:
        raise LookalikeError(
            "pml: losses and miners need pytorch-metric-learning: pip install 'lookalike[pml]'"
        ) from exc


def check(kind: str, name: str, args: dict[str, Any]) -> None:
    """Check a ``pml:`` name and its arguments without building anything.

    Args:
        kind: ``"losses"`` or ``"miners"``.
        name: ``pml:ClassName``.
        args: Constructor arguments.

    Raises:
        ValueError: An unknown class (the known ones are listed) or arguments it refuses.
        LookalikeError: pytorch-metric-learning is not installed.
    """
    _resolve(kind, name, args)


def _accepted(cls: type) -> set[str]:
    """Keyword arguments a pml class accepts: its own and those its bases take through
    ``**kwargs`` (pml classes pass ``reducer``, ``distance`` … up the chain)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass is nn.Module or klass is object:
            break
        init = vars(klass).get("__init__")
        if init is None:
            continue
        for param in inspect.signature(init).parameters.values():
            if param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
                names.add(param.name)
        if not any(p.kind is p.VAR_KEYWORD for p in inspect.signature(init).parameters.values()):
            break
    names.discard("self")
    return names


def _resolve(kind: str, name: str, args: dict[str, Any]) -> tuple[Any, Any]:
    if not is_pml(name):
        raise ValueError(f"not a pml name: {name!r} (expected {PML_PREFIX}ClassName)")
    cls_name = name[len(PML_PREFIX) :]
    module = _module(kind)
    cls = getattr(module, cls_name, None)
    base = module.BaseMetricLossFunction if kind == "losses" else module.BaseMiner
    if not (inspect.isclass(cls) and issubclass(cls, base)) or cls_name.startswith("Base"):
        known = sorted(
            n
            for n, c in vars(module).items()
            if inspect.isclass(c) and issubclass(c, base) and not n.startswith("Base")
        )
        raise ValueError(
            f"pytorch-metric-learning has no {'loss' if kind == 'losses' else 'miner'} "
            f"{cls_name!r}; try one of: " + ", ".join(known)
        )
    if not isinstance(args, dict):
        raise ValueError(f"{name} arguments must be a JSON object, got {args!r}")
    params = _accepted(cls)
    unknown = [k for k in args if k not in params]
    if unknown:
        raise ValueError(
            f"{name} does not take {', '.join(unknown)}; it takes: " + ", ".join(sorted(params))
        )
    return cls, params


def _build(kind: str, name: str, args: dict[str, Any], fill: dict[str, Any]) -> nn.Module:
    cls, params = _resolve(kind, name, args)
    values = dict(args)
    for key, value in fill.items():
        if key in params and key not in values:
            values[key] = value
    try:
        built = cast(nn.Module, cls(**values))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cannot build {name} with {values}: {exc}") from exc
    return built


def pml_loss(
    name: str, args: dict[str, Any], *, num_classes: int, embedding_size: int
) -> nn.Module:
    """Build a pytorch-metric-learning loss.

    Args:
        name: ``pml:ClassName`` of a class in ``pytorch_metric_learning.losses``.
        args: Its constructor arguments (JSON-able).
        num_classes: Training identities (filled in when the loss takes it).
        embedding_size: The model's embedding size D (likewise).

    Returns:
        The loss, called as ``loss(embeddings (B, D), labels (B,), indices_tuple=None)``.

    Raises:
        ValueError: An unknown class (the known ones are listed) or arguments it refuses.
        LookalikeError: pytorch-metric-learning is not installed.
    """
    fill = {"num_classes": num_classes, "embedding_size": embedding_size}
    return _build("losses", name, args, fill)


def pml_miner(name: str, args: dict[str, Any]) -> nn.Module:
    """Build a pytorch-metric-learning miner (``pml:ClassName``; see :func:`pml_loss`).

    Returns:
        The miner, called as ``miner(embeddings (B, D), labels (B,)) -> indices_tuple``.
    """
    return _build("miners", name, args, {})
