"""The FastAPI application of ``lookalike serve``: the API, the page, and the API docs.

Everything the browser loads comes from this server (no CDN, no external fonts): the page
is ``static/index.html`` + ``app.js`` + ``app.css``, and ``/docs`` is a small page that
renders ``/openapi.json`` itself instead of FastAPI's CDN-hosted Swagger UI.

Errors always reach the client as JSON ``{"detail": "message"}``: validation errors are
turned into one readable line, library errors keep their message (with the server's paths
rewritten out of it: :mod:`lookalike.server.redact`), and anything unexpected becomes a
generic 500 (the traceback goes to the server log only).

Before any endpoint, three ASGI guards run, outermost first: who may ask
(:class:`~lookalike.server.guard.RequestGuard`: Host allow-list, Origin check, token), how
many heavy requests run at once (:class:`~lookalike.server.limits.BusyLimit`) and how large
a body may be (:class:`~lookalike.server.uploads.BodyLimit`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from lookalike._version import __version__
from lookalike.errors import ImageError, LookalikeError
from lookalike.inference.source import ModelSource
from lookalike.model.network import SiameseModel
from lookalike.server.guard import AccessPolicy, RequestGuard
from lookalike.server.limits import BusyLimit, ServeLimits
from lookalike.server.pairs_store import PairStoreFullError
from lookalike.server.routes import router
from lookalike.server.state import ServerState, load_served_model
from lookalike.server.training_routes import router as training_router
from lookalike.server.uploads import BodyLimit, is_size_error

log = logging.getLogger("lookalike.server")

STATIC_DIR = Path(__file__).resolve().parent / "static"
DEFAULT_DATA_DIR = "lookalike-data"
DEFAULT_MAX_UPLOAD_BYTES = 20 * 2**20

_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def create_app(
    source: ModelSource | str | os.PathLike[str] | None = None,
    index_dir: str | os.PathLike[str] | None = None,
    data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    *,
    model: SiameseModel | None = None,
    reference_backbone: bool | None = None,
    device: str | None = None,
    engine: str = "auto",
    threads: int | None = None,
    access: AccessPolicy | None = None,
    limits: ServeLimits | None = None,
) -> FastAPI:
    """Build the web app.

    Args:
        source: The model to serve: a :class:`~lookalike.inference.ModelSource` or a model
            folder; ``None`` serves the model ``index_dir`` was built with, else the default
            pretrained backbone.
        index_dir: An index folder (``lookalike.index.index``) for image search, or ``None``.
        data_dir: Where labelled pairs and the trained head are kept (created).
        max_upload_bytes: Largest accepted image upload.
        model: An in-memory model to serve instead of ``source``.
        reference_backbone: For ``model``: whether its backbone is an unchanged pretrained
            one, so downloads reference it by name and sha256 instead of storing it.
            ``None``: only for a model fresh from :meth:`SiameseModel.create` (pretrained
            weights, no provenance yet).
        device: ``None``/``"auto"``, ``"cpu"`` or ``"cuda"``.
        engine: What embeds request images: ``"auto"`` (ONNX Runtime on CPU when
            available, else torch), ``"torch"`` or ``"onnx"``. Training and explanations
            always use the torch model.
        threads: ONNX Runtime intra-op threads (``None``: its default).
        access: Who may talk to the server (default: loopback host names, no token).
        limits: Heavy requests at once and the pair store's size (the connection limits
            in it are applied by :func:`lookalike.server.runner.make_config`).

    Returns:
        The application (run it with uvicorn).

    Raises:
        ModelFolderError, WeightsError, IndexFolderError: The model or index cannot be loaded.
        LookalikeError: An unknown ``engine``, or ``"onnx"`` where it cannot run.
        ValueError: ``max_upload_bytes`` is not positive, or both ``model`` and ``source``.
    """
    if max_upload_bytes < 1:
        raise ValueError(f"max_upload_bytes must be positive, got {max_upload_bytes}")
    if model is not None and source is not None:
        raise ValueError("give model or source, not both")
    served_source: ModelSource | None = None
    if model is None:
        if source is None and index_dir is not None and Path(index_dir).is_dir():
            from lookalike.index.index import Index

            served_source = Index.recorded_source(index_dir)
        served_source = served_source or ModelSource.of(source)
        served, name, reference = load_served_model(served_source, device)
    else:
        served, name = model, model.backbone_name
        fresh = model.weights_sha256 is not None and not model.provenance
        reference = fresh if reference_backbone is None else reference_backbone
    state = ServerState(
        served,
        name=name,
        reference_backbone=reference,
        source=served_source,
        data_dir=data_dir,
        index_dir=index_dir,
        engine=engine,
        threads=threads,
        limits=limits,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        state.close()

    app = FastAPI(
        title="lookalike",
        version=__version__,
        description="Image similarity with Siamese networks: compare, explain, search, "
        "label pairs and train a pair head.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.lookalike = state
    app.state.max_upload_bytes = max_upload_bytes
    app.include_router(router)
    app.include_router(training_router)
    _add_error_handlers(app)
    _add_pages(app)

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", _CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if request.url.path.startswith("/api/") and "cache-control" not in response.headers:
            response.headers["Cache-Control"] = "no-store"
        return response

    # The last added runs first: the guard refuses strangers before anything is read.
    app.add_middleware(BodyLimit, max_file_bytes=max_upload_bytes)
    app.add_middleware(BusyLimit, limits=limits or ServeLimits())
    app.add_middleware(RequestGuard, policy=access or AccessPolicy())
    return app


def _add_pages(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    @app.get("/docs", include_in_schema=False)
    def docs() -> FileResponse:
        return FileResponse(STATIC_DIR / "docs.html", media_type="text/html")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml")


def _add_error_handlers(app: FastAPI) -> None:
    state: ServerState = app.state.lookalike

    def _error(status: int, detail: str) -> JSONResponse:
        return JSONResponse({"detail": state.redact(detail)}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        response = _error(exc.status_code, detail)
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, describe_validation(exc))

    @app.exception_handler(LookalikeError)
    async def lookalike_error(_: Request, exc: LookalikeError) -> JSONResponse:
        if is_size_error(exc):
            status = 413
        elif isinstance(exc, PairStoreFullError):
            status = 409
        elif isinstance(exc, ImageError):
            status = 422
        else:
            status = 400  # DataError and the rest: the request asked for what cannot be
        return _error(status, str(exc))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return _error(500, "internal server error (the details are in the server log)")


def describe_validation(exc: RequestValidationError) -> str:
    """One line naming each bad or missing field, e.g. ``missing field 'b'``."""
    parts = []
    for error in exc.errors():
        loc = [str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path", "form")]
        field = ".".join(loc) or "request"
        if error.get("type") == "missing":
            parts.append(f"missing field {field!r}")
        else:
            parts.append(f"{field}: {error.get('msg', 'invalid value')}")
    return "; ".join(parts) or "invalid request"
