"""Similarities and distances between embeddings: the one place they are computed.

Two owners live here beside them: :class:`Score` (the names of the three pair scores and which
way each one points) and :func:`unit_rows` (scaling embeddings to unit length), so no other
module re-encodes a score's direction or writes its own normaliser.

Two families live here:

* **NumPy functions** (:func:`cosine_similarity`, :func:`euclidean_distance`,
  :func:`cosine_similarity_matrix`, :func:`euclidean_distance_matrix`,
  :func:`l2_normalize`, :func:`cosine_to_euclidean`, :func:`euclidean_to_cosine`),
  used by the torch-free inference path (ONNX, search, de-duplication). This
  module therefore never imports torch at import time.
* **Distance objects** (:class:`CosineSimilarity`, :class:`EuclideanDistance`,
  built by :func:`get_distance`) in the style of pytorch-metric-learning: each
  knows whether a larger value means "closer" (:attr:`Distance.higher_is_closer`)
  and computes on torch tensors (differentiably, for the losses) and on NumPy
  arrays (through the functions above). torch is imported lazily inside the
  tensor methods.

Units: cosine similarity is dimensionless in ``[-1, 1]`` (1 = same direction);
Euclidean distance is in the units of the embedding coordinates, ``>= 0``. For
unit-length embeddings the two are tied by ``d = sqrt(2 - 2 cos)``.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar, Literal, overload

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from torch import Tensor

__all__ = [
    "EMBEDDING_SCORES",
    "CosineSimilarity",
    "Distance",
    "DistanceName",
    "EuclideanDistance",
    "Score",
    "cosine_similarity",
    "cosine_similarity_matrix",
    "cosine_to_euclidean",
    "euclidean_distance",
    "euclidean_distance_matrix",
    "euclidean_to_cosine",
    "get_distance",
    "l2_normalize",
    "unit_rows",
]

DistanceName = Literal["cosine", "euclidean"]
"""The names :func:`get_distance` accepts."""

Float32Array = npt.NDArray[np.float32]
Float64Array = npt.NDArray[np.float64]


class Score(str, Enum):
    """A same/different pair score, by the name the CLI, JSON reports and model folders use.

    Each member knows which way it points (:attr:`higher_is_same`), so code that thresholds or
    ranks scores asks it instead of testing for ``"euclidean"``. A member is a ``str``: it
    compares and hashes equal to its value (``Score.COSINE == "cosine"``), so it looks up and
    keys the string-keyed ``thresholds`` dicts directly, and ``str()``/f-strings give the value.

    Members:
        COSINE: ``"cosine"``, cosine similarity of two embeddings, in ``[-1, 1]``.
        EUCLIDEAN: ``"euclidean"``, Euclidean distance of two embeddings, ``>= 0``.
        PROBABILITY: ``"probability"``, the pair head's P(same), in ``[0, 1]``.
    """

    COSINE = "cosine"
    EUCLIDEAN = "euclidean"
    PROBABILITY = "probability"

    def __str__(self) -> str:
        return self.value

    @property
    def higher_is_same(self) -> bool:
        """True when a larger score means "more likely the same" (cosine, probability)."""
        return self is not Score.EUCLIDEAN

    def is_same(self, value: float, threshold: float) -> bool:
        """Whether ``value`` is on the "same" side of ``threshold`` (the threshold included)."""
        return bool(value >= threshold if self.higher_is_same else value <= threshold)

    @classmethod
    def parse(
        cls, name: str, *, among: Iterable[Score] | None = None, what: str = "score"
    ) -> Score:
        """The member whose value is ``name`` (a member is returned as it is).

        Args:
            name: ``"cosine"``, ``"euclidean"`` or ``"probability"``, or a member.
            among: The members accepted (default: all of them).
            what: What ``name`` names, for the error message (e.g. ``"metric"``).

        Returns:
            The member.

        Raises:
            ValueError: If ``name`` is not the value of one of ``among``; the message lists
                the accepted values.
        """
        choices = tuple(cls) if among is None else tuple(among)
        for score in choices:
            if name == score.value:
                return score
        *rest, last = [repr(score.value) for score in choices]
        listed = f"{', '.join(rest)} or {last}" if rest else last
        raise ValueError(f"{what} must be {listed}, got {name!r}")


EMBEDDING_SCORES: tuple[Score, ...] = (Score.COSINE, Score.EUCLIDEAN)
"""The scores computed from two embeddings alone (P(same) needs a pair head)."""

_NORM_EPS = 1e-12
"""Norms below this are treated as zero when normalising (zero vectors stay zero)."""

_NUMPY_REFINE_REL_TOL = 1e-10
"""Matrix entries with ``d² <= tol * (|a|² + |b|²)`` are recomputed exactly (float64)."""

_REFINE_CHUNK = 65536
"""How many (row, column) pairs are recomputed exactly at a time (bounds memory)."""


# --------------------------------------------------------------------------- numpy


def _paired_rows(
    a: npt.ArrayLike, b: npt.ArrayLike, fn: str
) -> tuple[Float64Array, Float64Array, bool]:
    """Validates paired inputs and returns them as float64 ``(N, D)`` arrays.

    Args:
        a: Array of shape ``(N, D)`` or ``(D,)``.
        b: Array of the same shape as ``a``.
        fn: The public function's name, for error messages.

    Returns:
        ``(a2, b2, single)``: float64 arrays of shape ``(N, D)`` (``N = 1`` for
        1-D input) and whether the input was a single 1-D vector.

    Raises:
        ValueError: If the shapes differ or are not 1-D/2-D.
    """
    a64 = np.asarray(a, dtype=np.float64)
    b64 = np.asarray(b, dtype=np.float64)
    if a64.shape != b64.shape:
        raise ValueError(
            f"{fn}: a and b must have the same shape, (N, D) or (D,), "
            f"got a.shape={a64.shape} and b.shape={b64.shape}; "
            "to compare every row of a with every row of b use the *_matrix function"
        )
    if a64.ndim not in (1, 2):
        raise ValueError(f"{fn}: expected arrays of shape (N, D) or (D,), got shape {a64.shape}")
    single = a64.ndim == 1
    if single:
        a64 = a64.reshape(1, -1)
        b64 = b64.reshape(1, -1)
    return a64, b64, single


def _matrix_inputs(
    a: npt.ArrayLike, b: npt.ArrayLike, fn: str
) -> tuple[Float64Array, Float64Array]:
    """Validates ``(N, D)`` and ``(M, D)`` inputs and returns them as float64.

    Args:
        a: Array of shape ``(N, D)``.
        b: Array of shape ``(M, D)``.
        fn: The public function's name, for error messages.

    Returns:
        The two arrays as float64.

    Raises:
        ValueError: If either is not 2-D or their last dimensions differ.
    """
    a64 = np.asarray(a, dtype=np.float64)
    b64 = np.asarray(b, dtype=np.float64)
    if a64.ndim != 2 or b64.ndim != 2:
        raise ValueError(
            f"{fn}: a and b must be 2-D, (N, D) and (M, D), got a.shape={a64.shape} "
            f"and b.shape={b64.shape}; reshape a single vector with x.reshape(1, -1)"
        )
    if a64.shape[1] != b64.shape[1]:
        raise ValueError(
            f"{fn}: a and b must have the same embedding size D, got "
            f"a.shape={a64.shape} and b.shape={b64.shape}"
        )
    return a64, b64


@overload
def unit_rows(x: Float64Array, *, eps: float = ...) -> Float64Array: ...
@overload
def unit_rows(x: npt.ArrayLike, *, eps: float = ...) -> Float32Array: ...
def unit_rows(x: npt.ArrayLike, *, eps: float = _NORM_EPS) -> npt.NDArray[Any]:
    """Scales each row to unit Euclidean length; the library's one row normaliser.

    Each row is divided by ``max(|row|, eps)``: a zero row stays zero (never NaN), and so
    does its similarity to anything. The norms are summed in float64 and the division is
    done in the output dtype, so a float32 input never has a float64 copy. A row holding an
    infinity or NaN comes out NaN (without a warning); callers that must refuse such rows
    check ``np.isfinite`` on the result.

    Args:
        x: Embeddings of shape ``(N, D)``. float64 stays float64; any other dtype (float32,
            float16, integers) is converted to float32.
        eps: Smallest norm divided by; must be > 0. Rows with a smaller, non-zero norm come
            out shorter than 1.

    Returns:
        A new C-contiguous array of shape ``(N, D)``, float32 (float64 for float64 input).

    Raises:
        ValueError: If ``x`` is not 2-D or ``eps`` is not > 0.
    """
    if not eps > 0:
        raise ValueError(f"unit_rows: eps must be > 0, got {eps!r}")
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(
            f"unit_rows: expected an array of shape (N, D), got shape {arr.shape}; "
            "reshape a single vector with x.reshape(1, -1)"
        )
    dtype = np.float64 if arr.dtype == np.float64 else np.float32
    arr = arr.astype(dtype, copy=False)
    norms = np.sqrt(np.einsum("nd,nd->n", arr, arr, dtype=np.float64))
    with np.errstate(invalid="ignore"):  # inf / inf: a non-finite row becomes NaN
        out = arr / np.maximum(norms, eps).astype(dtype)[:, None]
    return np.ascontiguousarray(out)


def l2_normalize(x: npt.ArrayLike, axis: int = -1, eps: float = 1e-12) -> npt.NDArray[Any]:
    """Scales vectors to unit Euclidean length.

    Computed in float64; vectors with norm below ``eps`` are divided by ``eps``
    instead, so a zero vector stays zero (never NaN).

    Args:
        x: Array of any shape; the vectors run along ``axis``.
        axis: The axis holding the vector components (default: the last).
        eps: Smallest norm divided by; must be > 0.

    Returns:
        An array of the shape of ``x``, of ``x``'s dtype if it is a float
        dtype, otherwise float64.

    Raises:
        ValueError: If ``eps`` is not > 0.
    """
    if not eps > 0:
        raise ValueError(f"l2_normalize: eps must be > 0, got {eps!r}")
    arr = np.asarray(x)
    out_dtype = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.dtype(np.float64)
    x64 = arr.astype(np.float64, copy=False)
    norms = np.sqrt(np.sum(x64 * x64, axis=axis, keepdims=True))
    result: npt.NDArray[Any] = (x64 / np.maximum(norms, eps)).astype(out_dtype, copy=False)
    return result


def cosine_similarity(a: npt.ArrayLike, b: npt.ArrayLike) -> Float32Array | float:
    """Cosine similarity of paired rows: row ``i`` of ``a`` with row ``i`` of ``b``.

    Inputs need not be normalised; they are normalised in float64. A zero vector
    has similarity 0 with everything (never NaN). Results are clipped to
    ``[-1, 1]``.

    Args:
        a: Embeddings of shape ``(N, D)`` or a single vector ``(D,)``.
        b: Embeddings of the same shape as ``a``.

    Returns:
        Similarities (dimensionless, in ``[-1, 1]``, higher = closer): a float32
        array of shape ``(N,)`` for 2-D input, a Python ``float`` for 1-D input.

    Raises:
        ValueError: If the shapes differ (both shapes are in the message) or the
            inputs are not 1-D/2-D.
    """
    a64, b64, single = _paired_rows(a, b, "cosine_similarity")
    sims: Float64Array = np.clip(np.einsum("nd,nd->n", unit_rows(a64), unit_rows(b64)), -1.0, 1.0)
    if single:
        return float(sims[0])
    return sims.astype(np.float32)


def euclidean_distance(a: npt.ArrayLike, b: npt.ArrayLike) -> Float32Array | float:
    """Euclidean distance of paired rows: row ``i`` of ``a`` to row ``i`` of ``b``.

    Computed in float64 from the differences, so identical rows give exactly 0.

    Args:
        a: Embeddings of shape ``(N, D)`` or a single vector ``(D,)``.
        b: Embeddings of the same shape as ``a``.

    Returns:
        Distances (units of the embedding coordinates, ``>= 0``, lower = closer):
        a float32 array of shape ``(N,)`` for 2-D input, a Python ``float`` for
        1-D input.

    Raises:
        ValueError: If the shapes differ (both shapes are in the message) or the
            inputs are not 1-D/2-D.
    """
    a64, b64, single = _paired_rows(a, b, "euclidean_distance")
    diff = a64 - b64
    dists: Float64Array = np.sqrt(np.einsum("nd,nd->n", diff, diff))
    if single:
        return float(dists[0])
    return dists.astype(np.float32)


def cosine_similarity_matrix(a: npt.ArrayLike, b: npt.ArrayLike) -> Float32Array:
    """Cosine similarity of every row of ``a`` with every row of ``b``.

    Inputs are normalised in float64 (zero rows give similarity 0, never NaN);
    results are clipped to ``[-1, 1]``.

    Args:
        a: Embeddings of shape ``(N, D)``.
        b: Embeddings of shape ``(M, D)``.

    Returns:
        A float32 array of shape ``(N, M)``; entry ``[i, j]`` is the similarity
        (dimensionless, in ``[-1, 1]``) of ``a[i]`` and ``b[j]``.

    Raises:
        ValueError: If an input is not 2-D or the embedding sizes differ.
    """
    a64, b64 = _matrix_inputs(a, b, "cosine_similarity_matrix")
    sims = np.clip(unit_rows(a64) @ unit_rows(b64).T, -1.0, 1.0)
    return sims.astype(np.float32)


def euclidean_distance_matrix(a: npt.ArrayLike, b: npt.ArrayLike) -> Float32Array:
    """Euclidean distance between every row of ``a`` and every row of ``b``.

    Uses ``|a|² + |b|² - 2 a·b`` in float64 on inputs centred on their common
    mean, clamped at 0 before the square root. Entries that come out small
    relative to the norms (where that expansion loses precision) are recomputed
    exactly from the differences, so identical rows give exactly 0.

    Args:
        a: Embeddings of shape ``(N, D)``.
        b: Embeddings of shape ``(M, D)``.

    Returns:
        A float32 array of shape ``(N, M)``; entry ``[i, j]`` is the distance
        (units of the embedding coordinates, ``>= 0``) from ``a[i]`` to ``b[j]``.

    Raises:
        ValueError: If an input is not 2-D or the embedding sizes differ.
    """
    a64, b64 = _matrix_inputs(a, b, "euclidean_distance_matrix")
    # Distances do not change under a common shift; centring shrinks the norms
    # and with them the rounding error of the expansion below.
    centre = (a64.sum(axis=0) + b64.sum(axis=0)) / max(a64.shape[0] + b64.shape[0], 1)
    a64 = a64 - centre
    b64 = b64 - centre
    aa = np.einsum("nd,nd->n", a64, a64)
    bb = np.einsum("md,md->m", b64, b64)
    scale = aa[:, None] + bb[None, :]
    sq = scale - 2.0 * (a64 @ b64.T)
    np.maximum(sq, 0.0, out=sq)
    rows, cols = np.nonzero(sq <= _NUMPY_REFINE_REL_TOL * scale)
    for start in range(0, rows.size, _REFINE_CHUNK):
        r = rows[start : start + _REFINE_CHUNK]
        c = cols[start : start + _REFINE_CHUNK]
        diff = a64[r] - b64[c]
        sq[r, c] = np.einsum("kd,kd->k", diff, diff)
    dists: Float64Array = np.sqrt(sq)
    return dists.astype(np.float32)


def cosine_to_euclidean(cos: npt.ArrayLike) -> npt.NDArray[Any] | float:
    """Converts cosine similarity of unit vectors to their Euclidean distance.

    ``d = sqrt(max(0, 2 - 2 cos))``; valid only for unit-length embeddings.

    Args:
        cos: Cosine similarities (dimensionless, ``[-1, 1]``), any shape.

    Returns:
        Distances in ``[0, 2]`` (units of unit-vector coordinates), of the
        shape of ``cos``: a ``float`` for scalar input, otherwise an array of
        ``cos``'s float dtype (float64 for non-float input).
    """
    arr = np.asarray(cos)
    x64 = arr.astype(np.float64, copy=False)
    out = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * x64))
    return _like_input(out, arr)


def euclidean_to_cosine(d: npt.ArrayLike) -> npt.NDArray[Any] | float:
    """Converts Euclidean distance between unit vectors to their cosine similarity.

    ``cos = 1 - d² / 2``; valid only for unit-length embeddings, where ``d`` is in
    ``[0, 2]`` (inverse of :func:`cosine_to_euclidean` there).

    Args:
        d: Distances between unit vectors, any shape.

    Returns:
        Cosine similarities of the shape of ``d``: a ``float`` for scalar input,
        otherwise an array of ``d``'s float dtype (float64 for non-float input).
    """
    arr = np.asarray(d)
    x64 = arr.astype(np.float64, copy=False)
    out = 1.0 - x64 * x64 / 2.0
    return _like_input(out, arr)


def _like_input(out: Float64Array, arr: npt.NDArray[Any]) -> npt.NDArray[Any] | float:
    """Returns ``out`` as a float for 0-d input, else cast to ``arr``'s float dtype."""
    if arr.ndim == 0:
        return float(out)
    dtype = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.dtype(np.float64)
    result: npt.NDArray[Any] = out.astype(dtype, copy=False)
    return result


