"""Where two images agree and where they differ: local similarity heatmaps (seed 001).

Seed 001's ``compare_images`` returned a score, a difference measure and a heatmap. Here
:func:`explain` does the same in one call, and says *where* from the backbone itself:

1. Both images are preprocessed the model's way (squashed to its input size, so the whole
   image is covered) and run through the backbone together, giving feature maps
   ``Fa, Fb`` of shape (C, h, w) (7 × 7 for MobileNetV2 at 224 px).
2. At every location the C-vector is L2-normalised, so local similarity is a cosine.
3. ``mode="best_match"`` (the default): for each location of A, the highest cosine with
   *any* location of B, and vice versa. ``mode="aligned"``: the cosine with the same
   location of the other image.
4. The (h, w) similarity map of each image is clipped to [0, 1] and upsampled bilinearly to
   that image's own resolution: 1 means "this part has a counterpart in the other image",
   low means "this part differs".

Why best-match by default: images people compare are rarely pixel-aligned (a crop, a
shift, a different framing, a re-taken photo). Aligned comparison then marks everything
that moved as "different", although the content is all there. Best-match asks the
question the score answers: does this part of A appear somewhere in B? Painted-over,
added or removed content still stands out, because nothing in the other image matches it.
Use ``"aligned"`` for registered images (the same camera and framing), where a part that
moved really is a difference.

The overall ``cosine``/``euclidean``/``probability`` are exactly those of
:func:`lookalike.inference.comparison.compare` (the model's own embeddings).
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from lookalike.imaging.images import ImageSource, image_name, load_image
from lookalike.viz._mpl import pyplot, save

if TYPE_CHECKING:
    from PIL import Image

    from lookalike.model.network import SiameseModel

ExplainMode = Literal["best_match", "aligned"]
MODES: tuple[str, ...] = ("best_match", "aligned")
Box = tuple[int, int, int, int]

_FloatMap = npt.NDArray[np.float32]
_DISPLAY_MAX_SIDE = 900
_EPS = 1e-8


@dataclass(frozen=True)
class Explanation:
    """How similar two images are overall, and where they agree and differ.

    Attributes:
        cosine: Cosine similarity of the two embeddings, in [-1, 1].
        euclidean: Euclidean distance of the two embeddings (in [0, 2] when normalised).
        probability: P(same) from the model's pair head, or ``None`` without a head.
        same: The same/different decision at the model's calibrated threshold, or ``None``
            when the model has none (as in :class:`lookalike.inference.comparison.Comparison`).
        heatmap_a: float32 (H_a, W_a) in [0, 1] at image A's resolution (after EXIF
            orientation): 1 = this part of A agrees with B, 0 = it differs.
        heatmap_b: The same for image B, float32 (H_b, W_b).
        similarity_a: The raw local cosine similarities of A's feature-map locations,
            float32 (h, w) in [-1, 1], before clipping and upsampling.
        similarity_b: The same for B, float32 (h, w).
        mode: ``"best_match"`` or ``"aligned"`` (see the module docstring).
    """

    cosine: float
    euclidean: float
    probability: float | None
    same: bool | None
    heatmap_a: _FloatMap
    heatmap_b: _FloatMap
    similarity_a: _FloatMap
    similarity_b: _FloatMap
    mode: str = "best_match"

    def lowest_region(self, which: Literal["a", "b"] = "b") -> Box | None:
        """The part of one image that agrees least with the other, as a pixel box.

        The feature-map location with the lowest similarity is grown into the connected
        (4-neighbour) group of locations whose similarity lies in the lower half between
        that minimum and the map's median; the box bounds that group, in the image's pixels.

        Args:
            which: ``"a"`` or ``"b"``.

        Returns:
            ``(x0, y0, x1, y1)`` in pixels of that image (x1, y1 exclusive), or ``None``
            when its similarity map is flat (nothing differs more than anything else).
        """
        if which not in ("a", "b"):
            raise ValueError(f"which must be 'a' or 'b', got {which!r}")
        sim = self.similarity_a if which == "a" else self.similarity_b
        heat = self.heatmap_a if which == "a" else self.heatmap_b
        cells = _lowest_cells(sim)
        if cells is None:
            return None
        (r0, c0), (r1, c1) = cells
        h, w = sim.shape
        height, width = heat.shape
        return (
            int(np.floor(c0 * width / w)),
            int(np.floor(r0 * height / h)),
            int(np.ceil((c1 + 1) * width / w)),
            int(np.ceil((r1 + 1) * height / h)),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary (scores, lowest similarities and regions; no arrays)."""
        box = self.lowest_region("b")
        return {
            "cosine": self.cosine,
            "euclidean": self.euclidean,
            "probability": self.probability,
            "same": self.same,
            "mode": self.mode,
            "lowest_similarity_a": float(self.similarity_a.min()),
            "lowest_similarity_b": float(self.similarity_b.min()),
            "lowest_region_a": _box_list(self.lowest_region("a")),
            "lowest_region": _box_list(box),
        }


