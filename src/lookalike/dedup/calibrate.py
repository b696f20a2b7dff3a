"""Choosing a de-duplication threshold: the default, a model's own, and calibrating one.

:data:`DEFAULT_DEDUP_THRESHOLD` is the cosine threshold measured for the default model.
:func:`dedup_threshold` is the policy ``lookalike dedup`` follows: a threshold given, else the
one stored with the model (``thresholds["dedup"]`` in its folder), else the default — with a
warning when the model is not the default one. :func:`calibrate_dedup_threshold` chooses a
model's own: it scores edit-versus-original pairs (positives, from
:func:`lookalike.dedup.edits.near_duplicate`) against pairs of images from different photos
(negatives) and picks the cosine threshold; ``lookalike calibrate-dedup`` stores it with the
model. :func:`offline_photos` are distinct photos that ship offline, to calibrate on.

A threshold chosen on distinct photos is optimistic about negatives: two different shots of
the same scene (a burst, a re-take) score higher than two unrelated photos. Use
``target_recall`` to put the threshold as high as the edits allow, or calibrate on photos like
the ones you will de-duplicate.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from lookalike._progress import bar, embed_chunks
from lookalike.dedup.edits import EDIT_KINDS, near_duplicate
from lookalike.errors import DataError, ImageError, LookalikeError
from lookalike.imaging.images import ImageSource, load_image
from lookalike.inference.embedder import Embedder
from lookalike.metrics.calibration import best_accuracy_threshold
from lookalike.metrics.distances import unit_rows
from lookalike.model.backbones.specs import find_spec

__all__ = [
    "DEFAULT_DEDUP_THRESHOLD",
    "DEFAULT_MODEL",
    "OFFLINE_PHOTOS",
    "DedupCalibration",
    "calibrate_dedup_threshold",
    "dedup_threshold",
    "folder_photos",
    "offline_photos",
    "pair_metrics",
]


def _measured(backbone: str) -> float:
    """The near-duplicate threshold the backbone registry records (its one owner)."""
    spec = find_spec(backbone)
    if spec is None or spec.near_duplicate_cosine is None:
        raise RuntimeError(f"no measured near-duplicate threshold for {backbone}")
    return spec.near_duplicate_cosine


DEFAULT_DEDUP_THRESHOLD: float = _measured("mobilenet_v2")
"""Cosine threshold for the default model (MobileNetV2, ImageNet weights, average pooling).

