"""FAISS structures for the persistent index: which kind, how to build, search and store one.

The vectors are unit rows, so the inner product is the cosine similarity; every structure
here uses ``METRIC_INNER_PRODUCT`` and every id is a 64-bit integer chosen by the caller.

Four kinds:

* ``"flat"`` — ``IndexIDMap2`` over ``IndexFlatIP``: exact search, removal supported. The
  default below :attr:`VectorIndexConfig.ivf_threshold` vectors.
* ``"ivf"`` — ``IndexIVFFlat`` with ``nlist ≈ 4·√N`` lists (at most ``N / 39``, so k-means has
  the 39 points per centroid FAISS asks for), trained on a seeded sample; a query scans
  ``nprobe`` lists. It stores the caller's ids itself and supports removal, so an index that
  changes with the folder can be updated in place. The default from
  :attr:`VectorIndexConfig.ivf_threshold` vectors up to the SQ8 threshold.
* ``"ivf_sq8"`` — ``IndexIVFScalarQuantizer``: inverted lists (``nlist ≈ 2·√N``, see
  :func:`ivf_nlist`) whose vectors are stored as one byte per dimension (FAISS ``QT_8bit``:
  a trained minimum and range per dimension, 256 levels; not by residual, so a code is the
  vector itself), a quarter of float32: 1.28 GB instead of 5.1 GB for a million
  1,280-dimensional vectors. Ids and removal as for ``"ivf"``. The default from
  :attr:`VectorIndexConfig.sq8_threshold` vectors (see :data:`DEFAULT_SQ8_THRESHOLD`).
* ``"hnsw"`` — ``IndexIDMap2`` over ``IndexHNSWFlat``: fast, but FAISS cannot remove from an
  HNSW graph, so any removal or change rebuilds it from scratch. Only on request.

Every structure is a derived artefact: the SQLite database of :mod:`lookalike.index.index` is the
source of truth and can rebuild it at any time. Files are written atomically (a temporary file,
``fsync``, ``os.replace``) under a name that carries the database generation they reflect and
a digest of their bytes, so a stale, half-written or damaged file is never used.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, BinaryIO, Literal

import numpy as np
import numpy.typing as npt

from lookalike._io import atomic_write_stream, blake2b_file
from lookalike.errors import IndexFolderError

__all__ = [
    "DEFAULT_IVF_THRESHOLD",
    "DEFAULT_SQ8_THRESHOLD",
    "KINDS",
    "VectorIndexConfig",
    "add",
    "build",
    "create",
    "default_nprobe",
    "fits",
    "is_file_of",
    "ivf_nlist",
    "kind_of",
    "range_search",
    "read_file",
    "remove",
    "remove_files",
    "require_faiss",
    "search",
    "training_size",
    "write_file",
]

Kind = Literal["flat", "ivf", "ivf_sq8", "hnsw"]
KINDS: tuple[str, ...] = ("auto", "flat", "ivf", "ivf_sq8", "hnsw")
DEFAULT_IVF_THRESHOLD: int = 50_000
"""With ``kind="auto"``, collections of at least this many vectors use IVF, smaller ones flat."""
DEFAULT_SQ8_THRESHOLD: int = 200_000
"""With ``kind="auto"``, collections of at least this many vectors use IVF-SQ8.

