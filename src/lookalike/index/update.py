"""How :meth:`lookalike.index.index.Index.update` works out and embeds what changed.

The steps, each a function here, are driven by the index, which owns the database and commits:

1. :func:`scan` lists the image files under the root with their size and modification time
   (:func:`lookalike.index.uri_root.scan` the objects under a URI root).
2. :func:`hash_changed` hashes only files that are new or whose size or time changed; a file
   whose content hash has a cached vector is indexed at once (moved, renamed, copied files).
3. :func:`embed_missing` embeds each remaining distinct content once with the model (an
   :class:`~lookalike.inference.embedder.Embedder`) through the one embedding pipeline,
   :func:`lookalike.inference.pipeline.iter_embed_files` (decoding overlaps inference), and
   hands each forward pass to ``commit`` to be committed in its own transaction.

**A vector is always stored under the hash of the bytes it was computed from.** Step 2 hashes
a file to look its content up in the cache; a file that must be embedded is then read once
more, in step 3, and that one read is both hashed and decoded
(:class:`~lookalike.index.reader.VerifiedReader`). A
file rewritten between the two steps is therefore indexed with its *new* content's hash and
vector (and modification time ``-1``, so the next update looks at it again), never with the
new vector under the old hash, where an untouched identical copy would inherit it. Other
files that shared the old content are embedded in a further round from one of them.

**Verification.** With ``verify``, every file is hashed again whatever its size and time say,
and every distinct content is embedded again from its bytes: a file row whose content hash is
stale, and a cached vector that does not match its content (cosine below
:data:`VERIFY_COSINE`: one written by an older version under the race above), are repaired
and reported in :attr:`UpdateReport.repaired`.

**Where the work runs.** Hashing (step 2) and reading + embedding (step 3) go through a
:class:`Work`: :class:`LocalWork` hashes in this process and streams
:func:`~lookalike.inference.pipeline.iter_embed_files` with a :class:`VerifiedReader`;
:func:`ray_work` runs both as Ray Data tasks and an actor pool holding the model
(:mod:`lookalike.inference.ray_data`), each batch coming back with the hash and size of the
exact bytes its vectors were computed from. Either way the driver commits each batch, so a
killed job keeps every committed batch and the next update embeds only the rest.

A file modified less than :data:`RACY_SECONDS` before the scan may be modified again within
the same timestamp tick without its size or time changing; such a file is stored with
modification time ``-1``, so the next update hashes it again (as git does for "racily clean"
files). Hashing is cheap; it is embedded again only if its content changed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from lookalike._progress import bar as progress_bar
from lookalike.errors import IndexFolderError
from lookalike.imaging.files import iter_image_files
from lookalike.index.reader import VerifiedReader, hash_file, hash_or_reason
from lookalike.index.store import FileRow
from lookalike.inference.embedder import Embedder
from lookalike.inference.pipeline import EmbedResult, iter_embed_files
from lookalike.inference.uris import is_uri
from lookalike.metrics.distances import unit_rows

if TYPE_CHECKING:
    from lookalike.inference.ray_data import RayOptions as RayOptions

__all__ = [
    "RACY_SECONDS",
    "URI_HASH_THREADS",
    "VERIFY_COSINE",
    "Changes",
    "LocalWork",
    "UpdateReport",
    "VerifiedReader",
    "checked_vectors",
    "embed_missing",
    "hash_changed",
    "hash_file",
    "ray_work",
    "scan",
]

RACY_SECONDS = 2.0
URI_HASH_THREADS = 8
"""Objects of a URI root hashed at once by :class:`LocalWork` (requests in flight)."""
VERIFY_COSINE = 0.995
"""A cached vector whose cosine with its content's fresh embedding is below this is wrong."""

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
        verified: Files hashed again by a verifying update (``verify=True``), whatever their
            size and time; ``None`` for a normal update.
        repaired: Relative paths a verifying update found wrong and repaired: a stale
            content hash, or a cached vector that did not match the file's content.
    """

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    reused_from_cache: int = 0
    embedded: int = 0
    verified: int | None = None
    repaired: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line with the counts."""
        line = (
            f"{len(self.added)} added, {len(self.updated)} updated, {len(self.removed)} removed, "
            f"{self.unchanged} unchanged, {len(self.skipped)} skipped; "
            f"{self.embedded} embedded, {self.reused_from_cache} reused from the cache"
        )
        if self.verified is not None:
            line += f"; verified {self.verified}, repaired {len(self.repaired)}"
        return line