Measured with :func:`calibrate_dedup_threshold` on 21 distinct offline photos (19
scikit-image samples, scikit-learn's two) with 8 random near duplicates each (crops to 80–95%
of the area, resizing to 0.3–0.8×, JPEG quality 30–90, brightness, contrast and saturation
changes, ±5° rotations, captions and logos; one to three combined), for two seeds: 168
edit-versus-original pairs and 17,010 different-photo pairs each. The best-accuracy
threshold was 0.724 and 0.742; edits scored at least 0.79 and 0.71 (the lowest
were a small grayscale photo under a logo), different photos at most 0.66 and 0.72. At 0.75
precision was 1.000 for both seeds and recall 1.000 and 0.994. 0.75 leans towards the edits
because different shots of one scene (absent from those photos) score higher than unrelated
photos. Other models need their own threshold.
"""

DEFAULT_MODEL = "mobilenet_v2"
"""The model :data:`DEFAULT_DEDUP_THRESHOLD` was measured for (the default pretrained one)."""


def dedup_threshold(embedder: Embedder, given: float | None = None) -> tuple[float, str]:
    """The near-duplicate threshold to use with a model, and where it comes from.

    Given, else the one stored with the model (``embedder.thresholds["dedup"]``, written by
    ``lookalike calibrate-dedup``), else :data:`DEFAULT_DEDUP_THRESHOLD`.

    Args:
        embedder: The model.
        given: A threshold chosen by the caller (``None``: none).

    Returns:
        ``(threshold, how)``, ``how`` being ``"given"``, ``"stored with the model"`` or
        ``"default (calibrated for mobilenet_v2)"``.

    Warns:
        UserWarning: The default is used for a model other than :data:`DEFAULT_MODEL` (an
            engine's ``name``), for which it was not measured.
    """
    if given is not None:
        return given, "given"
    stored = embedder.thresholds.get("dedup")
    if stored is not None:
        return float(stored), "stored with the model"
    name = getattr(embedder, "name", type(embedder).__name__)
    if name != DEFAULT_MODEL:
        warnings.warn(
            f"{name} has no calibrated dedup threshold; using the default model's "
            f"{DEFAULT_DEDUP_THRESHOLD} (calibrate one with `lookalike calibrate-dedup --model "
            "DIR`, or give a threshold: --threshold)",
            UserWarning,
            stacklevel=2,
        )
    return DEFAULT_DEDUP_THRESHOLD, f"default (calibrated for {DEFAULT_MODEL})"


@dataclass(frozen=True)
class DedupCalibration:
    """A de-duplication threshold and how well it separates the pairs it was chosen on.

    Attributes:
        threshold: Cosine similarity at or above which two images are near duplicates.
        precision: Of the pairs called duplicates, the fraction that are.
        recall: Of the edit-versus-original pairs, the fraction called duplicates.
        f1: Harmonic mean of precision and recall.
        positive_scores: Cosine of each edit to its original (P,).
        negative_scores: Cosine of each pair from different photos (M,).
        edits: Description of each positive's edits (P).
    """

    threshold: float
    precision: float
    recall: float
    f1: float
    positive_scores: npt.NDArray[np.float64]
    negative_scores: npt.NDArray[np.float64]
    edits: tuple[str, ...]

    def summary(self) -> str:
        """One line: the threshold, its precision and recall, and the score ranges."""
        return (
            f"threshold {self.threshold:.4f}: precision {self.precision:.4f}, recall "
            f"{self.recall:.4f} on {len(self.positive_scores)} edits and "
            f"{len(self.negative_scores)} different-photo pairs (positives "
            f"{self.positive_scores.min():.3f}–{self.positive_scores.max():.3f}, negatives up "
            f"to {self.negative_scores.max():.3f})"
        )


def pair_metrics(
    positive_scores: npt.ArrayLike, negative_scores: npt.ArrayLike, threshold: float
) -> tuple[float, float, float]:
    """Precision, recall and F1 of calling pairs with score ≥ ``threshold`` duplicates.

    Args:
        positive_scores: Scores of true duplicate pairs (P,).
        negative_scores: Scores of distinct pairs (M,).
        threshold: The cosine threshold.

    Returns:
        ``(precision, recall, f1)``; precision is 1 when nothing is called a duplicate.
    """
    pos = np.asarray(positive_scores, dtype=np.float64)
    neg = np.asarray(negative_scores, dtype=np.float64)
    tp = int(np.count_nonzero(pos >= threshold))
    fp = int(np.count_nonzero(neg >= threshold))
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / len(pos) if len(pos) else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def calibrate_dedup_threshold(
    embedder: Embedder,
    photos: Sequence[ImageSource],
    *,
    edits_per_photo: int = 4,
    seed: int = 0,
    kinds: Sequence[str] = EDIT_KINDS,
    max_edits: int = 3,
    target_recall: float | None = None,
    batch_size: int = 32,
    progress: bool = False,
) -> DedupCalibration:
    """Choose a cosine threshold for near duplicates from edited copies of distinct photos.

    Each photo gets ``edits_per_photo`` near duplicates. Positives are (original, edit) pairs;
    negatives are all pairs of images (originals or edits) from different photos. The threshold
    maximises accuracy on these pairs (``calibration.best_accuracy_threshold``,
    midway between neighbouring scores), or, with ``target_recall``, is the highest one that
    still finds that fraction of the edits.

    Args:
        embedder: The model (any :class:`~lookalike.inference.embedder.Embedder`; only its
            ``embed`` is used).
        photos: Distinct photos, at least two.
        edits_per_photo: Near duplicates made of each photo.
        seed: Seed of the edits.
        kinds: Edit kinds (see :func:`apply_edit`).
        max_edits: Most edits combined in one copy.
        target_recall: If given, in (0, 1]: choose for this recall instead of accuracy.
        batch_size: Images per forward pass.
        progress: Bars for making the edited copies and for embedding (on a terminal only).

    Returns:
        The threshold with its precision and recall on these pairs, and the scores.

    Raises:
        ValueError: If there are fewer than two photos, ``edits_per_photo < 1``, or
            ``target_recall`` is out of range.
    """
    if len(photos) < 2 or edits_per_photo < 1:
        raise ValueError("need at least two photos and edits_per_photo ≥ 1")
    if target_recall is not None and not 0.0 < target_recall <= 1.0:
        raise ValueError(f"target_recall must be in (0, 1], not {target_recall}")
    rng = np.random.default_rng(seed)
    images: list[Image.Image] = []
    owner: list[int] = []
    is_edit: list[bool] = []
    edits: list[str] = []
    making = bar(photos, desc="calibrate-dedup: editing", unit="photo", progress=progress)
    for p, photo in enumerate(making):
        original = load_image(photo)
        images.append(original)
        owner.append(p)
        is_edit.append(False)
        for _ in range(edits_per_photo):
            copy = near_duplicate(original, rng, kinds=kinds, max_edits=max_edits)
            images.append(copy.image)
            owner.append(p)
            is_edit.append(True)
            edits.append(copy.description)
    emb = embed_chunks(
        embedder,
        images,
        batch_size=batch_size,
        desc="calibrate-dedup: embedding",
        progress=progress,
    )
    emb = unit_rows(emb.astype(np.float32, copy=False))
    who, edited = np.asarray(owner), np.asarray(is_edit)
    originals = {p: i for i, p in enumerate(owner) if not is_edit[i]}
    edit_rows = np.flatnonzero(edited)
    pos = np.einsum("ij,ij->i", emb[edit_rows], emb[[originals[p] for p in who[edit_rows]]])
    a, b = np.triu_indices(len(images), k=1)
    different = who[a] != who[b]
    neg = np.einsum("ij,ij->i", emb[a[different]], emb[b[different]])
    pos, neg = pos.astype(np.float64), neg.astype(np.float64)
    if target_recall is None:
        labels = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
        value = best_accuracy_threshold(np.concatenate([pos, neg]), labels).value
    else:
        ranked = np.sort(pos)[::-1]
        keep = max(1, math.ceil(target_recall * len(pos) - 1e-9))
        value = float(np.nextafter(ranked[keep - 1], -np.inf))
    precision, recall, f1 = pair_metrics(pos, neg, value)
    return DedupCalibration(float(value), precision, recall, f1, pos, neg, tuple(edits))


OFFLINE_PHOTOS: tuple[str, ...] = (
    "chelsea", "coffee", "astronaut", "rocket", "camera", "coins", "hubble_deep_field",
    "immunohistochemistry", "moon", "page", "text", "clock", "brick", "grass", "gravel",
    "retina", "colorwheel", "cell", "horse",
)  # fmt: skip
"""scikit-image sample images that ship in its wheel (no download)."""


def folder_photos(
    folder: str | os.PathLike[str],
    *,
    limit: int = 200,
    seed: int = 0,
    longest_side: int = 1024,
    on_error: Callable[[str, str], None] | None = None,
) -> list[np.ndarray]:
    """The user's own photos to calibrate on: up to ``limit`` readable images of a folder.

    The photos should be *distinct* (no near duplicates among them): every pair of them is
    taken as a different-photo pair.

    Args:
        folder: Searched recursively.
        limit: At most this many, sampled reproducibly (by ``seed``) when there are more.
        seed: Seed of the sample.
        longest_side: Larger photos are shrunk to this many pixels on their longest side
            (bounds memory; the edits and the model work at far smaller sizes).
        on_error: Called with (path, reason) for each unreadable file, which is skipped.

    Returns:
        RGB uint8 arrays (H, W, 3), in path order.

    Raises:
        DataError: Not a folder, or fewer than two readable images.
    """
    from lookalike.imaging.files import iter_image_files

    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{root} is not a folder of photos")
    paths = sorted(str(p) for p in iter_image_files(root))
    if len(paths) > limit:
        chosen = np.random.default_rng(seed).choice(len(paths), size=limit, replace=False)
        paths = [paths[i] for i in sorted(chosen.tolist())]
    photos = []
    for path in paths:
        try:
            image = load_image(path, draft_size=(longest_side, longest_side))
        except (ImageError, OSError) as exc:
            if on_error is not None:
                on_error(path, str(exc))
            continue
        image.thumbnail((longest_side, longest_side))
        photos.append(np.asarray(image.convert("RGB")))
    if len(photos) < 2:
        raise DataError(f"{root} holds {len(photos)} readable image(s); calibrating needs two")
    return photos


def offline_photos() -> list[np.ndarray]:
    """Distinct photos that ship offline: scikit-image's samples and scikit-learn's two.

    Returns:
        21 RGB uint8 arrays (H, W, 3), in a fixed order.

    Raises:
        LookalikeError: scikit-image or scikit-learn is not installed.
    """
    try:
        from skimage import data
        from sklearn.datasets import load_sample_images
    except ImportError as exc:
        raise LookalikeError(
            "the calibration photos need scikit-image and scikit-learn: pip install lookalike[all]"
        ) from exc

    def rgb(image: np.ndarray) -> np.ndarray:
        image = np.asarray(image)
        if image.dtype == bool:
            image = image.astype(np.uint8) * 255
        return np.stack([image] * 3, -1) if image.ndim == 2 else image[..., :3]

    photos = [rgb(getattr(data, name)()) for name in OFFLINE_PHOTOS]
    return photos + [rgb(x) for x in load_sample_images().images]
