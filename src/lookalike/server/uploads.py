"""Uploaded images: size limits enforced while the body arrives, content checked by decoding.

Two guards, both answering 413 with a message:

* :class:`BodyLimit` (ASGI middleware) refuses a request whose ``Content-Length`` is too
  large before reading it, and stops reading a body (chunked or lying about its length)
  the moment it grows past the limit, so an oversized upload is never spooled whole.
* :func:`read_image` reads each file part in chunks and stops past the per-file limit.

An upload counts as an image only when :func:`lookalike.imaging.images.load_image` decodes it:
the file name and the declared content type are never trusted.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import HTTPException, UploadFile
from PIL import Image

from lookalike.errors import ImageError, ImageTooLargeError
from lookalike.imaging.images import load_image
from lookalike.server.asgi import send_json

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_PIXELS = 64_000_000
"""Largest width × height the server decodes (a 64-megapixel photo)."""

_CHUNK = 1 << 20
_MULTIPART_SLACK = 64 * 1024


def _too_large(limit: int) -> HTTPException:
    return HTTPException(
        status_code=413,
        detail=f"upload too large: the limit is {limit / 2**20:.3g} MB per image "
        "(lookalike serve --max-upload-mb)",
    )


class BodyLimit:
    """ASGI middleware capping request bodies at ``files × max_file_bytes`` (plus form slack).

    Args:
        app: The wrapped application.
        max_file_bytes: The per-image limit.
        files: Most images one request carries.
    """

    def __init__(self, app: ASGIApp, *, max_file_bytes: int, files: int = 2) -> None:
        self.app = app
        self.max_file_bytes = max_file_bytes
        self.limit = files * max_file_bytes + _MULTIPART_SLACK

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, counting the body it reads."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", []):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.limit:
                    await _send_413(send, self.max_file_bytes)
                    return
        received = 0
        exceeded = False

        async def counted() -> Message:
            # Past the limit the app is told the client went away, so it stops reading.
            nonlocal received, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    exceeded = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            if not exceeded:  # the app's own answer to the cut-off body is replaced
                await send(message)

        try:
            await self.app(scope, counted, guarded)
        except Exception:
            if not exceeded:
                raise
        if exceeded:
            await _send_413(send, self.max_file_bytes)


async def _send_413(send: Send, limit: int) -> None:
    detail = str(_too_large(limit).detail)
    await send_json(send, 413, detail, [(b"connection", b"close")])


@dataclass(frozen=True)
class Upload:
    """A decoded upload.

    Attributes:
        data: The bytes as uploaded.
        name: The client's file name (display only).
        format: The format found by decoding (``"PNG"``, ``"JPEG"``, ...).
        image: The decoded image (8-bit RGB or L, EXIF orientation applied).
    """

    data: bytes
    name: str
    format: str
    image: Image.Image


def read_image(
    upload: UploadFile,
    field: str,
    max_bytes: int,
    *,
    draft_size: tuple[int, int] | None = None,
) -> Upload:
    """Read one uploaded file and decode it.

    Args:
        upload: The multipart file part.
        field: The form field's name (for messages).
        max_bytes: The per-image limit.
        draft_size: ``(width, height)`` the image is needed at: a JPEG is then decoded at a
            reduced scale no smaller than that (much faster for phone photos; the whole
            file is still read and checked).

    Raises:
        HTTPException: 413 too large (bytes, or pixels: see :func:`is_size_error`), 400
            empty, 415 not an image, 422 corrupt or truncated.
    """
    buffer = bytearray()
    while chunk := upload.file.read(_CHUNK):
        buffer += chunk
        if len(buffer) > max_bytes:
            raise _too_large(max_bytes)
    data = bytes(buffer)
    name = upload.filename or field
    if not data:
        raise HTTPException(status_code=400, detail=f"{field} ({name}) is an empty file")
    try:
        image = load_image(data, max_pixels=MAX_PIXELS, draft_size=draft_size)
    except MemoryError as exc:
        raise HTTPException(
            status_code=413, detail=f"{field} ({name}) is too large to decode in memory"
        ) from exc
    except ImageError as exc:
        if is_size_error(exc):
            raise HTTPException(
                status_code=413, detail=f"{field} ({name}) is too large: {exc.cause}"
            ) from exc
        if _opens(data):
            raise HTTPException(
                status_code=422,
                detail=f"{field} ({name}) cannot be decoded: {exc.cause}",
            ) from exc
        raise HTTPException(
            status_code=415,
            detail=f"{field} ({name}) is not an image lookalike can read "
            "(PNG, JPEG, GIF, WebP, BMP, TIFF, ...)",
        ) from exc
    return Upload(data, name, _format(data), image)


def is_size_error(exc: BaseException) -> bool:
    """Whether a library error refuses an image for its size (answered 413, not 415/422):
    the pixel-count, aspect-ratio or decoded-size guard of
    :func:`lookalike.imaging.images.load_image` (:class:`ImageTooLargeError`)."""
    return isinstance(exc, ImageTooLargeError)


def _opens(data: bytes) -> bool:
    """Whether Pillow recognises the header (an image format), whatever the pixels hold."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)):
                return True
    except Exception:
        return False


def _format(data: bytes) -> str:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as probe:
                return str(probe.format or "")
    except Exception:
        return ""