@dataclass
class Changes:
    """Changes committed together.

    Attributes:
        vectors: ``{content hash: unit vector (D,)}`` for every hash in ``upserts``.
        upserts: ``(path, size, mtime_ns, hash)`` of files to add, whose content changed, or
            whose content's vector is replaced.
        touched: ``(path, size, mtime_ns, hash)`` of indexed files whose content is unchanged.
        deletes: Paths to drop.
        replace: Hashes whose cached vector is replaced by the one in ``vectors`` (a
            verifying update found it wrong); other cached vectors are kept.
    """

    vectors: dict[str, FloatArray] = field(default_factory=dict)
    replace: set[str] = field(default_factory=set)
    upserts: list[tuple[str, int, int, str]] = field(default_factory=list)
    touched: list[tuple[str, int, int, str]] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)


Commit = Callable[[Changes], None]
ReadInfo = Mapping[str, tuple[str, int]]
"""``{path: (content hash, size in bytes)}`` of the exact bytes each file was decoded from."""


class Work(Protocol):
    """Where the two heavy steps of an update run: hashing files, and reading + embedding them.

    Both take absolute file names (``str``) and answer in any order.
    """

    def hash_files(
        self, names: Sequence[str], advance: Callable[[int], object] | None = None
    ) -> dict[str, tuple[str | None, str]]:
        """``{name: (content hash, "") or (None, reason)}`` (see :func:`hash_or_reason`);
        ``advance(n)`` is called as each ``n`` more files are hashed (a progress bar)."""
        ...

    def embed_stream(
        self, names: Sequence[str], batch_size: int
    ) -> Iterator[tuple[EmbedResult, ReadInfo]]:
        """Read, hash and embed the files, yielding each batch as soon as it is done.

        Each item is an :class:`~lookalike.inference.pipeline.EmbedResult` (``indices`` are
        positions in ``names``; unreadable files in ``failures``) and the :data:`ReadInfo`
        of (at least) its files: the vectors were computed from exactly those bytes.
        """
        ...


@dataclass
class LocalWork:
    """:class:`Work` in this process: the pipeline's decode threads and the embedder.

    Attributes:
        embedder: The model (``None`` for hashing only).
    """

    embedder: Embedder | None

    def hash_files(
        self, names: Sequence[str], advance: Callable[[int], object] | None = None
    ) -> dict[str, tuple[str | None, str]]:
        """Hash each file in turn (objects named by URIs: :data:`URI_HASH_THREADS` at a
        time, since each is a request to their store)."""
        out: dict[str, tuple[str | None, str]] = {}
        if names and is_uri(names[0]):
            with ThreadPoolExecutor(URI_HASH_THREADS, thread_name_prefix="lookalike-hash") as pool:
                for name, result in zip(names, pool.map(hash_or_reason, names), strict=True):
                    out[name] = result
                    if advance is not None:
                        advance(1)
            return out
        for name in names:
            out[name] = hash_or_reason(name)
            if advance is not None:
                advance(1)
        return out

    def embed_stream(
        self, names: Sequence[str], batch_size: int
    ) -> Iterator[tuple[EmbedResult, ReadInfo]]:
        """The pipeline (:func:`iter_embed_files`) reading through a :class:`VerifiedReader`."""
        if self.embedder is None:
            raise ValueError("LocalWork needs an embedder to embed")
        reader = VerifiedReader(self.embedder.preprocess)
        chunks = iter_embed_files(self.embedder, names, batch_size=batch_size, load=reader)
        with closing(chunks):
            for chunk in chunks:
                yield chunk, reader.read


