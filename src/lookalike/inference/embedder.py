"""What an inference engine is: the :class:`Embedder` protocol and the shared batching.

:class:`Embedder` is the one embedder contract: everything that embeds images takes it —
comparing (:mod:`lookalike.inference.comparison`), embedding many files
(:func:`lookalike.inference.pipeline.embed_files`), :meth:`lookalike.index.index.Index.update`,
dedup calibration and the command line. It embeds images to float32 (N, D) rows
(``embed``), gives P(same) from the pair head (``pair_probability``), and knows the
``preprocess`` the model expects, its calibrated ``thresholds`` and its ``embedding_dim``.
:class:`~lookalike.model.network.SiameseModel` satisfies it as it is; the engines derive from
:class:`BaseEmbedder`, which adds ``name``, ``engine``, ``device`` and the cache ``key``.
:data:`EmbedBatch` is the shape of one forward pass (:meth:`BaseEmbedder.embed_batch`), which
the server's micro-batcher calls.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from lookalike.imaging.images import ImageSource
from lookalike.imaging.preprocess import Preprocess
from lookalike.model.domain import DomainRecord

__all__ = ["BaseEmbedder", "EmbedBatch", "Embedder"]

EmbedBatch = Callable[[np.ndarray], np.ndarray]
"""One forward pass: a preprocessed float32 batch (N, C, H, W) to float32 embeddings (N, D)."""


@runtime_checkable
class Embedder(Protocol):
    """Anything that embeds images: the two engines and :class:`SiameseModel`.

    The one contract for a model at inference time; a stand-in (a test double, a remote
    model) needs these five members and nothing else.
    """

    @property
    def preprocess(self) -> Preprocess:
        """How images become model inputs."""

    @property
    def thresholds(self) -> dict[str, float]:
        """Calibrated decision thresholds, e.g. ``{"cosine": 0.8}`` (empty when uncalibrated)."""

    @property
    def embedding_dim(self) -> int:
        """Size D of the embeddings."""

    def embed(
        self, images: Sequence[ImageSource] | np.ndarray, *, batch_size: int = 32
    ) -> np.ndarray:
        """Embed images (sources, or a preprocessed float array (N, C, H, W)) to (N, D)."""

    def pair_probability(self, emb_a: np.ndarray, emb_b: np.ndarray) -> np.ndarray | None:
        """P(same) (N,) for embedding pairs (N, D), (N, D); ``None`` without a pair head."""


class BaseEmbedder(ABC):
    """Shared batching for the engines: subclasses implement :meth:`embed_batch`.

    Attributes:
        name: What model this is (a folder path or a backbone name).
        engine: ``"torch"`` or ``"onnx"``.
        device: Where it runs (``"cpu"``, ``"cuda:0"``, ...).
        key: The model's cache key (:mod:`lookalike.inference.export`), ``None`` when it has none.
        domain: Statistics of the model's training embeddings (from its card), ``None`` when
            unknown; :func:`lookalike.inference.domain.domain_warnings` reads it.
        preprocess, thresholds, embedding_dim: As in :class:`Embedder`.
    """

    engine: str = ""
    domain: DomainRecord | None = None

    def __init__(
        self,
        *,
        name: str,
        preprocess: Preprocess,
        embedding_dim: int,
        thresholds: Mapping[str, float] | None = None,
        device: str = "cpu",
        key: str | None = None,
    ) -> None:
        self.name = name
        self.preprocess = preprocess
        self.embedding_dim = int(embedding_dim)
        self.thresholds = {k: float(v) for k, v in (thresholds or {}).items()}
        self.device = device
        self.key = key

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, device={self.device!r})"

    @abstractmethod
    def embed_batch(self, batch: np.ndarray) -> np.ndarray:
        """Embed one preprocessed batch.

        Args:
            batch: float32 (N, C, H, W), as made by :meth:`Preprocess.batch`.

        Returns:
            float32 (N, D).
        """

    @abstractmethod
    def pair_probability(self, emb_a: np.ndarray, emb_b: np.ndarray) -> np.ndarray | None:
        """P(same) (N,) for embedding pairs (N, D), (N, D); ``None`` without a pair head."""

    def _batches(
        self, images: Sequence[ImageSource] | np.ndarray, batch_size: int
    ) -> Iterator[np.ndarray]:
        if isinstance(images, np.ndarray) and images.ndim == 4:
            for start in range(0, len(images), batch_size):
                yield np.ascontiguousarray(images[start : start + batch_size], dtype=np.float32)
            return
        items = list(images)
        for start in range(0, len(items), batch_size):
            yield self.preprocess.batch(items[start : start + batch_size])

    def embed(
        self, images: Sequence[ImageSource] | np.ndarray, *, batch_size: int = 32
    ) -> np.ndarray:
        """Embed images.

        Args:
            images: Paths, bytes, PIL images or HWC arrays (opened with
                :func:`lookalike.imaging.images.load_image`), or a preprocessed float array
                (N, C, H, W). For many files with unreadable ones among them, use
                :func:`lookalike.inference.pipeline.embed_files` (parallel decoding, skips
                bad files).
            batch_size: Images per forward pass.

        Returns:
            float32 (N, D); unit rows when the model normalises.

        Raises:
            ValueError: ``batch_size`` is smaller than 1.
            ImageError: An image cannot be read (the message names it).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        chunks = [self.embed_batch(batch) for batch in self._batches(images, batch_size)]
        if not chunks:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        return np.concatenate(chunks).astype(np.float32, copy=False)
