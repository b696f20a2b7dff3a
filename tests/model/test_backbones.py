from __future__ import annotations

import pytest
import torch

from lookalike.errors import BackboneError, WeightsError
from lookalike.model.backbones import build_backbone, get_spec, list_backbones
from lookalike.model.network import SiameseModel

NAMES = [spec.name for spec in list_backbones()] + ["timm:resnet10t"]


def test_registry_has_the_documented_backbones() -> None:
    names = {spec.name for spec in list_backbones()}
    assert {
        "mobilenet_v2",
        "efficientnet_lite0",
        "vgg16",
        "efficientnet_b0",
        "resnet50",
        "small_cnn",
    } <= names


@pytest.mark.parametrize("name", NAMES)
def test_forward_backward_every_backbone(name: str) -> None:
    spec = get_spec(name)
    size = 32
    model = SiameseModel.create(name, pretrained=False, input_size=size, projection=(16,))
    model.train()
    x = torch.randn(2, spec.preprocess.channels, size, size)
    features = model.feature_map(x)
    assert features.shape[1] == spec.feature_dim == model.feature_dim
    emb = model(x)
    assert emb.shape == (2, 16)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(2))
    (emb[:, 0] * 3 + emb[:, 1]).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []


def test_one_channel_input_on_pretrained_backbone() -> None:
    model = SiameseModel.create("mobilenet_v2", channels=1, input_size=64)
    assert model.preprocess.channels == 1 and len(model.preprocess.mean) == 1
    out = model.embed([torch.rand(64, 64).numpy()])
    assert out.shape == (1, 1280)


def test_custom_input_size_changes_preprocessing() -> None:
    model = SiameseModel.create("mobilenet_v2", input_size=(96, 128))
    assert model.preprocess.input_size == (96, 128)
    assert model.feature_map(torch.zeros(1, 3, 96, 128)).shape == (1, 1280, 3, 4)


def test_online_only_weights_fail_clearly_offline() -> None:
    with pytest.raises(WeightsError, match="offline mode is on"):
        build_backbone("vgg16")
    with pytest.raises(WeightsError, match="offline mode"):
        build_backbone("efficientnet_b0")
    with pytest.raises(WeightsError, match="no pretrained weights"):
        build_backbone("small_cnn", pretrained=True)


def test_unknown_backbone_lists_valid_names() -> None:
    with pytest.raises(BackboneError, match="mobilenet_v2"):
        get_spec("mobilenet_v9")
    with pytest.raises(BackboneError, match="timm has no model"):
        build_backbone("timm:definitely_not_a_model", pretrained=False)


def test_offline_weights_are_found() -> None:
    assert get_spec("mobilenet_v2").weights_offline()
    assert get_spec("efficientnet_lite0").weights_offline()
    assert not get_spec("resnet50").weights_offline()