def ray_work(embedder: Embedder, options: RayOptions) -> Work:
    """:class:`Work` on Ray (imports Ray): hashing in Ray tasks, embedding in an actor pool.

    Args:
        embedder: The model on the driver (its preprocessing and embedding size are used;
            the actors load their own copy from ``options.model``).
        options: The model description and pool size.

    Raises:
        LookalikeError: If Ray is not installed.
    """
    from lookalike.inference.ray_data import RayEmbedding

    return RayEmbedding(
        options,
        embedder.preprocess,
        embedder.embedding_dim,
        reader=VerifiedReader,
        hasher=hash_or_reason,
        key=getattr(embedder, "key", None),
    )


def resolve(root: Path | str, rel: str) -> Path | str:
    """The file system path of a relative path stored with ``/`` separators (a URI under a
    URI root, which is a ``str``: :mod:`lookalike.index.uri_root`)."""
    if isinstance(root, str):
        return f"{root.rstrip('/')}/{rel}"
    return root.joinpath(*PurePosixPath(rel).parts)


def scan(root: Path, include: Sequence[str], exclude: Sequence[str], report: UpdateReport) -> Found:
    """List the image files under ``root`` with their size and modification time.

    Args:
        root: The indexed folder.
        include: Glob patterns on the relative path, one of which must match (if any).
        exclude: Glob patterns none of which may match.
        report: Receives files and sub-folders that cannot be examined, in ``skipped`` (a
            folder with a trailing ``/``); indexed files under such a folder are dropped.

    Returns:
        ``{relative path: (size, mtime_ns)}``; a file modified within :data:`RACY_SECONDS`
        of now gets time ``-1`` so that the next update checks it again.

    Raises:
        DataError: If ``root`` itself cannot be listed.
    """
    racy = time.time_ns() - int(RACY_SECONDS * 1e9)
    found: Found = {}

    def unreadable(path: Path, reason: str) -> None:
        rel = path.relative_to(root).as_posix()
        report.skipped.append((rel + "/" if "folder" in reason else rel, reason))

    for path in iter_image_files(root, include=include, exclude=exclude, on_error=unreadable):
        rel = path.relative_to(root).as_posix()
        try:
            st = path.stat()
        except OSError as exc:
            report.skipped.append((rel, f"cannot read file: {exc.strerror or exc}"))
            continue
        found[rel] = (st.st_size, st.st_mtime_ns if st.st_mtime_ns < racy else -1)
    return found


