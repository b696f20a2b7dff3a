"""Comparing two indexes of the same images (single process vs Ray, a folder vs a URI root):
the same rows, content hashes, sizes and vectors, and update reports that say the same."""

from __future__ import annotations

import os

import numpy as np

from lookalike.index.index import Index
from lookalike.index.update import UpdateReport


def snapshot(index: Index) -> dict[str, tuple[str, int, np.ndarray]]:
    """path → (content hash, size, vector)."""
    rows = index._store.rows()
    snap = index.vectors()
    return {
        p: (rows[p].content_hash, rows[p].size, v)
        for p, v in zip(snap.paths, snap.vectors, strict=True)
    }


def assert_same(a: Index, b: Index) -> None:
    """The same paths, hashes and sizes, and vectors equal to 1e-5."""
    sa, sb = snapshot(a), snapshot(b)
    assert sorted(sa) == sorted(sb)
    for path, (digest, size, vector) in sa.items():
        assert sb[path][:2] == (digest, size), path
        np.testing.assert_allclose(sb[path][2], vector, atol=1e-5, err_msg=path)


def counts(report: UpdateReport, root: str | os.PathLike[str] | None = None) -> tuple[object, ...]:
    """What an update did; a skipped file's reason names it, so ``root`` is written ``ROOT``."""
    where = "\0" if root is None else os.fspath(root)  # "\0": nothing to replace
    return (
        report.added,
        report.updated,
        report.removed,
        report.unchanged,
        sorted((p, why.replace(where, "ROOT")) for p, why in report.skipped),
        report.embedded,
        report.reused_from_cache,
    )