def explain(
    a: ImageSource,
    b: ImageSource,
    model: SiameseModel | None = None,
    *,
    mode: ExplainMode = "best_match",
    input_size: int | tuple[int, int] | None = None,
) -> Explanation:
    """Compare two images and map where they agree and differ.

    Args:
        a, b: Paths, bytes, PIL images or arrays (see :func:`lookalike.imaging.images.load_image`).
        model: The model; ``None`` builds the default pretrained backbone (slow: pass one
            when explaining many pairs).
        mode: ``"best_match"`` (default: each location against its best match anywhere in
            the other image, so moved content still agrees) or ``"aligned"`` (against the
            same location). See the module docstring for why.
        input_size: Input size in pixels for the heatmaps only (``None``: the model's).
            Larger gives finer maps (MobileNetV2: 224 px → 7 × 7 locations, 448 → 14 × 14);
            the overall scores always use the model's own preprocessing.

    Returns:
        The explanation.

    Raises:
        ImageError: Either image cannot be read.
        ValueError: Unknown ``mode``.
    """
    import torch

    from lookalike.inference.comparison import compare
    from lookalike.model.network import SiameseModel

    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    model = model if model is not None else SiameseModel.create()
    color: Literal["RGB", "L"] = "L" if model.preprocess.channels == 1 else "RGB"
    image_a = load_image(a, mode=color)
    image_b = load_image(b, mode=color)
    # One forward pass gives both the scores (exactly compare()'s) and, through a hook on
    # the backbone, the feature maps of that same pass.
    captured: list[Any] = []
    hook = model.backbone.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        comparison = compare(a, b, model)
    finally:
        hook.remove()
    pre = model.preprocess
    if input_size is not None:
        pre = pre.with_input_size(input_size)
    if pre.resize != "squash":
        pre = replace(pre, resize="squash")  # the maps must cover the whole image
    if pre == model.preprocess and len(captured) == 1 and captured[0].shape[0] == 2:
        maps = captured[0].float()
    else:
        batch = np.stack([pre.image_to_array(image_a), pre.image_to_array(image_b)])
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                maps = model.feature_map(torch.from_numpy(batch).to(model.device)).float()
        finally:
            model.train(was_training)
    sim_a, sim_b = local_similarity(maps[0], maps[1], mode=mode)
    return Explanation(
        cosine=comparison.cosine,
        euclidean=comparison.euclidean,
        probability=comparison.probability,
        same=comparison.same,
        heatmap_a=_upsample(sim_a, (image_a.height, image_a.width)),
        heatmap_b=_upsample(sim_b, (image_b.height, image_b.width)),
        similarity_a=sim_a.cpu().numpy().astype(np.float32),
        similarity_b=sim_b.cpu().numpy().astype(np.float32),
        mode=mode,
    )


def local_similarity(fa: Any, fb: Any, *, mode: ExplainMode = "best_match") -> tuple[Any, Any]:
    """Per-location cosine similarity of two feature maps.

    Args:
        fa, fb: torch tensors (C, h, w), the same shape.
        mode: ``"best_match"``: each location's highest cosine over all locations of the
            other map; ``"aligned"``: the cosine with the same location.

    Returns:
        (sim_a, sim_b), torch tensors (h, w) in [-1, 1]. Two all-zero vectors count as
        identical (1); an all-zero vector against a non-zero one as 0.
    """
    import torch

    if fa.shape != fb.shape or fa.ndim != 3:
        raise ValueError(f"feature maps must both be (C, h, w), got {fa.shape} and {fb.shape}")
    channels, h, w = fa.shape
    va, vb = fa.reshape(channels, -1).double(), fb.reshape(channels, -1).double()
    na, nb = va.norm(dim=0), vb.norm(dim=0)
    ua, ub = va / na.clamp_min(_EPS), vb / nb.clamp_min(_EPS)
    zero_a, zero_b = na <= _EPS, nb <= _EPS
    if mode == "aligned":
        sim = (ua * ub).sum(dim=0)
        sim = torch.where(zero_a & zero_b, torch.ones_like(sim), sim)
        sim = sim.clamp(-1.0, 1.0).float().reshape(h, w)
        return sim, sim.clone()
    if mode != "best_match":
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    matrix = ua.T @ ub  # (h·w of A, h·w of B)
    matrix = torch.where(zero_a[:, None] & zero_b[None, :], torch.ones_like(matrix), matrix)
    matrix = matrix.clamp(-1.0, 1.0).float()
    return matrix.amax(dim=1).reshape(h, w), matrix.amax(dim=0).reshape(h, w)


def _upsample(sim: Any, size: tuple[int, int]) -> _FloatMap:
    """Clip a (h, w) similarity tensor to [0, 1] and resize it bilinearly to (H, W)."""
    import torch.nn.functional as F

    grid = sim.clamp(0.0, 1.0)[None, None].float()
    out = F.interpolate(grid, size=size, mode="bilinear", align_corners=False)[0, 0]
    heat: _FloatMap = out.clamp(0.0, 1.0).cpu().numpy().astype(np.float32)
    return heat