def hash_changed(
    root: Path | str,
    found: Found,
    rows: dict[str, FileRow],
    report: UpdateReport,
    cached: Callable[[set[str]], dict[str, FloatArray]],
    commit: Commit,
    *,
    verify: bool = False,
    work: Work | None = None,
    progress: bool = False,
) -> tuple[dict[str, str], dict[str, str]]:
    """Hash new and changed files; commit at once those needing no embedding.

    Args:
        root: The indexed folder (or URI root).
        found: From :func:`scan`.
        rows: The indexed files by relative path (updated by ``commit``).
        report: Updated with unchanged, skipped, added/updated and reused files (and, when
            verifying, ``verified`` and the stale rows in ``repaired``).
        cached: Looks up cached vectors by content hash.
        commit: Commits a :class:`Changes`.
        verify: Hash every file, whatever its size and time say.
        work: Where the files are hashed (``None``: in this process).
        progress: Show a progress bar while hashing (on stderr, when it is a terminal).

    Returns:
        ``({relative path: hash} of the files still to embed, {relative path: hash} of the
        files indexed with a cached vector})``; the second is filled only when verifying
        (those vectors are then checked by :func:`embed_missing`).
    """
    changes = Changes()
    todo: dict[str, str] = {}
    indexed: dict[str, str] = {}
    if verify:
        report.verified = 0
    stale: list[str] = []
    for rel, (size, mtime) in sorted(found.items()):
        row = rows.get(rel)
        same_stat = row is not None and mtime >= 0 and (row.size, row.mtime_ns) == (size, mtime)
        if same_stat and not verify:
            report.unchanged += 1
        else:
            stale.append(rel)
    names = {rel: str(resolve(root, rel)) for rel in stale}
    with progress_bar(desc="hashing", total=len(names), unit="file", progress=progress) as bar:
        hashed = (work or LocalWork(None)).hash_files(list(names.values()), bar.update)
    for rel in stale:
        size, mtime = found[rel]
        row = rows.get(rel)
        same_stat = row is not None and mtime >= 0 and (row.size, row.mtime_ns) == (size, mtime)
        digest, reason = hashed[names[rel]]
        if digest is None:
            report.skipped.append((rel, reason))
            if row is not None:
                changes.deletes.append(rel)
            continue
        if verify:
            report.verified = (report.verified or 0) + 1
        if row is not None and row.content_hash == digest:
            report.unchanged += 1
            indexed[rel] = digest
            if (row.size, row.mtime_ns) != (size, mtime):
                changes.touched.append((rel, size, mtime, digest))
        else:
            todo[rel] = digest
            if same_stat:  # only a verifying update gets here: the row's hash was stale
                report.repaired.append(rel)
    hits = cached(set(todo.values()))
    changes.vectors.update(hits)
    for rel, digest in list(todo.items()):
        if digest in hits:
            changes.upserts.append((rel, *found[rel], digest))
            (report.updated if rel in rows else report.added).append(rel)
            report.reused_from_cache += 1
            indexed[rel] = digest
            del todo[rel]
    commit(changes)
    return todo, (indexed if verify else {})


def embed_missing(
    root: Path | str,
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
    recheck: dict[str, str] | None = None,
    cached: Callable[[set[str]], dict[str, FloatArray]] | None = None,
    work: Work | None = None,
) -> None:
    """Embed each distinct new content once, committing each forward pass.

    Each content is embedded from one of its files, read by a :class:`VerifiedReader`. When
    that file no longer holds the content it was hashed with, it is indexed with what it holds
    now, and the other files of the old content are embedded in a further round.

    Args:
        root: The indexed folder (or URI root).
        embedder: The model.
        todo: Files to index whose content has no cached vector, from :func:`hash_changed`.
        found: From :func:`scan`.
        rows: The indexed files by relative path (updated by ``commit``).
        report: Updated with what was embedded, added, updated, skipped and repaired.
        commit: Commits a :class:`Changes`.
        dim: Embedding size D the index holds.
        model_key: The index's model, named when the embeddings have the wrong size.
        batch_size: Distinct contents per forward pass and per transaction.
        progress: Show a progress bar on stderr (only when it is a terminal).
        recheck: Indexed files whose content has a cached vector to check (a verifying
            update): each content is embedded again, and a cached vector whose cosine with
            the new one is below :data:`VERIFY_COSINE` is replaced.
        cached: Looks up cached vectors by content hash (needed with ``recheck``).
        work: Where the files are read and embedded (``None``: :class:`LocalWork` of
            ``embedder``).

    Raises:
        IndexFolderError: If the model returns vectors of the wrong size.
        ValueError: If the model returns the wrong number of rows.
    """
    groups: dict[str, list[str]] = {}
    for rel, digest in [*todo.items(), *(recheck or {}).items()]:
        groups.setdefault(digest, []).append(rel)
    known = set((recheck or {}).values())
    stream = work or LocalWork(embedder)
    step = _Round(root, stream, found, rows, report, commit, known, cached, dim, model_key)
    bar = progress_bar(
        total=len(groups), unit="img", desc="indexing", progress=progress, leave=True
    )
    with bar:
        while groups:
            groups = step.run(groups, batch_size, bar)
    report.added.sort()
    report.updated.sort()
    report.repaired.sort()


