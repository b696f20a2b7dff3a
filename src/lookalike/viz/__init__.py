"""Pictures: training curves, embedding maps, closest-image grids and similarity heatmaps.

* :mod:`~lookalike.viz.curves` — :func:`plot_history` (``loss.png``, ``accuracy.png``),
  :func:`plot_roc` (log FAR axis), :func:`plot_score_histograms` (same vs different pairs).
* :mod:`~lookalike.viz.maps` — the one embedding-map renderer: :func:`map_folder` (embed a
  folder and draw it), :func:`map_vectors` (embeddings already computed, e.g. an index's),
  :func:`plot_embedding_map` (embeddings with integer identity labels), drawn as
  thumbnails (:func:`plot_thumbnail_map`) or points (:func:`plot_point_map`) after
  :func:`project_2d` (PCA, t-SNE or UMAP); the result is an :class:`EmbeddingMap`.
* :mod:`~lookalike.viz.grids` — :func:`plot_retrieval_grid`: each query beside its hits.
* :mod:`~lookalike.viz.explain` — :func:`lookalike.viz.explain.explain` (where two images
  agree and differ, as an :class:`Explanation`; also ``lookalike.explain``) and
  :func:`render_explanation` (the side-by-side figure). The function is not re-exported
  here: ``lookalike.viz.explain`` names the module.

Every figure is a PNG drawn with matplotlib's Agg backend through the package-private
``_mpl.pyplot()``. Names are imported lazily: ``import lookalike.viz`` imports neither
matplotlib nor torch; a missing matplotlib is a
:class:`~lookalike.errors.LookalikeError` when the first figure is drawn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lookalike._lazy import lazy_exports

if TYPE_CHECKING:
    from lookalike.viz.curves import plot_history, plot_roc, plot_score_histograms
    from lookalike.viz.explain import Explanation, render_explanation
    from lookalike.viz.grids import plot_retrieval_grid
    from lookalike.viz.maps import (
        EmbeddingMap,
        map_folder,
        map_vectors,
        plot_embedding_map,
        plot_point_map,
        plot_thumbnail_map,
        project_2d,
    )

_LAZY = {
    "plot_history": "lookalike.viz.curves",
    "plot_roc": "lookalike.viz.curves",
    "plot_score_histograms": "lookalike.viz.curves",
    "EmbeddingMap": "lookalike.viz.maps",
    "map_folder": "lookalike.viz.maps",
    "map_vectors": "lookalike.viz.maps",
    "plot_embedding_map": "lookalike.viz.maps",
    "plot_point_map": "lookalike.viz.maps",
    "plot_thumbnail_map": "lookalike.viz.maps",
    "project_2d": "lookalike.viz.maps",
    "plot_retrieval_grid": "lookalike.viz.grids",
    "Explanation": "lookalike.viz.explain",
    "render_explanation": "lookalike.viz.explain",
}

__all__ = [
    "EmbeddingMap",
    "Explanation",
    "map_folder",
    "map_vectors",
    "plot_embedding_map",
    "plot_history",
    "plot_point_map",
    "plot_retrieval_grid",
    "plot_roc",
    "plot_score_histograms",
    "plot_thumbnail_map",
    "project_2d",
    "render_explanation",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