def _lowest_cells(sim: _FloatMap) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """Bounding cells ((row0, col0), (row1, col1)) of the lowest-similarity group, or None."""
    low = float(sim.min())
    median = float(np.median(sim))
    if float(sim.max()) - low < 1e-3:
        return None
    threshold = low + 0.5 * max(median - low, 0.0)
    start = np.unravel_index(int(np.argmin(sim)), sim.shape)
    seen = {(int(start[0]), int(start[1]))}
    queue = deque(seen)
    while queue:
        r, c = queue.popleft()
        for nr, nc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
            inside = 0 <= nr < sim.shape[0] and 0 <= nc < sim.shape[1]
            if inside and (nr, nc) not in seen and sim[nr, nc] <= threshold:
                seen.add((nr, nc))
                queue.append((nr, nc))
    rows = [r for r, _ in seen]
    cols = [c for _, c in seen]
    return (min(rows), min(cols)), (max(rows), max(cols))


def _box_list(box: Box | None) -> list[int] | None:
    return None if box is None else list(box)


def _display(image: Image.Image, heat: _FloatMap) -> tuple[Image.Image, _FloatMap, float]:
    """Shrink an image and its heatmap for display; returns them and the scale applied."""
    from PIL import Image

    scale = min(1.0, _DISPLAY_MAX_SIDE / max(image.size))
    if scale >= 1.0:
        return image, heat, 1.0
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    small_heat = Image.fromarray(heat, mode="F").resize(size, Image.Resampling.BILINEAR)
    return image.resize(size, Image.Resampling.BILINEAR), np.asarray(small_heat), scale


def render_explanation(
    explanation: Explanation,
    image_a: ImageSource,
    image_b: ImageSource,
    out_png: str | os.PathLike[str],
    *,
    alpha: float = 0.5,
    title: str | None = None,
) -> Path:
    """Draw both images side by side with their heatmaps overlaid, and write a PNG.

    Green is agreement, red is difference (colormap ``RdYlGn`` on a fixed 0-1 scale, so an
    identical pair is green everywhere rather than stretched to show noise). The part of
    each image that agrees least is boxed; the overall scores are in the title.

    Args:
        explanation: From :func:`explain` on the same two images.
        image_a, image_b: The images explained (paths, bytes, PIL images or arrays).
        out_png: The PNG to write (parent folders are created).
        alpha: Opacity of the heatmap over the image, in [0, 1].
        title: Figure title; ``None`` builds one from the scores.

    Returns:
        The path written.

    Raises:
        ImageError: An image cannot be read.
        ValueError: The images do not have the explanation's sizes, or ``alpha`` is invalid.
        LookalikeError: matplotlib is missing.
    """
    from matplotlib.patches import Rectangle

    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    plt = pyplot()
    panels = []
    for which, source, heat in (
        ("a", image_a, explanation.heatmap_a),
        ("b", image_b, explanation.heatmap_b),
    ):
        image = load_image(source, mode="RGB")
        if (image.height, image.width) != heat.shape:
            raise ValueError(
                f"image {which.upper()} ({image_name(source)}) is {image.width}x{image.height} "
                f"but the explanation's heatmap is {heat.shape[1]}x{heat.shape[0]}: "
                "render the images that were explained"
            )
        shown, shown_heat, scale = _display(image, heat)
        panels.append((which, source, shown, shown_heat, scale))
    aspects = [p[2].width / p[2].height for p in panels]
    fig_height = 4.2
    fig = plt.figure(figsize=(fig_height * sum(aspects) + 1.4, fig_height + 0.9), dpi=110)
    grid = fig.add_gridspec(1, 3, width_ratios=[*aspects, 0.05], wspace=0.05)
    mappable = None
    for k, (which, source, shown, shown_heat, scale) in enumerate(panels):
        ax = fig.add_subplot(grid[0, k])
        ax.imshow(np.asarray(shown))
        mappable = ax.imshow(shown_heat, cmap="RdYlGn", vmin=0.0, vmax=1.0, alpha=alpha)
        box = explanation.lowest_region(which)  # type: ignore[arg-type]
        low = float((explanation.similarity_a if which == "a" else explanation.similarity_b).min())
        if box is not None:
            x0, y0, x1, y1 = (v * scale for v in box)
            ax.add_patch(
                Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="black", lw=1.5)
            )
        name = Path(image_name(source)).name
        ax.set_title(f"{which.upper()}: {name}\nlowest local similarity {low:.2f}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    colorbar = fig.colorbar(mappable, cax=fig.add_subplot(grid[0, 2]))
    if colorbar.solids is not None:
        colorbar.solids.set_alpha(1.0)  # the scale itself, not the blend
    colorbar.set_label("local similarity (1 agrees, 0 differs)", fontsize=8)
    if title is None:
        prob = (
            "" if explanation.probability is None else f"   P(same) {explanation.probability:.3f}"
        )
        title = (
            f"cosine similarity {explanation.cosine:.3f}   euclidean distance "
            f"{explanation.euclidean:.3f}{prob}   ({explanation.mode.replace('_', '-')})"
        )
    fig.suptitle(title, fontsize=10)
    return save(fig, out_png, tight=True)
