"""The model card: config.json round trip, field checks, and the one model key."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from lookalike._version import __version__
from lookalike.errors import ModelFolderError
from lookalike.imaging.preprocess import Preprocess
from lookalike.inference import export
from lookalike.model.backbones.specs import find_spec
from lookalike.model.card import FORMAT, BackboneWeights, ModelCard
from lookalike.model.folder import describe, read_card, tensors_sha256, update_config
from lookalike.model.network import SiameseModel

# -- the keys as lookalike computed them before the card (inference/export.py, f12b480) --------


def _old_digest(description: dict[str, Any]) -> str:
    base = {"export_format": 1, "opset": 17, "lookalike": __version__}
    text = json.dumps({**base, **description}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _old_folder_key(folder: Path, preprocess: Preprocess) -> str:
    config = json.loads((folder / "config.json").read_text())
    arch_keys = ("backbone", "feature_dim", "pooling", "projection", "normalize")
    arch_keys += ("embedding_dim", "head", "backbone_weights")
    arch = {k: config.get(k) for k in arch_keys}
    tensors = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    return _old_digest(
        {"kind": "folder", "arch": arch, "preprocess": preprocess.to_dict(), "tensors": tensors}
    )


def _old_pretrained_key(backbone: str, sha256: str, preprocess: Preprocess) -> str:
    return _old_digest(
        {
            "kind": "pretrained",
            "backbone": backbone,
            "weights_sha256": sha256,
            "preprocess": preprocess.to_dict(),
            "pooling": "avg",
            "projection": [],
            "normalize": True,
        }
    )


def _old_module_key(model: SiameseModel) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        array = tensor.detach().cpu().contiguous().numpy()
        digest.update(f"{name}:{array.dtype}:{array.shape};".encode())
        digest.update(array.tobytes())
    config = {
        "backbone": model.backbone_name,
        "feature_dim": model.feature_dim,
        "pooling": model.pool.kind,
        "projection": list(model.projection_widths),
        "normalize": model.normalize,
        "embedding_dim": model.embedding_dim,
        "preprocess": model.preprocess.to_dict(),
        "head": model.head.config() if model.head is not None else None,
    }
    return _old_digest(
        {
            "kind": "module",
            "config": config,
            "custom_class": model.custom_class,
            "tensors": digest.hexdigest(),
        }
    )


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    """small_cnn with GeM, a projection, a head, thresholds and metrics, saved."""
    torch.manual_seed(0)
    model = SiameseModel.create("small_cnn", pooling="gem", projection=(16, 8), head=True)
    model.thresholds = {"cosine": 0.7}
    model.metrics = {"roc_auc": 0.9}
    model.save(tmp_path / "m")
    return tmp_path / "m"


def _config(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / "config.json").read_text())
    return data


# -- round trip -----------------------------------------------------------------------------


def test_round_trip_is_exact_and_keeps_unknown_keys(folder: Path) -> None:
    data = _config(folder)
    card = ModelCard.from_dict(data)
    assert card.to_dict() == data
    assert ModelCard.from_dict(card.to_dict()) == card
    assert card.backbone == "small_cnn" and card.pooling == "gem" and card.projection == (16, 8)
    assert card.head == {"embedding_dim": 8, "hidden": [256, 64], "dropout": 0.25}
    assert card.backbone_weights == BackboneWeights(stored=True)
    assert card.preprocess.input_size == (28, 28) and card.thresholds == {"cosine": 0.7}

    extended = {**data, "notes": {"by": "someone else"}, "format_version": 1}
    kept = ModelCard.from_dict(extended)
    assert kept.extra == {"notes": {"by": "someone else"}}
    assert kept.to_dict() == extended
    (folder / "config.json").write_text(json.dumps(extended))
    update_config(folder, thresholds={"euclidean": 0.4})
    after = _config(folder)
    assert after["notes"] == {"by": "someone else"}
    assert after["thresholds"] == {"cosine": 0.7, "euclidean": 0.4}


def test_describe_and_the_model_card_agree(folder: Path) -> None:
    info = describe(folder)
    assert set(info.pop("files")) == {"config.json", "model.safetensors"}
    assert info == read_card(folder).to_dict() == _config(folder)


def test_model_card_and_from_card_mirror_the_model(folder: Path) -> None:
    model = SiameseModel.load(folder)
    card = model.card()
    assert card.network() == read_card(folder).network()
    rebuilt = SiameseModel.from_card(card)
    assert rebuilt.card().network() == card.network()
    assert rebuilt.thresholds == {"cosine": 0.7} and rebuilt.metrics == {"roc_auc": 0.9}


# -- field checks ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("backbone", None, r"field 'backbone' must be a non-empty string"),
        ("feature_dim", "128", r"field 'feature_dim' must be an integer"),
        ("embedding_dim", 0, r"field 'embedding_dim' must be an integer ≥ 1"),
        ("pooling", "median", r"field 'pooling' must be one of avg, gem"),
        ("projection", [16, -1], r"field 'projection' must be a list of positive integers"),
        ("normalize", "yes", r"field 'normalize' must be true or false"),
        ("preprocess", {"input_size": [28, 28]}, r"field 'preprocess' must be a preprocessing"),
        ("head", [8], r"field 'head' must be the pair head's settings or null"),
        ("backbone_weights", {"stored": "no"}, r"field 'backbone_weights' must be an object"),
        ("thresholds", {"cosine": "high"}, r"field 'thresholds' must be an object of numbers"),
        ("metrics", [], r"field 'metrics' must be an object"),
    ],
)
def test_a_bad_field_is_named(folder: Path, field: str, value: Any, message: str) -> None:
    data = _config(folder)
    with pytest.raises(ModelFolderError, match=message):
        ModelCard.from_dict({**data, field: value})
    (folder / "config.json").write_text(json.dumps({**data, field: value}))
    with pytest.raises(ModelFolderError, match=r"config\.json: field"):
        read_card(folder)
    with pytest.raises(ModelFolderError, match=message):
        SiameseModel.load(folder)


def test_missing_fields_format_and_version(folder: Path) -> None:
    data = _config(folder)
    for name in ("backbone", "feature_dim", "preprocess", "head", "backbone_weights"):
        without = {k: v for k, v in data.items() if k != name}
        with pytest.raises(ModelFolderError, match=f"lacks the field '{name}'"):
            ModelCard.from_dict(without)
    with pytest.raises(ModelFolderError, match="not a lookalike model config"):
        ModelCard.from_dict({**data, "format": "something.else"})
    with pytest.raises(ModelFolderError, match="not a lookalike model config"):
        ModelCard.from_dict([data])  # type: ignore[arg-type]
    with pytest.raises(ModelFolderError, match="newer lookalike"):
        ModelCard.from_dict({**data, "format_version": 99})
    card = ModelCard.from_dict({k: v for k, v in data.items() if k not in ("metrics",)})
    assert card.metrics == {} and card.format == FORMAT


# -- the model key --------------------------------------------------------------------------


def test_key_is_stable_across_save_and_load(folder: Path, tmp_path: Path) -> None:
    key = read_card(folder).key(tensors_sha256(folder))
    assert len(key) == 64
    SiameseModel.load(folder).save(tmp_path / "again")
    assert read_card(tmp_path / "again").key(tensors_sha256(tmp_path / "again")) == key
    update_config(folder, thresholds={"cosine": 0.1}, metrics={"note": 1})
    assert read_card(folder).key(tensors_sha256(folder)) == key  # thresholds are not the network


def test_key_changes_with_the_tensors_or_the_preprocessing(folder: Path, tmp_path: Path) -> None:
    card, tensors = read_card(folder), tensors_sha256(folder)
    key = card.key(tensors)
    assert card.with_input_size(32).key(tensors) != key
    assert replace(card, preprocess=replace(card.preprocess, mean=(0.4,))).key(tensors) != key
    model = SiameseModel.load(folder)
    with torch.no_grad():
        next(model.projection.parameters()).add_(0.01)  # type: ignore[union-attr]
    model.save(tmp_path / "changed")
    assert read_card(tmp_path / "changed").key(tensors_sha256(tmp_path / "changed")) != key
    assert card.key(tensors, in_memory=True) != key  # another kind of digest, another key
    with pytest.raises(ValueError, match="needs their sha256"):
        card.key()


def test_keys_equal_the_ones_the_onnx_cache_used_before(folder: Path, tmp_path: Path) -> None:
    card, tensors = read_card(folder), tensors_sha256(folder)
    assert card.key(tensors) == _old_folder_key(folder, card.preprocess)
    bigger = card.with_input_size(40)
    assert bigger.key(tensors) == _old_folder_key(folder, bigger.preprocess)

    spec = find_spec("mobilenet_v2")
    assert spec is not None and spec.pretrained_sha256 is not None
    for pre in (spec.preprocess, spec.preprocess.with_input_size(160)):
        plain = ModelCard.pretrained_backbone(
            "mobilenet_v2",
            feature_dim=spec.feature_dim,
            weights_sha256=spec.pretrained_sha256,
            preprocess=pre,
        )
        assert plain.key() == _old_pretrained_key("mobilenet_v2", spec.pretrained_sha256, pre)

    model = SiameseModel.load(folder)
    assert export.module_key(model) == _old_module_key(model)

    torch.manual_seed(0)
    referenced = SiameseModel.create("mobilenet_v2", input_size=64, head=True)
    referenced.save(tmp_path / "ref", include_backbone=False)
    ref_card = read_card(tmp_path / "ref")
    assert ref_card.backbone_weights.stored is False
    assert ref_card.key(tensors_sha256(tmp_path / "ref")) == _old_folder_key(
        tmp_path / "ref", ref_card.preprocess
    )


def test_registry_facts_are_the_built_backbones() -> None:
    from lookalike.model.backbones import build_backbone

    for name in ("mobilenet_v2", "efficientnet_lite0"):
        spec = find_spec(name)
        assert spec is not None and spec.pretrained_sha256 is not None
        built = build_backbone(name)
        assert built.weights_sha256 == spec.pretrained_sha256
        assert built.preprocess == spec.preprocess and built.feature_dim == spec.feature_dim
    for name in ("vgg16", "resnet50", "efficientnet_b0", "small_cnn"):  # prefix, none, or none
        spec = find_spec(name)
        assert spec is not None and spec.pretrained_sha256 is None


def test_card_and_specs_import_without_torch() -> None:
    code = (
        "import sys, lookalike.model.card, lookalike.model.backbones.specs\n"
        "import lookalike.model, lookalike.model.backbones\n"
        "assert 'torch' not in sys.modules, 'imported torch'\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
