"""The network and its folder: what a lookalike model is, how it is saved, where weights come from.

* :class:`SiameseModel` (:mod:`~lookalike.model.network`) — backbone → pooling → optional
  projection → L2 normalisation, plus an optional pair head; ``create`` (a registered
  backbone), ``from_module`` (your own), ``embed``, ``pair_probability``, ``save``/``load``,
  ``card``/``from_card``.
* Layers (:mod:`~lookalike.model.layers`) — :class:`PairHead` (|e_a − e_b| → P(same)),
  :class:`GeM`, :class:`Pool`, :func:`projection_mlp`.
* :class:`ModelCard` (:mod:`~lookalike.model.card`, torch-free) — the typed ``config.json``
  and **the** model key (:meth:`ModelCard.key`) that names ONNX exports and index models;
  :class:`BackboneWeights`.
* Folder I/O (:mod:`~lookalike.model.folder`) — :func:`read_card`, :func:`write_folder`,
  :func:`read_tensors`, :func:`tensors_sha256`, :func:`update_config`, :func:`describe`; it
  never builds a network.
* Backbones (:mod:`~lookalike.model.backbones`) — the registry: :func:`build_backbone`,
  :func:`get_spec`, :func:`list_backbones`, :data:`DEFAULT_BACKBONE`; its torch-free facts are
  :mod:`lookalike.model.backbones.specs` (:class:`BackboneSpec`).
* Weights (:mod:`~lookalike.model.weights`) — :class:`WeightSource` and sha256-verified
  resolution (explicit file → cache → package → URL), :func:`cache_dir`.
* Device (:mod:`~lookalike.model.device`) — :func:`resolve_device`, :func:`set_threads`.

Names are imported lazily: ``import lookalike.model`` (and ``lookalike.model.card``,
``lookalike.model.backbones.specs``) does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lookalike._lazy import lazy_exports

if TYPE_CHECKING:
    from lookalike.model.backbones import DEFAULT_BACKBONE, build_backbone, get_spec, list_backbones
    from lookalike.model.backbones.specs import BackboneSpec
    from lookalike.model.card import BackboneWeights, ModelCard
    from lookalike.model.device import resolve_device, set_threads
    from lookalike.model.folder import (
        describe,
        read_card,
        read_tensors,
        tensors_sha256,
        update_config,
        write_folder,
    )
    from lookalike.model.layers import GeM, PairHead, Pool, projection_mlp
    from lookalike.model.network import SiameseModel
    from lookalike.model.weights import WeightSource, cache_dir

_LAZY = {
    "SiameseModel": "lookalike.model.network",
    "PairHead": "lookalike.model.layers",
    "GeM": "lookalike.model.layers",
    "Pool": "lookalike.model.layers",
    "projection_mlp": "lookalike.model.layers",
    "ModelCard": "lookalike.model.card",
    "BackboneWeights": "lookalike.model.card",
    "read_card": "lookalike.model.folder",
    "write_folder": "lookalike.model.folder",
    "read_tensors": "lookalike.model.folder",
    "tensors_sha256": "lookalike.model.folder",
    "update_config": "lookalike.model.folder",
    "describe": "lookalike.model.folder",
    "DEFAULT_BACKBONE": "lookalike.model.backbones",
    "build_backbone": "lookalike.model.backbones",
    "get_spec": "lookalike.model.backbones",
    "list_backbones": "lookalike.model.backbones",
    "BackboneSpec": "lookalike.model.backbones.specs",
    "WeightSource": "lookalike.model.weights",
    "cache_dir": "lookalike.model.weights",
    "resolve_device": "lookalike.model.device",
    "set_threads": "lookalike.model.device",
}

__all__ = [
    "DEFAULT_BACKBONE",
    "BackboneSpec",
    "BackboneWeights",
    "GeM",
    "ModelCard",
    "PairHead",
    "Pool",
    "SiameseModel",
    "WeightSource",
    "build_backbone",
    "cache_dir",
    "describe",
    "get_spec",
    "list_backbones",
    "projection_mlp",
    "read_card",
    "read_tensors",
    "resolve_device",
    "set_threads",
    "tensors_sha256",
    "update_config",
    "write_folder",
]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