# --------------------------------------------------------------------------- torch


def _check_pairwise_tensors(a: Tensor, b: Tensor, who: str) -> None:
    """Raises ValueError unless ``a`` and ``b`` are both ``(N, D)`` of one shape."""
    if a.ndim != 2 or tuple(a.shape) != tuple(b.shape):
        raise ValueError(
            f"{who}.pairwise: a and b must both have shape (N, D), got "
            f"a.shape={tuple(a.shape)} and b.shape={tuple(b.shape)}; "
            "to compare every row of a with every row of b use matrix()"
        )


def _check_matrix_tensors(a: Tensor, b: Tensor, who: str) -> None:
    """Raises ValueError unless ``a`` is ``(N, D)`` and ``b`` is ``(M, D)``."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(
            f"{who}.matrix: a and b must have shapes (N, D) and (M, D), got "
            f"a.shape={tuple(a.shape)} and b.shape={tuple(b.shape)}"
        )


@contextlib.contextmanager
def _full_precision(a: Tensor, b: Tensor) -> Iterator[tuple[Tensor, Tensor]]:
    """Yields ``a`` and ``b`` in one floating dtype of at least 32 bits, autocast off.

    16-bit and integer inputs are computed in float32: in float16 the ``eps``
    terms underflow (NaN gradients at identical or zero vectors) and the
    ``|a|² + |b|² - 2 a·b`` expansion is far too imprecise. Autocast is disabled
    so that it cannot send the matrix products back to 16 bits.
    """
    import torch

    dtype = torch.promote_types(a.dtype, b.dtype)
    if not dtype.is_floating_point or torch.finfo(dtype).bits < 32:
        dtype = torch.float32
    device_type = a.device.type
    guard: contextlib.AbstractContextManager[object] = (
        torch.autocast(device_type=device_type, enabled=False)
        if device_type in ("cpu", "cuda")
        else contextlib.nullcontext()
    )
    with guard:
        yield a.to(dtype), b.to(dtype)


class Distance(ABC):
    """A similarity or distance between embeddings, on torch tensors and NumPy arrays.

    As in pytorch-metric-learning, a distance object says which direction is
    "closer": :attr:`higher_is_closer` is True for similarities (cosine) and
    False for true distances (Euclidean). Code that ranks or thresholds should
    use it rather than assume one direction.

    Tensor methods are differentiable and keep the input's device; they compute
    in the input's dtype, except that 16-bit (and integer) inputs are computed
    and returned in float32, with autocast disabled inside (mixed-precision
    training stays finite and accurate). NumPy methods compute in float64 and
    return float32 (see the module-level functions).

    Attributes:
        name: The short name :func:`get_distance` accepts.
        higher_is_closer: Whether a larger value means more similar.
    """

    name: ClassVar[str]
    higher_is_closer: ClassVar[bool]

    def pairwise(self, a: Tensor, b: Tensor) -> Tensor:
        """Compares row ``i`` of ``a`` with row ``i`` of ``b``.

        Args:
            a: Embeddings, shape ``(N, D)``.
            b: Embeddings, shape ``(N, D)``.

        Returns:
            Tensor of shape ``(N,)`` (float32 for 16-bit inputs).

        Raises:
            ValueError: If the shapes are not both ``(N, D)`` and equal.
        """
        _check_pairwise_tensors(a, b, type(self).__name__)
        with _full_precision(a, b) as (a_, b_):
            return self._pairwise(a_, b_)

    def matrix(self, a: Tensor, b: Tensor) -> Tensor:
        """Compares every row of ``a`` with every row of ``b``.

        Args:
            a: Embeddings, shape ``(N, D)``.
            b: Embeddings, shape ``(M, D)``.

        Returns:
            Tensor of shape ``(N, M)`` (float32 for 16-bit inputs); entry ``[i, j]``
            compares ``a[i]`` and ``b[j]``.

        Raises:
            ValueError: If the inputs are not 2-D with the same ``D``.
        """
        _check_matrix_tensors(a, b, type(self).__name__)
        with _full_precision(a, b) as (a_, b_):
            return self._matrix(a_, b_)

    @abstractmethod
    def _pairwise(self, a: Tensor, b: Tensor) -> Tensor:
        """Computes :meth:`pairwise` on validated ``(N, D)`` inputs."""

    @abstractmethod
    def _matrix(self, a: Tensor, b: Tensor) -> Tensor:
        """Computes :meth:`matrix` on validated ``(N, D)``, ``(M, D)`` inputs."""

    @abstractmethod
    def numpy_pairwise(self, a: npt.ArrayLike, b: npt.ArrayLike) -> Float32Array | float:
        """NumPy version of :meth:`pairwise`.

        Args:
            a: Embeddings, shape ``(N, D)`` or ``(D,)``.
            b: Embeddings of the same shape as ``a``.

        Returns:
            Float32 array of shape ``(N,)``, or a ``float`` for 1-D input.

        Raises:
            ValueError: If the shapes differ.
        """

    @abstractmethod
    def numpy_matrix(self, a: npt.ArrayLike, b: npt.ArrayLike) -> Float32Array:
        """NumPy version of :meth:`matrix`.

        Args:
            a: Embeddings, shape ``(N, D)``.
            b: Embeddings, shape ``(M, D)``.

        Returns:
            Float32 array of shape ``(N, M)``.

        Raises:
            ValueError: If the inputs are not 2-D with the same ``D``.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class CosineSimilarity(Distance):
    """Cosine similarity (dimensionless, ``[-1, 1]``, higher = closer).

    Inputs are L2-normalised first (zero vectors give 0, never NaN). The tensor
    methods are not clipped, so rounding can put values up to ~1e-7 outside
    ``[-1, 1]``; the NumPy methods clip.
    """

    name: ClassVar[str] = "cosine"
    higher_is_closer: ClassVar[bool] = True

    def _pairwise(self, a: Tensor, b: Tensor) -> Tensor:
        import torch.nn.functional as F

        return (F.normalize(a, dim=1, eps=_NORM_EPS) * F.normalize(b, dim=1, eps=_NORM_EPS)).sum(
            dim=1
        )

    def _matrix(self, a: Tensor, b: Tensor) -> Tensor:
        import torch.nn.functional as F

        return F.normalize(a, dim=1, eps=_NORM_EPS) @ F.normalize(b, dim=1, eps=_NORM_EPS).T

    def numpy_pairwise(self, a: npt.ArrayLike, b: npt.ArrayLike) -> Float32Array | float:
        return cosine_similarity(a, b)

    def numpy_matrix(self, a: npt.ArrayLike, b: npt.ArrayLike) -> Float32Array:
        return cosine_similarity_matrix(a, b)


