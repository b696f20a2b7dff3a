from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from lookalike.metrics.distances import cosine_similarity_matrix
from lookalike.model import weights as W
from lookalike.model.backbones import get_spec
from lookalike.model.network import SiameseModel

CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967


def _jpeg_copy(image: np.ndarray, scale: float, quality: int) -> np.ndarray:
    pil = Image.fromarray(image)
    pil = pil.resize((int(pil.width * scale), int(pil.height * scale)), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    pil.save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def test_image_against_itself(default_model: SiameseModel, photos: dict[str, np.ndarray]) -> None:
    emb = default_model.embed([photos["chelsea"], photos["chelsea"]])
    assert emb.dtype == np.float32 and emb.shape == (2, 1280)
    assert float(emb[0] @ emb[1]) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_recompressed_copy_beats_every_other_photo(
    default_model: SiameseModel, photos: dict[str, np.ndarray]
) -> None:
    names = list(photos)
    originals = default_model.embed([photos[n] for n in names])
    copies = default_model.embed([_jpeg_copy(photos[n], 0.6, 40) for n in names])
    sims = cosine_similarity_matrix(copies, originals)
    for i, name in enumerate(names):
        others = np.delete(sims[i], i)
        assert sims[i, i] > others.max(), f"{name}: own copy {sims[i, i]:.3f} vs {others.max():.3f}"


def _classify(model: SiameseModel, image: np.ndarray, weights: dict[str, torch.Tensor]) -> int:
    pooled = model.embed([image])  # normalize=False: the pooled 1280-d ImageNet features
    logits = pooled @ weights["weight"].numpy().T + weights["bias"].numpy()
    return int(np.argmax(logits))


def test_default_weights_are_really_imagenet(photos: dict[str, np.ndarray]) -> None:
    model = SiameseModel.create("mobilenet_v2", normalize=False)
    state = W.load_state_dict(W.resolve(get_spec("mobilenet_v2").weights))  # type: ignore[arg-type]
    head = {"weight": state["classifier.1.weight"], "bias": state["classifier.1.bias"]}
    assert _classify(model, photos["chelsea"], head) in CAT_CLASSES  # type: ignore[arg-type]
    assert _classify(model, photos["coffee"], head) == ESPRESSO  # type: ignore[arg-type]


def test_efficientnet_lite0_weights_map_correctly(photos: dict[str, np.ndarray]) -> None:
    model = SiameseModel.create("efficientnet_lite0", normalize=False)
    state = W.load_state_dict(W.resolve(get_spec("efficientnet_lite0").weights))  # type: ignore[arg-type]
    head = {"weight": state["_fc.weight"], "bias": state["_fc.bias"]}
    assert _classify(model, photos["chelsea"], head) in CAT_CLASSES  # type: ignore[arg-type]
    assert _classify(model, photos["coffee"], head) == ESPRESSO  # type: ignore[arg-type]


def test_embed_is_deterministic_and_input_kinds_agree(
    default_model: SiameseModel, sample_dir: object
) -> None:
    from lookalike.samples import sample_paths

    path = sample_paths()["coffee"]
    pil = Image.open(path)
    a = default_model.embed([path, str(path), path.read_bytes(), pil, np.asarray(pil)])
    np.testing.assert_allclose(a, np.repeat(a[:1], 5, axis=0), atol=1e-6)
    b = default_model.embed([path] * 3, batch_size=2)
    np.testing.assert_allclose(a[:3], b, atol=1e-5)


@pytest.mark.parametrize("pooling", ["avg", "gem", "max", "flatten"])
def test_pooling_and_projection_shapes(pooling: str) -> None:
    model = SiameseModel.create(
        "small_cnn",
        input_size=16,
        pooling=pooling,
        projection=(128, 128) if pooling != "avg" else (),
    )
    x = torch.randn(3, 1, 16, 16)
    expected = 128
    assert model(x).shape == (3, expected)
    assert model.embedding_dim == expected


def test_seed001_vgg16_flatten_projection_shape() -> None:
    model = SiameseModel.create(
        "vgg16", pretrained=False, input_size=64, pooling="flatten", projection=(128, 128)
    )
    assert model.embedding_dim == 128
    assert model.projection is not None and len(model.projection) == 3  # Dense, ReLU, Dense


def test_normalization_off_keeps_magnitudes() -> None:
    model = SiameseModel.create("small_cnn", normalize=False)
    out = model(torch.randn(4, 1, 28, 28))
    assert not torch.allclose(out.norm(dim=1), torch.ones(4))


def test_pair_head_is_seed000s_architecture() -> None:
    model = SiameseModel.create("small_cnn", head=True)
    assert model.head is not None
    layers = [type(m).__name__ for m in model.head.layers]
    assert layers == ["Linear", "ReLU", "Dropout", "Linear", "ReLU", "Linear"]
    assert [m.out_features for m in model.head.layers if isinstance(m, torch.nn.Linear)] == [
        256,
        64,
        1,
    ]
    emb = model.embed(np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32))
    prob = model.pair_probability(emb[:2], emb[2:])
    assert prob is not None and prob.shape == (2,) and ((prob > 0) & (prob < 1)).all()


def test_invalid_options_raise_value_errors() -> None:
    with pytest.raises(ValueError, match="pooling"):
        SiameseModel.create("small_cnn", pooling="median")
    with pytest.raises(ValueError, match="projection"):
        SiameseModel.create("small_cnn", projection=(0,))
    with pytest.raises(ValueError, match="batch_size"):
        SiameseModel.create("small_cnn").embed([np.zeros((8, 8))], batch_size=0)
