"""Training data: labelled images, splits, decoding, pairs, balanced batches, augmentation.

* :class:`LabelledImages` — image sources with identity labels, from an identity-folder
  layout, arrays, MNIST IDX files or scikit-learn's digits; :func:`split_by_identity`
  and :func:`split_by_image` split them.
* :func:`decode_all` — decode and resize once into a uint8 tensor; :func:`normalize`.
* :class:`PairList`, :func:`read_pairs_csv`, :func:`read_triplets_csv` — CSV input;
  :func:`make_pairs`, :func:`make_triplets` — draws from labels.
* :class:`ClassBalancedBatchSampler` — P identities × M images per batch.
* :class:`Augment`, :func:`augment_batch` — batched augmentation on any device.

Names are imported lazily, so the torch-free parts (labels, CSVs, pairs, the sampler)
can be used without importing torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lookalike._lazy import lazy_exports

if TYPE_CHECKING:
    from lookalike.data.augment import Augment, augment_batch
    from lookalike.data.decode import DecodedImages, decode_all, normalize
    from lookalike.data.labelled import LabelledImages
    from lookalike.data.mnist import DEFAULT_MIRROR, download_mnist
    from lookalike.data.pairs import (
        PairList,
        make_pairs,
        make_triplets,
        read_pairs_csv,
        read_triplets_csv,
    )
    from lookalike.data.sampler import ClassBalancedBatchSampler
    from lookalike.data.split import split_by_identity, split_by_image

_LAZY = {
    "Augment": "lookalike.data.augment",
    "augment_batch": "lookalike.data.augment",
    "DecodedImages": "lookalike.data.decode",
    "decode_all": "lookalike.data.decode",
    "normalize": "lookalike.data.decode",
    "LabelledImages": "lookalike.data.labelled",
    "DEFAULT_MIRROR": "lookalike.data.mnist",
    "download_mnist": "lookalike.data.mnist",
    "PairList": "lookalike.data.pairs",
    "make_pairs": "lookalike.data.pairs",
    "make_triplets": "lookalike.data.pairs",
    "read_pairs_csv": "lookalike.data.pairs",
    "read_triplets_csv": "lookalike.data.pairs",
    "ClassBalancedBatchSampler": "lookalike.data.sampler",
    "split_by_identity": "lookalike.data.split",
    "split_by_image": "lookalike.data.split",
}

__all__ = [
    "DEFAULT_MIRROR",
    "Augment",
    "ClassBalancedBatchSampler",
    "DecodedImages",
    "LabelledImages",
    "PairList",
    "augment_batch",
    "decode_all",
    "download_mnist",
    "make_pairs",
    "make_triplets",
    "normalize",
    "read_pairs_csv",
    "read_triplets_csv",
    "split_by_identity",
    "split_by_image",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
