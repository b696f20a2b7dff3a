"""How :meth:`lookalike.index.index.Index.update` works out and embeds what changed.

The steps, each a function here, are driven by the index, which owns the database and commits:

1. :func:`scan` lists the image files under the root with their size and modification time.
2. :func:`hash_changed` hashes only files that are new or whose size or time changed; a file
   whose content hash has a cached vector is indexed at once (moved, renamed, copied files).
3. :func:`embed_missing` embeds each remaining distinct content once with the model (an
   :class:`~lookalike.inference.embedder.Embedder`) through the one embedding pipeline,
   :func:`lookalike.inference.pipeline.iter_embed_files` (decoding overlaps inference), and
   hands each forward pass to ``commit`` to be committed in its own transaction.

A file modified less than :data:`RACY_SECONDS` before the scan may be modified again within
the same timestamp tick without its size or time changing; such a file is stored with
modification time ``-1``, so the next update hashes it again (as git does for "racily clean"
files). Hashing is cheap; it is embedded again only if its content changed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import numpy.typing as npt

from lookalike._io import blake2b_file
from lookalike.errors import IndexFolderError
from lookalike.imaging.files import iter_image_files
from lookalike.index.store import FileRow
from lookalike.inference.embedder import Embedder
from lookalike.inference.pipeline import EmbedResult, iter_embed_files
from lookalike.metrics.distances import unit_rows

__all__ = [
    "RACY_SECONDS",
    "Changes",
    "UpdateReport",
    "checked_vectors",
    "embed_missing",
    "hash_changed",
    "hash_file",
    "scan",
]

RACY_SECONDS = 2.0
_HASH_CHUNK = 1 << 20

FloatArray = npt.NDArray[np.float32]
Found = dict[str, tuple[int, int]]


@dataclass
class UpdateReport:
    """What :meth:`~lookalike.index.index.Index.update` did.

    Attributes:
        added: Relative paths newly indexed.
        updated: Relative paths whose content changed and was indexed again.
        removed: Relative paths dropped because their file is gone or no longer matches the
            patterns.
        unchanged: Files left as they were (including files touched without a content change).
        skipped: ``(relative path, reason)`` of files that could not be indexed; a file that
            was indexed before and cannot be read now is dropped from the index too.
        reused_from_cache: Files indexed without embedding, their content's vector being
            cached or embedded for another file in this run (moved, renamed, copied files).
        embedded: Images actually embedded.
    """

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    reused_from_cache: int = 0
    embedded: int = 0

    def summary(self) -> str:
        """One line with the counts."""
        return (
            f"{len(self.added)} added, {len(self.updated)} updated, {len(self.removed)} removed, "
            f"{self.unchanged} unchanged, {len(self.skipped)} skipped; "
            f"{self.embedded} embedded, {self.reused_from_cache} reused from the cache"
        )


@dataclass
class Changes:
    """Changes committed together.

    Attributes:
        vectors: ``{content hash: unit vector (D,)}`` for every hash in ``upserts``.
        upserts: ``(path, size, mtime_ns, hash)`` of files to add or whose content changed.
        touched: ``(path, size, mtime_ns, hash)`` of indexed files whose content is unchanged.
        deletes: Paths to drop.
    """

    vectors: dict[str, FloatArray] = field(default_factory=dict)
    upserts: list[tuple[str, int, int, str]] = field(default_factory=list)
    touched: list[tuple[str, int, int, str]] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)


Commit = Callable[[Changes], None]


def resolve(root: Path, rel: str) -> Path:
    """The file system path of a relative path stored with ``/`` separators."""
    return root.joinpath(*PurePosixPath(rel).parts)


def scan(root: Path, include: Sequence[str], exclude: Sequence[str], report: UpdateReport) -> Found:
    """List the image files under ``root`` with their size and modification time.

    Args:
        root: The indexed folder.
        include: Glob patterns on the relative path, one of which must match (if any).
        exclude: Glob patterns none of which may match.
        report: Receives files that cannot be examined, in ``skipped``.

    Returns:
        ``{relative path: (size, mtime_ns)}``; a file modified within :data:`RACY_SECONDS`
        of now gets time ``-1`` so that the next update checks it again.

    Raises:
        DataError: If a folder under ``root`` cannot be listed.
    """
    racy = time.time_ns() - int(RACY_SECONDS * 1e9)
    found: Found = {}
    for path in iter_image_files(root, include=include, exclude=exclude):
        rel = path.relative_to(root).as_posix()
        try:
            st = path.stat()
        except OSError as exc:
            report.skipped.append((rel, f"cannot read file: {exc.strerror or exc}"))
            continue
        found[rel] = (st.st_size, st.st_mtime_ns if st.st_mtime_ns < racy else -1)
    return found


def hash_file(path: Path) -> str:
    """BLAKE2b-128 hex digest of a file's bytes.

    Raises:
        OSError: If the file cannot be read.
    """
    return blake2b_file(path, digest_size=16, chunk=_HASH_CHUNK)


def hash_changed(
    root: Path,
    found: Found,
    rows: dict[str, FileRow],
    report: UpdateReport,
    cached: Callable[[set[str]], dict[str, FloatArray]],
    commit: Commit,
) -> dict[str, str]:
    """Hash new and changed files; commit at once those needing no embedding.

    Args:
        root: The indexed folder.
        found: From :func:`scan`.
        rows: The indexed files by relative path (updated by ``commit``).
        report: Updated with unchanged, skipped, added/updated and reused files.
        cached: Looks up cached vectors by content hash.
        commit: Commits a :class:`Changes`.

    Returns:
        ``{relative path: hash}`` of the files still to embed.
    """
    changes = Changes()
    todo: dict[str, str] = {}
    for rel, (size, mtime) in sorted(found.items()):
        row = rows.get(rel)
        if row is not None and mtime >= 0 and (row.size, row.mtime_ns) == (size, mtime):
            report.unchanged += 1
            continue
        try:
            digest = hash_file(resolve(root, rel))
        except OSError as exc:
            report.skipped.append((rel, f"cannot read file: {exc.strerror or exc}"))
            if row is not None:
                changes.deletes.append(rel)
            continue
        if row is not None and row.content_hash == digest:
            report.unchanged += 1
            if (row.size, row.mtime_ns) != (size, mtime):
                changes.touched.append((rel, size, mtime, digest))
        else:
            todo[rel] = digest
    hits = cached(set(todo.values()))
    changes.vectors.update(hits)
    for rel, digest in list(todo.items()):
        if digest in hits:
            changes.upserts.append((rel, *found[rel], digest))
            (report.updated if rel in rows else report.added).append(rel)
            report.reused_from_cache += 1
            del todo[rel]
    commit(changes)
    return todo


def embed_missing(
    root: Path,
    embedder: Embedder,
    todo: dict[str, str],
    found: Found,
    rows: dict[str, FileRow],
    report: UpdateReport,
    commit: Commit,
    *,
    dim: int,
    model_key: str,
    batch_size: int,
    progress: bool,
) -> None:
    """Embed each distinct new content once, committing each forward pass.

    Args:
        root: The indexed folder.
        embedder: The model.
        todo: From :func:`hash_changed`.
        found: From :func:`scan`.
        rows: The indexed files by relative path (updated by ``commit``).
        report: Updated with what was embedded, added, updated and skipped.
        commit: Commits a :class:`Changes`.
        dim: Embedding size D the index holds.
        model_key: The index's model, named when the embeddings have the wrong size.
        batch_size: Distinct contents per forward pass and per transaction.
        progress: Show a progress bar on stderr (only when it is a terminal).

    Raises:
        IndexFolderError: If the model returns vectors of the wrong size.
        ValueError: If the model returns the wrong number of rows.
    """
    from tqdm import tqdm

    by_hash: dict[str, list[str]] = {}
    for rel, digest in todo.items():
        by_hash.setdefault(digest, []).append(rel)
    pending = list(by_hash)
    files = [str(resolve(root, by_hash[h][0])) for h in pending]
    position = {name: i for i, name in enumerate(files)}
    chunks = iter_embed_files(embedder, files, batch_size=batch_size)
    bar = tqdm(total=len(pending), unit="img", desc="indexing", disable=None if progress else True)
    with closing(chunks), bar:
        for chunk in chunks:
            vectors, failures = checked_vectors(chunk, dim=dim, model_key=model_key)
            changes = Changes()
            done = {*chunk.indices, *(position[name] for name, _ in chunk.failures)}
            for i in sorted(done):  # in input order, as the files were listed
                name, digest = files[i], pending[i]
                members = by_hash[digest]
                if name in failures:
                    report.skipped += [(rel, failures[name]) for rel in members]
                    changes.deletes += [rel for rel in members if rel in rows]
                    continue
                changes.vectors[digest] = vectors[name]
                report.embedded += 1
                report.reused_from_cache += len(members) - 1
                for rel in members:
                    changes.upserts.append((rel, *found[rel], digest))
                    (report.updated if rel in rows else report.added).append(rel)
            commit(changes)
            bar.update(len(chunk.indices) + len(chunk.failures))
    report.added.sort()
    report.updated.sort()


def checked_vectors(
    result: EmbedResult, *, dim: int, model_key: str
) -> tuple[dict[str, FloatArray], dict[str, str]]:
    """Check embeddings, L2-normalise them and key them by path.

    Args:
        result: Embedded files (a batch of :func:`~lookalike.inference.pipeline.iter_embed_files`).
        dim: The embedding size expected.
        model_key: The index's model, named in the error.

    Returns:
        ``({path: unit vector (D,)}, {path: reason})``; a zero or non-finite embedding is a
        failure.

    Raises:
        IndexFolderError: If the embeddings are not D-dimensional.
    """
    failures = {str(p): str(reason) for p, reason in result.failures}
    if not result.paths:
        return {}, failures
    out = np.asarray(result.embeddings, dtype=np.float32)
    if out.ndim != 2 or out.shape[1] != dim:
        raise IndexFolderError(
            f"the model gave embeddings of shape {out.shape}, but this index holds "
            f"{dim}-dimensional ones from model {model_key!r}; use that model"
        )
    unit = unit_rows(out)  # a zero row stays zero, a non-finite one becomes NaN
    usable = np.isfinite(unit).all(axis=1) & (np.count_nonzero(unit, axis=1) > 0)
    vectors: dict[str, FloatArray] = {}
    for name, row, ok in zip(result.paths, unit, usable, strict=True):
        if ok:
            vectors[name] = row
        else:
            failures[name] = "the model returned a zero or non-finite embedding"
    return vectors, failures
