"""What the endpoint modules share: the request dependencies, the upload fields, the
documented image errors and the model-sized upload read.

Both :mod:`lookalike.server.routes` and :mod:`lookalike.server.training_routes` import
from here, so neither imports the other.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, File, Request, UploadFile

from lookalike.server.schemas import ErrorResponse
from lookalike.server.state import ServerState
from lookalike.server.uploads import Upload, read_image

__all__ = [
    "IMAGE_ERRORS",
    "ImageA",
    "ImageB",
    "LimitDep",
    "StateDep",
    "get_state",
    "get_upload_limit",
    "read_for_model",
]


def get_state(request: Request) -> ServerState:
    """The server state the app was created with."""
    state: ServerState = request.app.state.lookalike
    return state


def get_upload_limit(request: Request) -> int:
    """The per-image upload limit in bytes."""
    limit: int = request.app.state.max_upload_bytes
    return limit


StateDep = Annotated[ServerState, Depends(get_state)]
LimitDep = Annotated[int, Depends(get_upload_limit)]
ImageA = Annotated[UploadFile, File(description="Image A")]
ImageB = Annotated[UploadFile, File(description="Image B")]

IMAGE_ERRORS: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorResponse, "description": "Empty upload or bad request"},
    413: {"model": ErrorResponse, "description": "Upload (bytes or pixels) over the limit"},
    415: {"model": ErrorResponse, "description": "Not an image"},
    422: {"model": ErrorResponse, "description": "Missing field or undecodable image"},
    503: {"model": ErrorResponse, "description": "Busy: too many image requests at once"},
}
"""The error responses of an endpoint that reads uploaded images (for the OpenAPI schema)."""


def read_for_model(state: ServerState, upload: UploadFile, field: str, limit: int) -> Upload:
    """Read an upload that is only needed at the model's input size (fast JPEG draft)."""
    height, width = state.model.preprocess.input_size
    return read_image(upload, field, limit, draft_size=(width, height))
