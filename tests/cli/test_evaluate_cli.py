"""``lookalike eval``'s choice of data, through ``training.recipes.load_dataset``."""

from __future__ import annotations

import argparse
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lookalike.cli.evaluate import _data
from lookalike.data.labelled import LabelledImages
from lookalike.errors import DataError


def _args(**kw: Any) -> argparse.Namespace:
    return argparse.Namespace(**{"dataset": "folder", "data": None, "data_dir": None, **kw})


def test_eval_data_choices(tmp_path: Path) -> None:
    assert _data(_args()) is None  # pairs only
    with pytest.raises(DataError, match="--pairs"):
        _data(_args(data=str(tmp_path / "pairs.CSV")))
    with pytest.raises(DataError, match="--data-dir"):
        _data(_args(dataset="mnist"))
    digits = _data(_args(dataset="digits", data="ignored"))
    assert isinstance(digits, LabelledImages) and len(digits) == 1797

    # Only the test split's files: evaluation reads MNIST's t10k files, --data-dir first.
    idx = tmp_path / "idx"
    idx.mkdir()
    images = np.arange(3 * 4 * 4, dtype=np.uint8).reshape(3, 4, 4)
    for name, array, magic in (
        ("t10k-images-idx3-ubyte", images, 2051),
        ("t10k-labels-idx1-ubyte", np.array([0, 1, 2], np.uint8), 2049),
    ):
        header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
        (idx / name).write_bytes(header + array.tobytes())
    mnist = _data(_args(dataset="mnist", data_dir=str(idx), data=str(tmp_path / "other")))
    assert isinstance(mnist, LabelledImages) and len(mnist) == 3
