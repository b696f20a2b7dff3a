"""Augment settings and augment_batch."""

from __future__ import annotations

import pytest
import torch

from lookalike.data import Augment, augment_batch


def _pixels(channels: int = 3) -> torch.Tensor:
    gen = torch.Generator().manual_seed(123)
    return torch.randint(0, 256, (4, channels, 16, 12), generator=gen, dtype=torch.uint8)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_shape_range_and_determinism() -> None:
    x = _pixels()
    out = augment_batch(x, Augment(), _gen(0))
    assert out.shape == x.shape and out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert torch.equal(out, augment_batch(x, Augment(), _gen(0)))
    assert not torch.allclose(out, augment_batch(x, Augment(), _gen(1)))
    assert not torch.allclose(out, x.float() / 255)


def test_grayscale_batches_work() -> None:
    x = _pixels(channels=1)
    out = augment_batch(x, Augment(saturation=0.5), _gen(0))
    assert out.shape == x.shape
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_off_is_just_scaling() -> None:
    x = _pixels()
    assert torch.equal(augment_batch(x, Augment.off(), _gen(0)), x.float() / 255)


def test_flip_alone_mirrors_or_keeps_each_image() -> None:
    x = _pixels()
    aug = Augment(
        crop_scale=(1.0, 1.0), crop_ratio=(0.75, 0.75), brightness=0, contrast=0, saturation=0
    )
    out = augment_batch(x, aug, _gen(3))
    ref = x.float() / 255
    for k in range(len(x)):
        same = torch.allclose(out[k], ref[k], atol=1e-5)
        mirrored = torch.allclose(out[k], ref[k].flip(-1), atol=1e-5)
        assert same or mirrored


def test_settings_round_trip_and_validation() -> None:
    aug = Augment(crop_scale=(0.5, 0.9), flip=False, brightness=0.1)
    assert Augment.from_dict(aug.to_dict()) == aug
    assert Augment.from_dict({}) == Augment()
    assert Augment.off().enabled is False
    with pytest.raises(ValueError, match="crop_scale"):
        Augment(crop_scale=(0.0, 1.0))
    with pytest.raises(ValueError, match="unknown"):
        Augment.from_dict({"shear": 10})
    assert Augment.from_dict({"rotate": 10}).rotate == 10
    with pytest.raises(ValueError, match="rotate"):
        Augment(rotate=200)
    assert Augment.for_channels(1).flip is False and Augment.for_channels(3).flip is True
    with pytest.raises(ValueError, match="uint8"):
        augment_batch(torch.zeros((1, 3, 4, 4)), Augment(), _gen(0))
