"""Where a model comes from: a model folder, or a registry backbone plus options.

:class:`ModelSource` is the one description of "which model" that the command line, the
server and an index's own record share. It is torch-free and round-trips through JSON, so an
index can store the source it was built with (inside its writer lock) and ``search``,
``dedup`` and ``serve`` can find the same model again without being told.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lookalike.errors import LookalikeError

__all__ = ["DEFAULT_BACKBONE", "ModelSource"]

DEFAULT_BACKBONE = "mobilenet_v2"
"""The backbone used when neither a folder nor a backbone is named."""


@dataclass(frozen=True)
class ModelSource:
    """A model folder, or a registry backbone with its options.

    Attributes:
        folder: A model folder (``config.json`` + ``model.safetensors``), stored as an
            absolute path; exclusive with ``backbone``.
        backbone: A registry backbone name (``None`` with no folder: the default backbone).
        pretrained: Load the backbone's pretrained weights (``None``: its default).
        weights: An explicit pretrained weights file (absolute path).
        image_size: Override the model's input size (pixels, square).

    Raises:
        LookalikeError: Both a folder and a backbone, or a non-positive ``image_size``.
    """

    folder: str | None = None
    backbone: str | None = None
    pretrained: bool | None = None
    weights: str | None = None
    image_size: int | None = None

    def __post_init__(self) -> None:
        if self.folder is not None and self.backbone is not None:
            raise LookalikeError("give either a model folder or a backbone, not both")
        if self.image_size is not None and self.image_size < 1:
            raise LookalikeError(f"--image-size must be positive, got {self.image_size}")
        for name in ("folder", "weights"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, str(Path(value).absolute()))

    @classmethod
    def of(cls, value: ModelSource | str | os.PathLike[str] | None) -> ModelSource:
        """A source from a source, a model folder path, or ``None`` (the default backbone)."""
        if isinstance(value, ModelSource):
            return value
        return cls(folder=None if value is None else os.fspath(value))

    @property
    def backbone_name(self) -> str:
        """The registry backbone built when there is no folder."""
        return self.backbone or DEFAULT_BACKBONE

    def describe(self) -> str:
        """The source in words, for messages (``model folder /a/b`` or ``backbone x``)."""
        if self.folder is not None:
            text = f"the model folder {self.folder}"
        else:
            weights = "random weights" if self.pretrained is False else "pretrained weights"
            text = f"the {self.backbone_name} backbone with {weights}"
            if self.weights:
                text += f" from {self.weights}"
        if self.image_size:
            text += f" at {self.image_size} px"
        return text

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSource:
        """Inverse of :meth:`to_dict`.

        Raises:
            LookalikeError: Unknown or malformed fields.
        """
        known = {"folder", "backbone", "pretrained", "weights", "image_size"}
        if not isinstance(data, dict) or set(data) - known:
            raise LookalikeError(f"not a model source: {data!r}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise LookalikeError(f"not a model source: {data!r} ({exc})") from exc

    def to_json(self) -> str:
        """The source as one JSON object."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelSource:
        """Inverse of :meth:`to_json`.

        Raises:
            LookalikeError: Not JSON, or not a source.
        """
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LookalikeError(f"not a model source: {exc}") from exc
        return cls.from_dict(data)
