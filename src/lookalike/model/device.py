"""Device and thread choice: CUDA when present, else CPU, unless the user says otherwise."""

from __future__ import annotations

import torch

from lookalike._limits import check_threads
from lookalike.errors import LookalikeError


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """Pick the device to run on.

    Args:
        device: ``None`` or ``"auto"`` (CUDA if available, else CPU), or any torch device string.

    Returns:
        The device.

    Raises:
        LookalikeError: A CUDA device was asked for but none is available, or the string is invalid.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise LookalikeError(f"invalid device {device!r}: use auto, cpu, cuda or cuda:N") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise LookalikeError(f"device {device!r} requested but CUDA is not available; use cpu")
    return resolved


def set_threads(threads: int | None) -> None:
    """Set the number of CPU threads torch uses (``None`` leaves the default).

    Raises:
        LookalikeError: ``threads`` is not from 1 to :func:`lookalike._limits.max_threads`
            (checked before torch sees it).
    """
    if threads is None:
        return
    check_threads(threads)
    torch.set_num_threads(threads)
