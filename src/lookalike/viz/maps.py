"""Maps of a collection: every image placed by its embedding, projected to 2-D.

:func:`map_folder` embeds the images of a folder (labelled by identity when the folder is
laid out as ``root/<identity>/<image>``), projects the embeddings to 2-D with PCA, t-SNE or
UMAP (:func:`project_2d`) and draws either the images themselves as thumbnails (framed in
their identity's colour) or coloured, labelled points. :func:`map_vectors` does the same for
embeddings that are already computed (an index), and :func:`plot_embedding_map` for
embeddings with integer identity labels (an evaluation, the demo).

This is the one map renderer: every map, whatever asked for it, is drawn by
:func:`plot_thumbnail_map` or :func:`plot_point_map`.

Thumbnails are pasted onto one PIL canvas, which matplotlib then frames with a title and a
legend: a few milliseconds per thousand images, where one matplotlib ``AnnotationBbox``
per image takes seconds.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps

from lookalike.errors import DataError, ImageError, LookalikeError
from lookalike.imaging.files import iter_image_files
from lookalike.imaging.images import load_image
from lookalike.inference.uris import is_uri, read_bytes
from lookalike.viz._mpl import pyplot, save

if TYPE_CHECKING:
    from lookalike.inference.embedder import Embedder
    from lookalike.model.network import SiameseModel

Method = Literal["pca", "tsne", "umap"]
Style = Literal["thumbnails", "points"]
STYLES: tuple[str, ...] = ("thumbnails", "points")

_BACKGROUND = (255, 255, 255)
_NO_LABEL_COLOR = (90, 90, 90)
_MAX_CANVAS_SIDE = 2400
_MIN_CANVAS_SIDE = 700
_MAX_NAMED_POINTS = 60


@dataclass
class EmbeddingMap:
    """A map that was drawn.

    Attributes:
        path: The PNG written.
        paths: The N images on the map, in the order of ``xy``.
        xy: float64 (N, 2) positions from the projection.
        labels: The identity of each image (N,), or ``None`` when the images are unlabelled.
        method: The projection used (``"pca"``, ``"tsne"`` or ``"umap"``).
        style: ``"thumbnails"`` or ``"points"``.
        skipped: {path: reason} for images that could not be read (left off the map).
    """

    path: Path
    paths: list[str]
    xy: npt.NDArray[np.float64]
    labels: list[str] | None
    method: str
    style: str
    skipped: dict[str, str] = field(default_factory=dict)


def folder_images(root: str | os.PathLike[str]) -> tuple[list[str], list[str] | None]:
    """List a folder's images and, for an identity folder, their identities.

    A folder is an identity folder when every image lies inside a sub-folder
    (``root/<identity>/...``); the identity is that sub-folder's name. A folder with
    images directly in it is unlabelled.

    Returns:
        (paths, identities per path or ``None``).

    Raises:
        DataError: The folder is missing or holds no images.
    """
    base = Path(root)
    paths = list(iter_image_files(base))
    if not paths:
        raise DataError(f"no images found in {base}")
    return [str(p) for p in paths], identity_labels([p.relative_to(base) for p in paths])


def identity_labels(relative_paths: Sequence[str | os.PathLike[str]]) -> list[str] | None:
    """The identity of each path relative to a root: its first folder, when all have one.

    Returns:
        One identity per path, or ``None`` when some path lies directly in the root.
    """
    parts = [Path(p).parts for p in relative_paths]
    return [part[0] for part in parts] if all(len(part) > 1 for part in parts) else None


def embed_with_thumbnails(
    model: Embedder,
    paths: Sequence[str],
    *,
    thumb_px: int = 64,
    batch_size: int = 32,
    progress: bool = False,
) -> tuple[list[str], npt.NDArray[np.float32], list[Image.Image], dict[str, str]]:
    """Embed images and keep a thumbnail of each, decoding every file once.

    The files go through :func:`lookalike.inference.pipeline.embed_files` (decoding in
    threads while the model computes); each decoded image also gives its thumbnail.

    Args:
        model: Any :class:`~lookalike.inference.embedder.Embedder`.
        paths: Image files.
        thumb_px: Longest side of the thumbnails in pixels.
        batch_size: Images per forward pass.
        progress: Show a progress bar (on a terminal).

    Returns:
        (paths read, embeddings float32 (N, D), thumbnails (N,), {path: reason} skipped).
    """
    from lookalike.inference.pipeline import embed_files

    pre = model.preprocess
    mode: Literal["RGB", "L"] = "L" if pre.channels == 1 else "RGB"
    height, width = pre.input_size
    thumbs: dict[str, Image.Image] = {}

    def load(path: str) -> npt.NDArray[np.float32]:
        image = load_image(path, mode=mode, draft_size=(width, height))
        thumbs[path] = _thumbnail(image, thumb_px)
        return pre.image_to_array(image)

    embedded = embed_files(model, paths, batch_size=batch_size, progress=progress, load=load)
    vectors = embedded.embeddings.astype(np.float32, copy=False)
    good = embedded.paths
    return good, vectors, [thumbs[p] for p in good], dict(embedded.failures)


def map_folder(
    root: str | os.PathLike[str],
    out_png: str | os.PathLike[str],
    model: SiameseModel | None = None,
    *,
    method: Method = "pca",
    style: Style = "thumbnails",
    thumb_px: int = 64,
    batch_size: int = 32,
    progress: bool = False,
    seed: int = 0,
) -> EmbeddingMap:
    """Embed a folder's images and draw their map.

    Args:
        root: A folder of images; an identity folder (``root/<identity>/<image>``) gives
            each image its identity's colour and a legend.
        out_png: The PNG to write.
        model: The model; ``None`` builds the default pretrained backbone.
        method: ``"pca"`` (default, fast, deterministic), ``"tsne"`` or ``"umap"``.
        style: ``"thumbnails"`` (the images themselves) or ``"points"`` (labelled dots).
        thumb_px: Longest side of each thumbnail on the map, in pixels.
        batch_size: Images per forward pass.
        progress: Show a progress bar while embedding.
        seed: Random seed of t-SNE / UMAP.

    Returns:
        What was drawn, with the unreadable images in ``skipped``.

    Raises:
        DataError: The folder is missing or holds no images.
        LookalikeError: Fewer than 2 (3 for t-SNE) readable images, or a missing package.
    """
    from lookalike.model.network import SiameseModel

    _check(method, style, thumb_px)
    paths, identities = folder_images(root)
    model = model if model is not None else SiameseModel.create()
    good, vectors, thumbs, skipped = embed_with_thumbnails(
        model, paths, thumb_px=thumb_px, batch_size=batch_size, progress=progress
    )
    labels = None
    if identities is not None:
        by_path = dict(zip(paths, identities, strict=True))
        labels = [by_path[p] for p in good]
    title = f"Embedding map of {Path(root).name or root}"
    return _draw(good, vectors, thumbs, labels, skipped, out_png, method, style, seed, title)


def map_vectors(
    vectors: npt.ArrayLike,
    paths: Sequence[str],
    out_png: str | os.PathLike[str],
    *,
    labels: Sequence[str | None] | None = None,
    method: Method = "pca",
    style: Style = "thumbnails",
    thumb_px: int = 64,
    seed: int = 0,
    title: str = "Embedding map",
) -> EmbeddingMap:
    """Draw the map of embeddings that are already computed (for example an index's).

    Args:
        vectors: float (N, D) embeddings, row i belonging to ``paths[i]``.
        paths: The image of each row, a path or an fsspec URI (an index with a URI root);
            read only for thumbnails.
        out_png: The PNG to write.
        labels: Identity of each row (``None`` entries allowed), or ``None``.
        method, style, thumb_px, seed: As for :func:`map_folder`.
        title: Figure title (the method is appended).

    Returns:
        What was drawn. With thumbnails, rows whose image cannot be read are left off
        and listed in ``skipped``.
    """
    _check(method, style, thumb_px)
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim != 2 or len(matrix) != len(paths):
        raise ValueError(f"vectors must be (N, D) with N = {len(paths)}, got {matrix.shape}")
    if labels is not None and len(labels) != len(paths):
        raise ValueError(f"labels has {len(labels)} entries for {len(paths)} paths")
    keep: list[int] = []
    thumbs: list[Image.Image] = []
    skipped: dict[str, str] = {}
    for i, path in enumerate(paths):
        if style == "thumbnails":
            try:
                source = read_bytes(path) if is_uri(path) else path
                thumbs.append(
                    _thumbnail(load_image(source, draft_size=(thumb_px, thumb_px)), thumb_px)
                )
            except ImageError as exc:
                skipped[str(path)] = str(exc)
                continue
        keep.append(i)
    kept_labels = None
    if labels is not None and any(label is not None for label in labels):
        kept_labels = ["(none)" if labels[i] is None else str(labels[i]) for i in keep]
    return _draw(
        [str(paths[i]) for i in keep],
        matrix[keep],
        thumbs,
        kept_labels,
        skipped,
        out_png,
        method,
        style,
        seed,
        title,
    )


def plot_embedding_map(
    embeddings: npt.ArrayLike,
    labels: npt.ArrayLike,
    classes: Sequence[str],
    path: str | os.PathLike[str],
    *,
    method: Method = "pca",
    title: str = "Embedding map",
    seed: int = 0,
) -> Path:
    """Draw the point map of embeddings whose identities are integer labels.

    The map of an evaluation or of the demo: each row's identity is an index into
    ``classes``; the points are coloured by identity, with a legend (up to 20).

    Args:
        embeddings: float (N, D) embeddings.
        labels: int (N,) identity of each row, an index into ``classes``.
        classes: Identity names.
        path: The PNG to write.
        method, seed: As for :func:`map_folder`.
        title: Figure title (the method is appended).

    Returns:
        The path written.

    Raises:
        LookalikeError: Fewer than 2 (3 for t-SNE) embeddings, or a missing package.
    """
    names = [str(classes[int(k)]) for k in np.asarray(labels).reshape(-1)]
    # The rows have no image files; a point map reads ``paths`` only to annotate
    # unlabelled points, so the identity names stand in for them.
    drawn = map_vectors(
        embeddings, names, path, labels=names, method=method, style="points", seed=seed,
        title=title,
    )  # fmt: skip
    return drawn.path


def project_2d(embeddings: npt.ArrayLike, method: Method = "pca", *, seed: int = 0) -> np.ndarray:
    """Project embeddings (N, D) to (N, 2) with PCA (default), t-SNE or UMAP.

    Args:
        embeddings: float (N, D) embeddings.
        method: ``"pca"`` (deterministic), ``"tsne"`` or ``"umap"``.
        seed: Random seed of t-SNE / UMAP.

    Returns:
        float64 (N, 2) positions.

    Raises:
        LookalikeError: The method's package is missing, or fewer than 2 points.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    if len(x) < 2:
        raise LookalikeError("an embedding map needs at least 2 images")
    if method == "pca":
        centred = x - x.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        out = centred @ vt[:2].T
        return np.pad(out, ((0, 0), (0, 2 - out.shape[1]))) if out.shape[1] < 2 else out
    if method == "tsne":
        try:
            from sklearn.manifold import TSNE
        except ImportError as exc:
            raise LookalikeError("t-SNE needs scikit-learn: pip install lookalike[plots]") from exc
        perplexity = float(min(30, max(2, len(x) // 4)))
        return np.asarray(
            TSNE(2, perplexity=perplexity, random_state=seed, init="pca").fit_transform(x)
        )
    if method == "umap":
        try:
            import umap
        except ImportError as exc:
            raise LookalikeError("UMAP needs umap-learn: pip install umap-learn") from exc
        return np.asarray(umap.UMAP(random_state=seed).fit_transform(x))
    raise LookalikeError(f"unknown projection {method!r}: use pca, tsne or umap")


_METHOD_PACKAGES = {"tsne": ("sklearn", "scikit-learn"), "umap": ("umap", "umap-learn")}
"""The package each non-PCA projection imports: (module, what to ``pip install``)."""


def require_method(method: str) -> None:
    """Check, before any work, that ``method`` is known and its package is installed.

    Raises:
        LookalikeError: An unknown method, or one whose package is missing (with the
            ``pip install`` that fixes it).
    """
    if method not in ("pca", "tsne", "umap"):
        raise LookalikeError(f"unknown projection {method!r}: use pca, tsne or umap")
    if method in _METHOD_PACKAGES:
        module, package = _METHOD_PACKAGES[method]
        if importlib.util.find_spec(module) is None:
            raise LookalikeError(
                f"the {method} map needs {package}, which is not installed: "
                f"pip install {package} (or use --method pca)"
            )


def _check(method: str, style: str, thumb_px: int) -> None:
    require_method(method)
    if style not in STYLES:
        raise ValueError(f"style must be one of {', '.join(STYLES)}, got {style!r}")
    if thumb_px < 8:
        raise ValueError(f"thumb_px must be at least 8, got {thumb_px}")


def _draw(
    paths: list[str],
    vectors: npt.NDArray[np.float32],
    thumbs: list[Image.Image],
    labels: list[str] | None,
    skipped: dict[str, str],
    out_png: str | os.PathLike[str],
    method: Method,
    style: Style,
    seed: int,
    title: str,
) -> EmbeddingMap:
    minimum = 3 if method == "tsne" else 2
    if len(paths) < minimum:
        raise LookalikeError(
            f"a {method} map needs at least {minimum} readable images, got {len(paths)}"
            + (f" ({len(skipped)} unreadable)" if skipped else "")
        )
    xy = np.asarray(project_2d(vectors, method, seed=seed), dtype=np.float64)
    full_title = f"{title} ({method.upper()}, {len(paths)} images)"
    if style == "thumbnails":
        out = plot_thumbnail_map(xy, thumbs, out_png, labels=labels, title=full_title)
    else:
        out = plot_point_map(xy, out_png, labels=labels, names=paths, title=full_title)
    return EmbeddingMap(out, paths, xy, labels, method, style, skipped)


def _thumbnail(image: Image.Image, thumb_px: int) -> Image.Image:
    thumb = image.convert("RGB")
    thumb.thumbnail((thumb_px, thumb_px), Image.Resampling.BILINEAR)
    return thumb


_Color = tuple[float, float, float]


def _class_colors(labels: Sequence[str] | None) -> tuple[list[str], dict[str, _Color]]:
    """Sorted distinct labels and an RGB colour (floats in [0, 1]) for each."""
    if labels is None:
        return [], {}
    classes = sorted(set(labels))
    cmap = pyplot().get_cmap("tab10" if len(classes) <= 10 else "tab20")
    colors: dict[str, _Color] = {}
    for k, name in enumerate(classes):
        r, g, b, _ = cmap(k % cmap.N)
        colors[name] = (float(r), float(g), float(b))
    return classes, colors


def _rgb255(color: _Color) -> tuple[int, int, int]:
    return (round(255 * color[0]), round(255 * color[1]), round(255 * color[2]))


def _legend(ax: Any, classes: list[str], colors: dict[str, _Color]) -> None:
    from matplotlib.patches import Patch

    if not classes or len(classes) > 20:
        return
    handles = [Patch(color=colors[name], label=name) for name in classes]
    ax.legend(
        handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False
    )


def plot_thumbnail_map(
    xy: npt.ArrayLike,
    images: Sequence[Image.Image],
    path: str | os.PathLike[str],
    *,
    labels: Sequence[str] | None = None,
    title: str = "Embedding map",
    border_px: int = 3,
) -> Path:
    """Draw images as thumbnails at 2-D positions and write a PNG.

    Args:
        xy: (N, 2) positions (any scale; stretched to fill the canvas, y pointing up).
        images: N thumbnails (PIL images; drawn at their own size, centred on their point).
        path: The PNG to write.
        labels: Identity per image: each thumbnail is framed in its identity's colour and a
            legend names them (up to 20).
        title: Figure title.
        border_px: Width of the coloured frame in pixels.

    Returns:
        The path written.
    """
    points = np.asarray(xy, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) != len(images):
        raise ValueError(f"xy must be (N, 2) with N = {len(images)}, got {points.shape}")
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"labels has {len(labels)} entries for {len(images)} images")
    classes, colors = _class_colors(labels)
    thumb = max((max(im.size) for im in images), default=32) + 2 * border_px
    side = int(
        np.clip(thumb * np.sqrt(max(len(images), 1)) * 2.2, _MIN_CANVAS_SIDE, _MAX_CANVAS_SIDE)
    )
    width, height = side, int(side * 0.75)
    canvas = Image.new("RGB", (width, height), _BACKGROUND)
    low, span = points.min(axis=0), np.ptp(points, axis=0)
    unit = (points - low) / np.where(span > 0, span, 1.0)
    unit[:, span == 0] = 0.5
    margin = thumb / 2 + 2
    for k, image in enumerate(images):
        cx = margin + unit[k, 0] * (width - 2 * margin)
        cy = margin + (1.0 - unit[k, 1]) * (height - 2 * margin)
        color = _NO_LABEL_COLOR if labels is None else _rgb255(colors[labels[k]])
        framed = ImageOps.expand(image.convert("RGB"), border=border_px, fill=color)
        canvas.paste(framed, (int(cx - framed.width / 2), int(cy - framed.height / 2)))
    plt = pyplot()
    dpi = 100
    fig = plt.figure(figsize=(width / dpi, height / dpi + 0.5), dpi=dpi)
    ax = fig.add_axes((0.0, 0.0, 1.0, height / (height + 0.5 * dpi)))
    ax.imshow(np.asarray(canvas), interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title, fontsize=11)
    _legend(ax, classes, colors)
    return save(fig, path, tight=True)


def plot_point_map(
    xy: npt.ArrayLike,
    path: str | os.PathLike[str],
    *,
    labels: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
    title: str = "Embedding map",
) -> Path:
    """Draw 2-D positions as points coloured by identity and write a PNG.

    Args:
        xy: (N, 2) positions.
        path: The PNG to write.
        labels: Identity per point (colour and legend), or ``None``.
        names: Image paths; without labels, up to 60 points are annotated with their file
            names.
        title: Figure title.

    Returns:
        The path written.
    """
    points = np.asarray(xy, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"xy must be (N, 2), got {points.shape}")
    plt = pyplot()
    classes, colors = _class_colors(labels)
    fig, ax = plt.subplots(figsize=(7.5, 5.5), dpi=110)
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=18, color="tab:blue", alpha=0.8)
        if names is not None and len(names) <= _MAX_NAMED_POINTS:
            for (x, y), name in zip(points, names, strict=True):
                ax.annotate(
                    Path(name).name, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points"
                )
    else:
        label_array = np.asarray(labels)
        for name in classes:
            mask = label_array == name
            ax.scatter(points[mask, 0], points[mask, 1], s=18, color=colors[name], alpha=0.85)
        _legend(ax, classes, colors)
    ax.set_title(title, fontsize=11)
    ax.set_xticks([])
    ax.set_yticks([])
    return save(fig, path, tight=True)