200,000 vectors of the default model's 1,280 dimensions are 1 GB as float32, 250 MB as SQ8.
On a million clustered vectors (``benchmarks/bench_million.py``, BENCHMARKS.md) SQ8 cost
about 1 % of recall@10 in an exhaustive scan against float32, and IVF-SQ8 answered a query in
1.2 ms at recall@10 0.96 with the default ``nprobe``.
"""

_FILE_RE = re.compile(r"^vectors-(?P<generation>[0-9a-z]+)-(?P<digest>[0-9a-f]{32})\.faiss$")
_MIN_POINTS_PER_LIST = 39  # FAISS warns below this many training points per centroid.
_MAX_TRAIN_PER_LIST = 256  # and subsamples above this many.
_IO_BLOCK = 1 << 22  # bytes per read or write of a vector file
_TMP_PREFIX = ".vectors.tmp-"  # temporary files, deleted by remove_files
_SQ8_TRAIN_PER_LIST = 128  # IVF-SQ8 (large collections): k-means time grows as nlist · sample.

FloatArray = npt.NDArray[np.float32]
IdArray = npt.NDArray[np.int64]


def require_faiss() -> ModuleType:
    """Import FAISS, or explain how to install it.

    Returns:
        The ``faiss`` module.

    Raises:
        IndexFolderError: If FAISS is not installed.
    """
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - faiss is installed wherever tests run
        raise IndexFolderError(
            "the image index needs FAISS: pip install 'lookalike[index]' (faiss-cpu)"
        ) from exc
    return faiss


@dataclass(frozen=True)
class VectorIndexConfig:
    """How the FAISS structure is chosen and searched (stored in the index's meta table).

    Attributes:
        kind: ``"auto"`` (flat below ``ivf_threshold`` vectors, IVF from there, IVF-SQ8 from
            ``sq8_threshold``), ``"flat"``, ``"ivf"``, ``"ivf_sq8"`` or ``"hnsw"``.
        ivf_threshold: Vector count from which ``"auto"`` switches to IVF.
        sq8_threshold: Vector count from which ``"auto"`` switches to IVF-SQ8.
        nprobe: IVF lists scanned per query; ``None`` for :func:`default_nprobe`.
        hnsw_m: HNSW graph degree.
        ef_search: HNSW search breadth (raised to ``k`` when ``k`` is larger).
    """

    kind: str = "auto"
    ivf_threshold: int = DEFAULT_IVF_THRESHOLD
    sq8_threshold: int = DEFAULT_SQ8_THRESHOLD
    nprobe: int | None = None
    hnsw_m: int = 32
    ef_search: int = 64

    def __post_init__(self) -> None:
        """Validate the fields.

        Raises:
            ValueError: If a field is out of range.
        """
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.ivf_threshold < 1 or self.sq8_threshold < 1:
            raise ValueError(
                "ivf_threshold and sq8_threshold must be positive, not "
                f"{self.ivf_threshold} and {self.sq8_threshold}"
            )
        if self.nprobe is not None and self.nprobe < 1:
            raise ValueError(f"nprobe must be positive or None, not {self.nprobe}")
        if self.hnsw_m < 4 or self.ef_search < 1:
            raise ValueError("hnsw_m must be at least 4 and ef_search at least 1")

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-serialisable dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VectorIndexConfig:
        """Rebuild a config from :meth:`to_dict`'s output (unknown keys are ignored)."""
        fields = ("kind", "ivf_threshold", "sq8_threshold", "nprobe", "hnsw_m", "ef_search")
        return cls(**{k: data[k] for k in fields if k in data})

    def resolve(self, n: int) -> Kind:
        """The concrete kind for ``n`` vectors (an empty IVF is flat: it cannot be trained).

        Args:
            n: Number of vectors.

        Returns:
            ``"flat"``, ``"ivf"``, ``"ivf_sq8"`` or ``"hnsw"``.
        """
        if self.kind == "hnsw":
            return "hnsw"
        if n == 0 or self.kind == "flat":
            return "flat"
        if self.kind == "ivf_sq8" or (self.kind == "auto" and n >= self.sq8_threshold):
            return "ivf_sq8"
        if self.kind == "ivf" or n >= self.ivf_threshold:
            return "ivf"
        return "flat"


def ivf_nlist(n: int, kind: str = "ivf") -> int:
    """Number of IVF lists for ``n`` vectors: at most ``n / 39``, at least 1.

    ``"ivf"``: about ``4·√n``. ``"ivf_sq8"``: about ``2·√n``. A query pays for the coarse
    quantiser (``nlist`` float32 centroids) and for ``nprobe`` lists of ``n / nlist`` codes;
    the two balance at ``nlist ≈ √(nprobe · n · code bytes / (4·D))``, and SQ8 codes are a
    quarter of float32, so half as many lists (2,000 for a million vectors: 10 MB of
    centroids, about 0.4 ms a query on 2 cores, where 4,000 took 0.9 ms of a 2 ms budget).

    Args:
        n: Number of vectors.
        kind: ``"ivf"`` or ``"ivf_sq8"``.

    Returns:
        The list count.
    """
    per_sqrt = 2 if kind == "ivf_sq8" else 4
    return max(1, min(round(per_sqrt * math.sqrt(n)), n // _MIN_POINTS_PER_LIST))


def default_nprobe(nlist: int, kind: str = "ivf") -> int:
    """IVF lists scanned per query by default.

    ``"ivf"``: an eighth of them, at least 8 (or all). ``"ivf_sq8"``, for large collections
    where a query must stay fast: one in 256, at least 8 — 8 of the 2,000 lists of a million
    vectors, where ``benchmarks/bench_million.py`` measured recall@10 0.96 at a p50 latency of
    1.2 ms (one query per call, 2 cores; BENCHMARKS.md).

    Args:
        nlist: The structure's list count.
        kind: ``"ivf"`` or ``"ivf_sq8"``.

    Returns:
        The number of lists, at most ``nlist``.
    """
    share = 256 if kind == "ivf_sq8" else 8
    return min(nlist, max(8, math.ceil(nlist / share)))


def kind_of(index: Any) -> Kind:
    """The kind of a structure built by :func:`build`."""
    faiss = require_faiss()
    if isinstance(index, faiss.IndexIVFScalarQuantizer):
        return "ivf_sq8"
    if isinstance(index, faiss.IndexIVF):
        return "ivf"
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap2) else index
    return "hnsw" if isinstance(inner, faiss.IndexHNSW) else "flat"


def build(
    ids: IdArray, vectors: FloatArray, dim: int, config: VectorIndexConfig, *, seed: int = 0
) -> Any:
    """Build a FAISS structure holding ``vectors`` under ``ids``.

    Args:
        ids: Ids (N,), int64, distinct.
        vectors: Unit rows (N, dim), float32.
        dim: Embedding size D.
        config: Which kind (resolved for N with :meth:`VectorIndexConfig.resolve`).
        seed: Seed of the IVF training sample.

    Returns:
        The FAISS index.
    """
    n = len(ids)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(n, dim)
    size = training_size(n, config)
    sample = vectors if size else None
    if 0 < size < n:
        sample = vectors[np.sort(np.random.default_rng(seed).choice(n, size, replace=False))]
    index = create(n, dim, config, sample)
    add(index, ids, vectors)
    return index


def training_size(n: int, config: VectorIndexConfig) -> int:
    """How many of ``n`` vectors :func:`create` wants as its training sample (0: none).

    IVF trains k-means on at most 256 vectors per list, IVF-SQ8 on at most 128: at a million
    vectors, 2,000 lists, 256,000 vectors (1.3 GB as float32), about 1.5 minutes on 2 cores.
    Fewer hurt: with 64 per list, k-means on a million clustered vectors
    (``benchmarks/bench_million.py``: 20,000 clusters, 10 per list) saw 6 points of each and
    split the clusters across lists, and recall@10 at ``nprobe`` 8 fell from 0.97 to 0.90.

    Args:
        n: The number of vectors the structure is for.
        config: Which kind.

    Returns:
        The sample size, at most ``n``.
    """
    kind = config.resolve(n)
    if kind not in ("ivf", "ivf_sq8"):
        return 0
    per_list = _SQ8_TRAIN_PER_LIST if kind == "ivf_sq8" else _MAX_TRAIN_PER_LIST
    return min(n, ivf_nlist(n, kind) * per_list)


def create(n: int, dim: int, config: VectorIndexConfig, sample: FloatArray | None = None) -> Any:
    """An empty structure of the kind for ``n`` vectors, trained and ready for :func:`add`.

    For large collections that do not fit in memory as float32, train on a sample (size from
    :func:`training_size`, drawn evenly from the collection) and add the vectors in chunks.

    Args:
        n: The number of vectors it will hold (chooses the kind and the IVF list count).
        dim: Embedding size D.
        config: Which kind.
        sample: Training vectors (S, D), unit rows, float32; required by the IVF kinds.

    Returns:
        The empty FAISS index.

    Raises:
        ValueError: If an IVF kind has no sample, or fewer rows than lists.
    """
    faiss = require_faiss()
    kind = config.resolve(n)
    if kind in ("ivf", "ivf_sq8"):
        nlist = ivf_nlist(n, kind)
        if sample is None or len(sample) < nlist:
            raise ValueError(f"an IVF structure of {nlist} lists needs at least {nlist} samples")
        storage = "SQ8" if kind == "ivf_sq8" else "Flat"
        index = faiss.index_factory(dim, f"IVF{nlist},{storage}", faiss.METRIC_INNER_PRODUCT)
        if kind == "ivf_sq8":
            index.by_residual = False  # a code is the vector itself (vector_pairs decodes it)
        index.train(np.ascontiguousarray(sample, dtype=np.float32).reshape(-1, dim))
    elif kind == "hnsw":
        index = faiss.index_factory(
            dim, f"IDMap2,HNSW{config.hnsw_m},Flat", faiss.METRIC_INNER_PRODUCT
        )
    else:
        index = faiss.index_factory(dim, "IDMap2,Flat", faiss.METRIC_INNER_PRODUCT)
    return index


def fits(index: Any, n: int, config: VectorIndexConfig) -> bool:
    """Whether a structure still suits ``n`` vectors, or should be rebuilt.

    It does not when the kind for ``n`` changed (``"auto"`` crossing its threshold) or an IVF's
    list count is more than twice off :func:`ivf_nlist` (the collection grew or shrank about
    fourfold since it was trained).

    Args:
        index: A structure from :func:`build`.
        n: The number of vectors it holds or will hold.
        config: The index's configuration.

    Returns:
        True when it can be kept.
    """
    kind = kind_of(index)
    if kind != config.resolve(n):
        return False
    if kind in ("ivf", "ivf_sq8"):
        nlist = int(require_faiss().extract_index_ivf(index).nlist)
        ideal = ivf_nlist(n, kind)
        return ideal <= 2 * nlist and nlist <= 2 * ideal
    return True


def add(index: Any, ids: IdArray, vectors: FloatArray) -> None:
    """Add vectors (N, D) under ids (N,)."""
    if len(ids):
        index.add_with_ids(
            np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64)
        )


def remove(index: Any, ids: IdArray) -> bool:
    """Remove ids from a structure.

    Args:
        index: A structure from :func:`build`.
        ids: The ids to remove (absent ones are ignored).

    Returns:
        False when the structure cannot remove (HNSW) and must be rebuilt instead.
    """
    if not len(ids):
        return True
    if kind_of(index) == "hnsw":
        return False
    index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64))
    return True


