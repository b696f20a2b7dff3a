"""Near-duplicate images: find the groups, review them, move the extra copies aside.

From Python (``dedup_index(index, threshold)`` does the same for an
:class:`~lookalike.index.Index`)::

    from lookalike.dedup import dedup_threshold, find_duplicates
    from lookalike.imaging.files import iter_image_files
    from lookalike.inference import embed_files, load_embedder

    embedder = load_embedder()
    embedded = embed_files(embedder, [str(p) for p in iter_image_files("photos")])
    threshold, how = dedup_threshold(embedder)   # stored with the model, else the default
    groups = find_duplicates(embedded.embeddings, threshold, paths=embedded.paths)

The public surface, one module per step:

* :mod:`~lookalike.dedup.groups` — :func:`find_duplicates` (vectors → groups of
  :class:`DuplicateGroup`, the connected components of the pairs at or above a cosine
  threshold), :func:`dedup_index` (the same on an index's own FAISS structure),
  :func:`duplicate_pairs`, :func:`move_duplicates` (writes a manifest) and :func:`undo_moves`;
* :mod:`~lookalike.dedup.keep` — which copy to keep: :func:`rank_copies` under one of
  :data:`KEEP_RULES` (default ``original``: no overlay or border, most pixels, best JPEG
  quality, earliest date), with the reason;
* :mod:`~lookalike.dedup.report` — :func:`write_dedup_html`, a contact sheet to review groups;
* :mod:`~lookalike.dedup.edits` — synthetic near duplicates: :func:`near_duplicates`,
  :func:`near_duplicate`, :func:`apply_edit`, :class:`NearDuplicate`, :data:`EDIT_KINDS`;
* :mod:`~lookalike.dedup.calibrate` — the threshold: :data:`DEFAULT_DEDUP_THRESHOLD`,
  :func:`dedup_threshold` (the policy ``lookalike dedup`` follows),
  :func:`calibrate_dedup_threshold` → :class:`DedupCalibration` (what ``lookalike
  calibrate-dedup`` stores with a model), :func:`pair_metrics`, :func:`offline_photos`.

Names are imported lazily: ``import lookalike.dedup`` imports neither FAISS nor torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lookalike._lazy import lazy_exports

if TYPE_CHECKING:
    from lookalike.dedup.calibrate import (
        DEFAULT_DEDUP_THRESHOLD,
        DedupCalibration,
        calibrate_dedup_threshold,
        dedup_threshold,
        offline_photos,
        pair_metrics,
    )
    from lookalike.dedup.edits import (
        EDIT_KINDS,
        NearDuplicate,
        apply_edit,
        near_duplicate,
        near_duplicates,
    )
    from lookalike.dedup.groups import (
        DuplicateGroup,
        dedup_index,
        duplicate_pairs,
        find_duplicates,
        move_duplicates,
        undo_moves,
    )
    from lookalike.dedup.keep import KEEP_RULES, rank_copies
    from lookalike.dedup.report import write_dedup_html

_LAZY = {
    "DuplicateGroup": "lookalike.dedup.groups",
    "find_duplicates": "lookalike.dedup.groups",
    "dedup_index": "lookalike.dedup.groups",
    "duplicate_pairs": "lookalike.dedup.groups",
    "move_duplicates": "lookalike.dedup.groups",
    "undo_moves": "lookalike.dedup.groups",
    "KEEP_RULES": "lookalike.dedup.keep",
    "rank_copies": "lookalike.dedup.keep",
    "write_dedup_html": "lookalike.dedup.report",
    "EDIT_KINDS": "lookalike.dedup.edits",
    "NearDuplicate": "lookalike.dedup.edits",
    "apply_edit": "lookalike.dedup.edits",
    "near_duplicate": "lookalike.dedup.edits",
    "near_duplicates": "lookalike.dedup.edits",
    "DEFAULT_DEDUP_THRESHOLD": "lookalike.dedup.calibrate",
    "DedupCalibration": "lookalike.dedup.calibrate",
    "calibrate_dedup_threshold": "lookalike.dedup.calibrate",
    "dedup_threshold": "lookalike.dedup.calibrate",
    "offline_photos": "lookalike.dedup.calibrate",
    "pair_metrics": "lookalike.dedup.calibrate",
}

__all__ = [
    "DEFAULT_DEDUP_THRESHOLD",
    "EDIT_KINDS",
    "KEEP_RULES",
    "DedupCalibration",
    "DuplicateGroup",
    "NearDuplicate",
    "apply_edit",
    "calibrate_dedup_threshold",
    "dedup_index",
    "dedup_threshold",
    "duplicate_pairs",
    "find_duplicates",
    "move_duplicates",
    "near_duplicate",
    "near_duplicates",
    "offline_photos",
    "pair_metrics",
    "rank_copies",
    "undo_moves",
    "write_dedup_html",
]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