@dataclass
class _Round:
    """One pass of :func:`embed_missing` over the contents left to embed."""

    root: Path | str
    work: Work
    found: Found
    rows: dict[str, FileRow]
    report: UpdateReport
    commit: Commit
    known: set[str]
    cached: Callable[[set[str]], dict[str, FloatArray]] | None
    dim: int
    model_key: str

    def run(self, groups: dict[str, list[str]], batch_size: int, bar: Any) -> dict[str, list[str]]:
        """Embed each group's content from its first file.

        Args:
            groups: ``{content hash: relative paths}`` to embed.
            batch_size: Contents per forward pass.
            bar: The progress bar.

        Returns:
            The groups to embed again, from their other files: those whose first file
            changed since it was hashed.
        """
        pending = list(groups)
        files = [str(resolve(self.root, groups[h][0])) for h in pending]
        position = {name: i for i, name in enumerate(files)}
        chunks = self.work.embed_stream(files, batch_size)
        again: dict[str, list[str]] = {}
        try:
            for chunk, read_info in chunks:
                vectors, failures = checked_vectors(chunk, dim=self.dim, model_key=self.model_key)
                done = sorted({*chunk.indices, *(position[name] for name, _ in chunk.failures)})
                stored = self._stored({pending[i] for i in done})
                changes = Changes()
                for i in done:  # in input order, as the files were listed
                    name, digest = files[i], pending[i]
                    first, *others = groups[digest]
                    read = read_info.get(name)
                    if read is None or read[0] != digest:  # changed since hashed, or unreadable
                        if others:
                            again[digest] = others
                        self._changed(changes, first, read, vectors.get(name), failures.get(name))
                    elif name in failures:
                        self._skip(changes, groups[digest], failures[name])
                    else:
                        self._embedded(changes, digest, groups[digest], vectors[name], stored)
                self.commit(changes)
                bar.update(len(done))
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:  # a generator: stop its decode threads or Ray pipeline
                close()
        bar.total += len(again)
        return again

    def _stored(self, digests: set[str]) -> dict[str, FloatArray]:
        """The cached vectors of those contents that are checked (a verifying update)."""
        checked = digests & self.known
        return self.cached(checked) if checked and self.cached is not None else {}

    def _embedded(
        self,
        changes: Changes,
        digest: str,
        members: list[str],
        vector: FloatArray,
        stored: dict[str, FloatArray],
    ) -> None:
        """Index a content's files with its fresh vector (or check its cached one)."""
        self.report.embedded += 1
        if digest in self.known:
            old = stored.get(digest)
            if old is not None and float(np.dot(old, vector)) >= VERIFY_COSINE:
                return
            changes.replace.add(digest)
            self.report.repaired += members
        else:
            self.report.reused_from_cache += len(members) - 1
            for rel in members:
                (self.report.updated if rel in self.rows else self.report.added).append(rel)
        changes.vectors[digest] = vector
        changes.upserts += [(rel, *self.found[rel], digest) for rel in members]

    def _skip(self, changes: Changes, members: list[str], reason: str) -> None:
        """Files whose content cannot be embedded: reported, and dropped if indexed."""
        self.report.skipped += [(rel, reason) for rel in members]
        changes.deletes += [rel for rel in members if rel in self.rows]

    def _changed(
        self,
        changes: Changes,
        rel: str,
        read: tuple[str, int] | None,
        vector: FloatArray | None,
        reason: str | None,
    ) -> None:
        """A file that no longer holds the content it was hashed with: index what it holds.

        Stored with modification time ``-1``, so the next update hashes it again.
        """
        if read is None or vector is None:
            self._skip(changes, [rel], reason or "cannot read file")
            return
        digest, size = read
        self.report.embedded += 1
        (self.report.updated if rel in self.rows else self.report.added).append(rel)
        changes.vectors[digest] = vector
        changes.upserts.append((rel, size, -1, digest))


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