def search(
    index: Any, queries: FloatArray, k: int, config: VectorIndexConfig
) -> tuple[FloatArray, IdArray]:
    """The ``k`` best inner products of each query.

    When ``k`` is at least the number of vectors the search is exhaustive for every kind (IVF
    probes all lists, HNSW is replaced by a brute-force scan), so every vector is returned.

    Args:
        index: A structure from :func:`build`.
        queries: Unit rows (Q, D), float32.
        k: Results per query, at least 1.
        config: Search settings (``nprobe``, ``ef_search``).

    Returns:
        ``(scores, ids)``, both (Q, min(k, N)); approximate kinds may leave some places at
        score ``-inf`` and id ``-1``, which callers drop.
    """
    faiss = require_faiss()
    n = int(index.ntotal)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    kk = min(k, n)
    if kk == 0:
        return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
    kind = kind_of(index)
    if kind in ("ivf", "ivf_sq8"):
        ivf = faiss.extract_index_ivf(index)
        ivf.nprobe = ivf.nlist if k >= n else (config.nprobe or default_nprobe(ivf.nlist, kind))
    elif kind == "hnsw":
        if k >= n:
            return _brute_force(index, queries, kk)
        faiss.downcast_index(index.index).hnsw.efSearch = max(config.ef_search, kk)
    scores, ids = index.search(queries, kk)
    return scores.astype(np.float32, copy=False), ids.astype(np.int64, copy=False)


