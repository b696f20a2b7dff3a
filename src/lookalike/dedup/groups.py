"""Near-duplicate groups: find them, choose which copy to keep, move the rest aside.

:func:`find_duplicates` links every pair of images whose embeddings have cosine similarity at
least a threshold, with a range search of every vector against the others in blocks
(:func:`lookalike.index.self_join.all_pairs`: exact below 50,000 images, an IVF self-join above;
never an N×N matrix), and returns the connected components of those links as groups.
:func:`dedup_index` runs the same join on an index's own FAISS structure (IVF-SQ8 from 200,000
images: 1.28 GB for a million), reading from SQLite only the vectors and paths of the images
it groups, so a million-image index is deduplicated without a float32 copy of its vectors.

Connected components can **chain**: if A–B and B–C are near duplicates, A and C share a group
even when A–C scores below the threshold (an image cropped twice, step by step). Each group
therefore records every member's score *to the copy it keeps*, and its lowest one
(:attr:`DuplicateGroup.min_score`); a ``min_score`` below the threshold shows a chain.

Which copy is kept follows a :data:`~lookalike.dedup.keep.KeepRule` (:mod:`lookalike.dedup.keep`):
by default the one that looks like *the original* — no added overlay or border, the most
pixels, the best JPEG quality, the earliest EXIF date, the oldest file — and each group says
why (:attr:`DuplicateGroup.reason`). With vectors only (no paths), the first row is kept.

:func:`move_duplicates` moves all but the kept copy of each group to another folder, keeping
their relative paths, and writes a manifest of every move that :func:`undo_moves` reverses;
:func:`lookalike.dedup.report.write_dedup_html` writes a contact sheet to review the groups
first (:mod:`lookalike.dedup.report`).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from lookalike._io import atomic_write_json
from lookalike.dedup.calibrate import DEFAULT_DEDUP_THRESHOLD
from lookalike.dedup.keep import KeepRule, rank_copies
from lookalike.errors import DataError
from lookalike.imaging.files import shown_path
from lookalike.index import faiss_structures as vi
from lookalike.index import self_join as vp
from lookalike.inference.uris import is_uri
from lookalike.metrics.distances import unit_rows

if TYPE_CHECKING:
    from lookalike.index.index import Index

MANIFEST_FORMAT = "lookalike.dedup-moves/1"
"""The ``format`` of a move manifest (see :func:`move_duplicates`)."""

CHOICES_FORMAT = "lookalike.dedup-choices/1"
"""The ``format`` of a review's choices, saved from the HTML report (see :func:`read_choices`)."""

__all__ = [
    "CHOICES_FORMAT",
    "MANIFEST_FORMAT",
    "DuplicateGroup",
    "UndoResult",
    "dedup_index",
    "duplicate_pairs",
    "find_duplicates",
    "manifest_path",
    "move_duplicates",
    "read_choices",
    "refuse_uri_moves",
    "undo_moves",
]


@dataclass(frozen=True)
class DuplicateGroup:
    """A group of near-duplicate images; the first member is the one to keep.

    Attributes:
        indices: Rows of the input vectors, kept one first (for :func:`dedup_index`: positions
            in the index's id order, as :meth:`~lookalike.index.index.Index.vectors` lists them).
        paths: Their paths (or row numbers as text when no paths were given).
        ids: Their ids (the rows when no ids were given).
        scores: Cosine similarity of each member to the kept one (the first is its own, 1.0).
        reason: Why the first member is the one kept (one sentence; empty without paths).
    """

    indices: tuple[int, ...]
    paths: tuple[str, ...]
    ids: tuple[int, ...]
    scores: tuple[float, ...]
    reason: str = ""

    @property
    def keep(self) -> str:
        """The path of the copy to keep."""
        return self.paths[0]

    @property
    def duplicates(self) -> tuple[str, ...]:
        """The paths of the other copies."""
        return self.paths[1:]

    @property
    def min_score(self) -> float:
        """The lowest score of a member to the kept copy (below the threshold: a chain)."""
        return min(self.scores[1:])

    def __len__(self) -> int:
        return len(self.indices)