class EuclideanDistance(Distance):
    """Euclidean (L2) distance (units of the embedding coordinates, lower = closer).

    The tensor methods return ``sqrt(max(d², 0) + eps)``, differentiable
    everywhere: the gradient at identical inputs is finite (zero), and the value
    there is ``sqrt(eps)`` (1e-6 for the default), not exactly 0. The NumPy
    methods return the exact distance (0 for identical rows).

    :meth:`matrix` uses ``|a|² + |b|² - 2 a·b`` on inputs centred on their
    common mean (which keeps the rounding error small for embeddings far from
    the origin) and recomputes entries that are small relative to the norms
    exactly from the differences (this needs one host synchronisation on GPU),
    so near-duplicate pairs are accurate.

    Args:
        eps: Added under the square root of the tensor methods; must be in
            ``(0, 1e-6]`` so that identical inputs give at most 1e-3.

    Raises:
        ValueError: If ``eps`` is outside ``(0, 1e-6]``.
    """

    name: ClassVar[str] = "euclidean"
    higher_is_closer: ClassVar[bool] = False

    def __init__(self, eps: float = 1e-12) -> None:
        if not 0.0 < eps <= 1e-6:
            raise ValueError(
                f"EuclideanDistance: eps must be in (0, 1e-6] (it is added under the square "
                f"root; 0 makes the gradient at identical inputs NaN), got {eps!r}"
            )
        self.eps = float(eps)

    def _pairwise(self, a: Tensor, b: Tensor) -> Tensor:
        diff = a - b
        sq = (diff * diff).sum(dim=1)
        return (sq + self.eps).sqrt()

    def _matrix(self, a: Tensor, b: Tensor) -> Tensor:
        import torch

        # Distances do not change under a common shift; centring shrinks the
        # norms and with them the rounding error of the expansion below.
        with torch.no_grad():
            centre = (a.sum(dim=0) + b.sum(dim=0)) / max(a.shape[0] + b.shape[0], 1)
        a = a - centre
        b = b - centre
        aa = (a * a).sum(dim=1)
        bb = (b * b).sum(dim=1)
        scale = aa[:, None] + bb[None, :]
        sq = (scale - 2.0 * (a @ b.T)).clamp_min(0.0)
        # Where d² is small relative to the norms the expansion above loses its
        # precision (cancellation); recompute those entries from the differences.
        # Every entry the clamp touched is recomputed too, so no gradient is lost.
        tol = min(1e3 * torch.finfo(sq.dtype).eps, 1e-2)
        rows, cols = torch.nonzero(sq <= tol * scale.detach(), as_tuple=True)
        if rows.numel() > 0:
            diff = a[rows] - b[cols]
            sq = sq.index_put((rows, cols), (diff * diff).sum(dim=1))
        return (sq + self.eps).sqrt()

    def numpy_pairwise(self, a: npt.ArrayLike, b: npt.ArrayLike) -> Float32Array | float:
        return euclidean_distance(a, b)

    def numpy_matrix(self, a: npt.ArrayLike, b: npt.ArrayLike) -> Float32Array:
        return euclidean_distance_matrix(a, b)

    def __repr__(self) -> str:
        return f"EuclideanDistance(eps={self.eps!r})"


_DISTANCES: dict[str, type[Distance]] = {
    CosineSimilarity.name: CosineSimilarity,
    EuclideanDistance.name: EuclideanDistance,
}


def get_distance(name: DistanceName) -> Distance:
    """Builds a distance object from its name.

    Args:
        name: ``"cosine"`` (:class:`CosineSimilarity`, higher = closer) or
            ``"euclidean"`` (:class:`EuclideanDistance`, lower = closer).

    Returns:
        A new distance object with default settings.

    Raises:
        ValueError: If ``name`` is unknown; the message lists the valid names.
    """
    cls = _DISTANCES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"unknown distance {name!r}; use one of: {', '.join(sorted(_DISTANCES))}")
    return cls()
