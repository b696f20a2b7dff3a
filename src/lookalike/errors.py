"""Exceptions raised by lookalike.

Every exception a user can cause derives from :class:`LookalikeError`, carries a
message that names the cause and the fix, and is turned by the command line into
one line on stderr and exit code 2.
"""

from __future__ import annotations

from pathlib import Path


class LookalikeError(Exception):
    """Base class of every error lookalike raises on purpose."""


class ImageError(LookalikeError):
    """An image could not be opened or decoded.

    Attributes:
        source: A printable name of the image (its path, or ``"<bytes>"`` /
            ``"<array>"`` / ``"<PIL image>"`` for in-memory input).
        cause: What went wrong, in words.
    """

    def __init__(self, source: str | Path, cause: str) -> None:
        self.source = str(source)
        self.cause = cause
        super().__init__(f"cannot read image {self.source}: {cause}")


class WeightsError(LookalikeError):
    """Pretrained weights could not be found, downloaded or verified."""


class BackboneError(LookalikeError):
    """An unknown backbone name or an invalid backbone configuration."""


class ModelFolderError(LookalikeError):
    """A model folder is missing, incomplete, or of an unknown format."""


class DataError(LookalikeError):
    """Input data (CSV files, folders of images) is malformed or unusable."""


class IndexFolderError(LookalikeError):
    """An index folder is missing, damaged, locked by another update, or was built with a
    different model than the one in use."""


class ExportError(LookalikeError):
    """A model could not be exported to ONNX (an unsupported operation, or a missing package)."""


class ImageTooLargeError(ImageError):
    """An image is refused for its size, read from its header before any pixel is decoded.

    The cause names the limit: too many pixels (decompression-bomb guard), too extreme an
    aspect ratio, or too many decoded bytes (width × height × bands × bytes per sample). A
    server answers it with 413; the other :class:`ImageError` cases mean the data is not a
    (readable) image.

    Attributes:
        source: As for :class:`ImageError`.
        cause: As for :class:`ImageError`.
        limit: Which limit was exceeded: ``"pixels"``, ``"aspect"`` or ``"bytes"``.
    """

    def __init__(self, source: str | Path, cause: str, *, limit: str) -> None:
        super().__init__(source, cause)
        self.limit = limit


def first_line(exc: BaseException) -> str:
    """An exception's message on one line: its first line (a library's ``message`` attribute
    when it has one, as pymilvus's do), else the exception's type name. For wording another
    library's failure inside one :class:`LookalikeError` line."""
    text = str(getattr(exc, "message", "") or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
