"""A pair head from a head file, on an inference engine: :func:`attach_head`.

``lookalike compare --model MODEL --head FILE`` and the Python API use it the same way: load
the model's engine with :func:`~lookalike.inference.load_embedder`, then attach the head a
browser (or Python) trained for it. The head file (:mod:`lookalike.model.head_file`) records
the model key it was trained on; an engine with another key refuses it. The ONNX engine runs
the head in NumPy and never imports torch.
"""

from __future__ import annotations

import os

from lookalike.errors import ModelFolderError
from lookalike.inference.embedder import BaseEmbedder
from lookalike.inference.onnx_engine import NumpyPairHead, OnnxEmbedder
from lookalike.inference.torch_engine import TorchEmbedder
from lookalike.model.head_file import HeadFile, read_head_file

__all__ = ["attach_head"]


def attach_head(embedder: BaseEmbedder, head: HeadFile | str | os.PathLike[str]) -> BaseEmbedder:
    """Give an engine the pair head of a head file, and its P(same) threshold.

    Afterwards ``embedder.pair_probability`` answers from this head (replacing the model's own,
    if it had one) and :func:`~lookalike.inference.compare` decides by
    ``thresholds["probability"]``.

    Args:
        embedder: An engine from :func:`~lookalike.inference.load_embedder` (it is changed in
            place; its ``key`` must be the head file's model key).
        head: A :class:`~lookalike.model.head_file.HeadFile` or the path of one.

    Returns:
        ``embedder``.

    Raises:
        ModelFolderError: An unreadable head file, one trained for another model (another
            key, or a model without a key), or one for another embedding size.
        TypeError: An engine that is neither ONNX Runtime nor torch.
    """
    head_file = head if isinstance(head, HeadFile) else read_head_file(head)
    head_file.check_key(embedder.key, what=f"model {embedder.name}")
    if head_file.embedding_dim != embedder.embedding_dim:
        raise ModelFolderError(
            f"the head compares {head_file.embedding_dim}-d embeddings; {embedder.name} makes "
            f"{embedder.embedding_dim}-d ones"
        )
    if isinstance(embedder, OnnxEmbedder):
        embedder.head = NumpyPairHead(head_file.layers())
    elif isinstance(embedder, TorchEmbedder):
        head_file.attach_to(embedder.model, key=embedder.key)
    else:
        raise TypeError(f"cannot attach a head to {type(embedder).__name__}")
    embedder.thresholds["probability"] = head_file.threshold
    return embedder