def range_search(
    index: Any, queries: FloatArray, threshold: float, config: VectorIndexConfig
) -> tuple[IdArray, FloatArray, IdArray]:
    """Every stored vector with inner product at least ``threshold`` to each query.

    Args:
        index: A flat or IVF structure from :func:`build` (IVF scans ``nprobe`` lists, so it
            may miss some).
        queries: Unit rows (Q, D), float32.
        threshold: The smallest score returned.
        config: Search settings (``nprobe``).

    Returns:
        FAISS's ``(lims, scores, ids)``: the results of query i are
        ``scores[lims[i]:lims[i+1]]`` and ``ids[lims[i]:lims[i+1]]``.
    """
    faiss = require_faiss()
    kind = kind_of(index)
    if kind in ("ivf", "ivf_sq8"):
        ivf = faiss.extract_index_ivf(index)
        ivf.nprobe = config.nprobe or default_nprobe(ivf.nlist, kind)
    elif kind == "hnsw":
        faiss.downcast_index(index.index).hnsw.efSearch = config.ef_search
    radius = float(np.nextafter(np.float32(threshold), np.float32(-np.inf)))  # FAISS keeps > r
    lims, scores, ids = index.range_search(np.ascontiguousarray(queries, np.float32), radius)
    return lims.astype(np.int64), scores.astype(np.float32), ids.astype(np.int64)