def duplicate_pairs(
    vectors: npt.ArrayLike,
    threshold: float,
    *,
    config: vi.VectorIndexConfig | None = None,
    nprobe: int | None = None,
    chunk: int = 2048,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Every pair of rows with cosine similarity at least ``threshold``.

    Args:
        vectors: Embeddings (N, D); rows are L2-normalised here.
        threshold: Cosine threshold in [-1, 1].
        config: FAISS structure to search with (default: exact below 50,000 rows, IVF above,
            IVF-SQ8 from 200,000; HNSW is replaced by the default).
        nprobe: IVF lists each vector probes (``None``: ``config.nprobe``, else
            :data:`lookalike.index.self_join.DEFAULT_JOIN_NPROBE`).
        chunk: Rows per block of queries (bounds memory).

    Returns:
        ``(i, j, score)``, each (E,), with ``i < j``, sorted by ``(i, j)``.

    Raises:
        ValueError: If ``vectors`` is not 2-D or the threshold is out of range.
    """
    x = _checked_unit_rows(vectors)
    _check_threshold(threshold)
    config = config or vi.VectorIndexConfig()
    if config.kind == "hnsw":
        config = vi.VectorIndexConfig(
            ivf_threshold=config.ivf_threshold,
            sq8_threshold=config.sq8_threshold,
            nprobe=config.nprobe,
        )
    n, dim = x.shape
    if n < 2:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, np.float32)
    structure = vi.build(np.arange(n, dtype=np.int64), x, dim, config)
    return vp.all_pairs(structure, threshold, nprobe=nprobe or config.nprobe, chunk=chunk)


def find_duplicates(
    vectors: npt.ArrayLike,
    threshold: float = DEFAULT_DEDUP_THRESHOLD,
    *,
    paths: Sequence[str] | None = None,
    ids: Sequence[int] | None = None,
    root: str | os.PathLike[str] | None = None,
    config: vi.VectorIndexConfig | None = None,
    nprobe: int | None = None,
    keep: KeepRule = "original",
    choices: Mapping[str, str | None] | None = None,
) -> list[DuplicateGroup]:
    """Group near-duplicate images (connected components of the near-duplicate links).

    Args:
        vectors: Embeddings (N, D), one per image.
        threshold: Cosine similarity from which two images are near duplicates.
        paths: The images' paths (N); used to choose the copy to keep (see ``keep``).
            Without paths the first row of each group is kept.
        ids: The images' ids (N), carried into the groups.
        root: Folder the paths are relative to (``None``: as given).
        config: FAISS structure to search with (see :func:`duplicate_pairs`).
        nprobe: IVF lists each vector probes (see :func:`duplicate_pairs`).
        keep: Which copy each group keeps (:data:`~lookalike.dedup.keep.KEEP_RULES`).
        choices: A review's decisions (:func:`read_choices`): member path → the copy to keep,
            or ``None`` for "not duplicates" (the group is left out). Overrides ``keep``.

    Returns:
        The groups of two or more images, largest first, then by kept path.

    Raises:
        ValueError: If ``paths`` or ``ids`` do not have N entries, or as for
            :func:`duplicate_pairs`.
    """
    x = _checked_unit_rows(vectors)
    n = len(x)
    if (paths is not None and len(paths) != n) or (ids is not None and len(ids) != n):
        raise ValueError(f"paths and ids must have one entry per vector ({n})")
    names = [str(p) for p in paths] if paths is not None else [str(i) for i in range(n)]
    keys = [int(i) for i in ids] if ids is not None else list(range(n))
    i, j, _ = duplicate_pairs(x, threshold, config=config, nprobe=nprobe)
    base = Path(root) if root is not None else None
    rule = keep if paths is not None else None
    found = [
        _group(rows, rows, x[rows], names, keys, base, rule, choices) for rows in _components(i, j)
    ]
    groups = [g for g in found if g is not None]
    groups.sort(key=lambda g: (-len(g), g.keep))
    return groups


def dedup_index(
    index: Index,
    threshold: float = DEFAULT_DEDUP_THRESHOLD,
    *,
    nprobe: int | None = None,
    keep: KeepRule = "original",
    choices: Mapping[str, str | None] | None = None,
) -> list[DuplicateGroup]:
    """Near-duplicate groups among the images of an index.

    The join runs on the index's vector backend (:meth:`VectorBackend.pairs
    <lookalike.index.backend.VectorBackend.pairs>`): on FAISS, the structure (loaded from its
    file) in blocks; on Milvus, a range search of the stored vectors a block at a time. Only
    the grouped images' vectors and paths are then read from the database. Peak memory with
    FAISS is about the structure plus a few blocks: measured at a million 1,280-dimensional
    vectors in ``benchmarks/bench_million.py``.

    Args:
        index: An open :class:`~lookalike.index.index.Index`; its vectors are searched with its own
            structure (exact below its IVF threshold, an IVF self-join above).
        threshold: Cosine similarity from which two images are near duplicates; it depends on
            the model (:data:`~lookalike.dedup.calibrate.DEFAULT_DEDUP_THRESHOLD` is for the
            default one).
        nprobe: IVF lists each vector probes (``None``: the index's ``nprobe`` setting,
            else :data:`lookalike.index.self_join.DEFAULT_JOIN_NPROBE`).
        keep: Which copy each group keeps (:data:`~lookalike.dedup.keep.KEEP_RULES`).
        choices: A review's decisions (see :func:`find_duplicates`).

    Returns:
        As for :func:`find_duplicates`, with paths relative to the index root and the index's
        file ids. Images removed from the index while the structure was in use are left out.
    """
    _check_threshold(threshold)
    backend = index.backend
    a, b, _ = backend.pairs(threshold, nprobe)
    components = _components(a, b)
    if not components:
        return []
    snap = index.vectors(ids=sorted({i for c in components for i in c}))
    where = {int(i): k for k, i in enumerate(snap.ids.tolist())}
    order = backend.ids()
    keys = snap.ids.tolist()
    groups = []
    for component in components:
        rows = [where[i] for i in component if i in where]
        if len(rows) >= 2:
            positions = np.searchsorted(order, snap.ids[rows]).tolist()
            group = _group(
                rows, positions, snap.vectors[rows], snap.paths, keys, index.root, keep, choices
            )
            if group is not None:
                groups.append(group)
    groups.sort(key=lambda g: (-len(g), g.keep))
    return groups


def _check_threshold(threshold: float) -> None:
    """Refuse a threshold that is not a cosine similarity."""
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a cosine similarity in [-1, 1], not {threshold}")


def _components(a: npt.NDArray[np.int64], b: npt.NDArray[np.int64]) -> list[list[int]]:
    """Connected components of the graph with edges ``a[k]–b[k]``, each sorted, by first node."""
    nodes, inverse = np.unique(np.concatenate([a, b]), return_inverse=True)
    parent = list(range(len(nodes)))

    def find(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    half = len(a)
    for u, v in zip(inverse[:half].tolist(), inverse[half:].tolist(), strict=True):
        ru, rv = find(u), find(v)
        if ru != rv:
            parent[max(ru, rv)] = min(ru, rv)
    members: dict[int, list[int]] = {}
    for k, node in enumerate(nodes.tolist()):
        members.setdefault(find(k), []).append(int(node))
    return list(members.values())


def _group(
    rows: list[int],
    indices: list[int],
    vectors: npt.NDArray[np.float32],
    names: Sequence[str],
    keys: Sequence[int],
    root: Path | str | None,
    keep: KeepRule | None,
    choices: Mapping[str, str | None] | None = None,
) -> DuplicateGroup | None:
    """One group: members ordered with the kept copy first, then by score to it.

    Args:
        rows: The members' positions in ``names`` and ``keys`` (K).
        indices: What :attr:`DuplicateGroup.indices` reports for each member (K).
        vectors: The members' unit vectors (K, D).
        names: Paths (or row numbers as text) of every candidate.
        keys: Ids of every candidate.
        root: Folder the paths are relative to (a ``str`` URI for an index with a URI root).
        keep: The rule choosing the kept copy from the files; ``None`` when there are no
            real paths: keep the first member.
        choices: A review's decisions, which win over ``keep``.

    Returns:
        The group, or ``None`` when the review said its members are not duplicates.
    """
    order, reason = list(range(len(rows))), ""
    members = [names[r] for r in rows]
    shown = [shown_path(m) for m in members]  # what the report (and so a review) names
    decided = [choices[m] for m in shown if m in choices] if choices else []
    if decided and decided[0] is None:
        return None
    if decided and decided[0] in shown:
        chosen = shown.index(str(decided[0]))
        order = [chosen, *(k for k in order if k != chosen)]
        reason = "kept because the review chose it"
    elif keep is not None:
        order, reason, _ = rank_copies(members, root, keep)
        if decided:
            reason += f" (the review's choice {decided[0]} is no longer in this group)"
    scores = (vectors @ vectors[order[0]]).astype(np.float64)
    scores[order[0]] = 1.0
    order = [order[0], *sorted(order[1:], key=lambda k: (-scores[k], rows[k]))]
    return DuplicateGroup(
        tuple(indices[k] for k in order),
        tuple(names[rows[k]] for k in order),
        tuple(int(keys[rows[k]]) for k in order),
        tuple(float(scores[k]) for k in order),
        reason,
    )


def refuse_uri_moves(root: str | os.PathLike[str]) -> None:
    """Refuse to move the files of a URI root (an object store is only read).

    Raises:
        DataError: ``root`` is a URI.
    """
    if isinstance(root, str) and is_uri(root):
        raise DataError(
            f"{root} is a URI: dedup only reads object stores and never moves or deletes "
            "objects; drop --move-to (the report, --json or --csv list the duplicates)"
        )


def move_duplicates(
    groups: Sequence[DuplicateGroup],
    root: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    dry_run: bool = True,
    manifest: str | os.PathLike[str] | None = None,
) -> list[tuple[Path, Path]]:
    """Move every copy but the kept one of each group from ``root`` to ``dest``.

    Relative paths are kept (``root/a/b.jpg`` goes to ``dest/a/b.jpg``). Every move is checked
    before any is made: nothing is moved when a source is missing, a destination exists, or
    two would collide. Choose ``dest`` outside ``root`` (or a hidden folder in it), so that an
    index of ``root`` does not find the moved files again. Before the first move, a manifest
    of every planned move is written (atomically); :func:`undo_moves` reads it to put the
    files back, also after an interrupted run.

    Args:
        groups: From :func:`find_duplicates` or :func:`dedup_index`, with paths relative to
            ``root`` (or absolute paths under it).
        root: The folder the images are in.
        dest: Where to move the duplicates.
        dry_run: Only plan the moves (the default); ``False`` moves the files.
        manifest: Where to write the manifest (``None``: :func:`manifest_path` of ``dest``);
            not written for a dry run.

    Returns:
        ``(source, destination)`` of each move, planned or made.

    Raises:
        DataError: If a path is not under ``root``, a source is missing, a destination already
            exists, or two destinations collide; nothing is moved then. Also if ``root`` is a
            URI (an index of an object store): objects are never moved or deleted.
    """
    refuse_uri_moves(root)
    base, target = Path(root), Path(dest)
    plan: list[tuple[Path, Path]] = []
    problems: list[str] = []
    seen: set[Path] = set()
    kept: dict[Path, str] = {}
    for group in groups:
        for path in group.duplicates:
            rel = Path(path)
            if rel.is_absolute():
                try:
                    rel = rel.relative_to(base)
                except ValueError:
                    problems.append(f"{path} is not under {base}")
                    continue
            src, dst = base / rel, target / rel
            if not src.is_file():
                problems.append(f"{src} does not exist")
            elif dst.exists() or dst.is_symlink():
                problems.append(f"{dst} already exists (never overwritten)")
            elif dst in seen:
                problems.append(f"two files would move to {dst}")
            seen.add(dst)
            plan.append((src, dst))
            kept[dst] = group.keep
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise DataError("nothing moved: " + "; ".join(problems[:5]) + more)
    if not dry_run and plan:
        atomic_write_json(
            manifest if manifest is not None else manifest_path(target),
            {
                "format": MANIFEST_FORMAT,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "root": str(base.resolve()),
                "dest": str(target.resolve()),
                "moves": [
                    {"from": str(src.resolve()), "to": str(dst.resolve()), "kept": kept[dst]}
                    for src, dst in plan
                ],
            },
        )
        for src, dst in plan:
            dst.parent.mkdir(parents=True, exist_ok=True)
            if dst.exists():  # appeared since the check
                raise DataError(f"{dst} already exists (never overwritten); stopped before it")
            shutil.move(src, dst)
    return plan


def read_choices(path: str | os.PathLike[str]) -> dict[str, str | None]:
    """A review's decisions, saved from the HTML report (``write_dedup_html``).

    Returns:
        Every reviewed member's path → the copy its group keeps (``None``: the reviewer said
        the group is not duplicates, so nothing in it moves).

    Raises:
        DataError: The file is not a readable lookalike choices file.
    """
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
        if record.get("format") != CHOICES_FORMAT:
            raise ValueError("not a lookalike dedup choices file (save it from the report)")
        out: dict[str, str | None] = {}
        for group in record["groups"]:
            keep = group["keep"]
            if keep is not None and keep not in group["paths"]:
                raise ValueError(f"{keep} is not one of its group's paths")
            for member in group["paths"]:
                out[str(member)] = None if keep is None else str(keep)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"cannot read review choices from {path}: {exc}") from exc
    return out


def manifest_path(dest: str | os.PathLike[str]) -> Path:
    """A new manifest name in ``dest``: ``lookalike-moves-YYYYmmdd-HHMMSS[-N].json``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path, n = Path(dest) / f"lookalike-moves-{stamp}.json", 1
    while path.exists():
        n += 1
        path = Path(dest) / f"lookalike-moves-{stamp}-{n}.json"
    return path


@dataclass(frozen=True)
class UndoResult:
    """What :func:`undo_moves` did.

    Attributes:
        restored: ``(from, to)`` of each file put back (or that would be, in a dry run).
        in_place: Moves already undone (the file is back and nothing is left in ``dest``).
        problems: One line per move that could not be undone, saying why; nothing was
            overwritten.
    """

    restored: list[tuple[Path, Path]]
    in_place: int
    problems: list[str]


def undo_moves(manifest: str | os.PathLike[str], *, dry_run: bool = False) -> UndoResult:
    """Put back every file a :func:`move_duplicates` manifest records as moved.

    A move is undone when its file is in ``dest`` and nothing is at its old place; a file
    already back counts as in place (so running it twice is safe); anything else is a
    problem, reported and left as it is: a file is never overwritten.

    Args:
        manifest: The JSON file :func:`move_duplicates` wrote.
        dry_run: Only report what would be restored.

    Raises:
        DataError: The file is not a readable lookalike move manifest.
    """
    try:
        record = json.loads(Path(manifest).read_text(encoding="utf-8"))
        if record.get("format") != MANIFEST_FORMAT:
            raise ValueError("not a lookalike move manifest")
        moves = [(Path(m["from"]), Path(m["to"])) for m in record["moves"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"cannot undo from {manifest}: {exc}") from exc
    restored: list[tuple[Path, Path]] = []
    problems: list[str] = []
    in_place = 0
    for original, moved in moves:
        here, there = original.exists() or original.is_symlink(), moved.is_file()
        if here and not there:
            in_place += 1
        elif here:
            problems.append(f"{original} exists again; {moved} left where it is")
        elif not there:
            problems.append(f"{moved} is gone; cannot restore {original}")
        else:
            if not dry_run:
                original.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(moved, original)
            restored.append((moved, original))
    return UndoResult(restored, in_place, problems)


def _checked_unit_rows(vectors: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Check vectors (N, D) and return them as unit rows (N, D), float32 (see ``unit_rows``)."""
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"vectors must have shape (N, D), not {x.shape}")
    return unit_rows(x)