def _brute_force(index: Any, queries: FloatArray, k: int) -> tuple[FloatArray, IdArray]:
    """Exact search over an ``IndexIDMap2``'s stored vectors."""
    faiss = require_faiss()
    inner = faiss.downcast_index(index.index)
    vectors = np.asarray(inner.reconstruct_n(0, int(index.ntotal)))  # numpy even if torch_utils
    ids = faiss.vector_to_array(index.id_map).astype(np.int64)
    scores, positions = faiss.knn(queries, vectors, k, metric=faiss.METRIC_INNER_PRODUCT)
    return scores.astype(np.float32), ids[positions]


# --------------------------------------------------------------------------- files


def write_file(index: Any, folder: Path, generation: str) -> Path:
    """Write a structure atomically as ``vectors-<generation>-<digest>.faiss``.

    The bytes are streamed (hashed on the way, never held in memory as a whole) to a
    temporary file in ``folder``, flushed to disk, and the file is then renamed into place, so
    the final name only ever holds a complete file.

    Args:
        index: The structure.
        folder: The index folder.
        generation: The database generation it reflects (letters and digits).

    Returns:
        The file written.
    """
    faiss = require_faiss()

    def write(fp: BinaryIO) -> str:
        hasher = hashlib.blake2b(digest_size=16)

        def sink(data: bytes) -> int:
            hasher.update(data)
            return fp.write(data)

        writer = faiss.PyCallbackIOWriter(sink, _IO_BLOCK)
        faiss.write_index(index, writer)
        del writer  # flushes
        return f"vectors-{generation}-{hasher.hexdigest()}.faiss"

    return atomic_write_stream(folder, write, prefix=_TMP_PREFIX)


def is_file_of(path: Path | None, generation: str) -> bool:
    """Whether ``path`` is a vector file written for ``generation``."""
    match = None if path is None else _FILE_RE.match(path.name)
    return match is not None and match["generation"] == generation


def read_file(folder: Path, generation: str) -> tuple[Any, Path] | None:
    """Read the structure written for ``generation``, if there is an intact one.

    The file's digest is checked first, reading it in blocks, and only an intact file is
    handed to FAISS, which then reads it once more: memory holds the structure, never also a
    copy of the file's bytes.

    Args:
        folder: The index folder.
        generation: The database generation wanted.

    Returns:
        The structure and its file, or ``None`` when no file for that generation exists or its
        bytes do not match the digest in its name (a damaged file).
    """
    faiss = require_faiss()
    for path in sorted(folder.glob(f"vectors-{generation}-*.faiss")):
        match = _FILE_RE.match(path.name)
        if match is None or match["generation"] != generation:
            continue
        try:
            digest = blake2b_file(path, digest_size=16, chunk=_IO_BLOCK)
        except OSError:
            continue
        if digest != match["digest"]:
            continue
        try:  # files are never changed once named, only deleted (then this fails)
            return faiss.read_index(str(path)), path
        except RuntimeError:
            continue
    return None


def remove_files(folder: Path, keep: Path | None) -> None:
    """Delete vector files and leftover temporary files other than ``keep``.

    Only a process holding the index's writer lock may call this.

    Args:
        folder: The index folder.
        keep: The current file, or ``None`` to delete them all.
    """
    for path in [*folder.glob("vectors-*.faiss"), *folder.glob(f"{_TMP_PREFIX}*")]:
        if keep is None or path.name != keep.name:
            path.unlink(missing_ok=True)
