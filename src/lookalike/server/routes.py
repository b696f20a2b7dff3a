"""The REST endpoints of ``lookalike serve`` that look at images: health, compare, explain,
search (all under ``/api``; pairs, training and the download are in
:mod:`lookalike.server.training_routes`; the dependencies both share are in
:mod:`lookalike.server.deps`).

Every endpoint is a plain ``def``: FastAPI runs it in its threadpool, so slow work (decoding,
inference, training set-up) never blocks the event loop. Inference goes through the
state's :class:`~lookalike.server.batcher.EmbedBatcher`.
"""

from __future__ import annotations

import logging
from typing import Annotated
from urllib.parse import quote

import numpy as np
from fastapi import APIRouter, File, Form, HTTPException, Query, UploadFile
from fastapi.responses import Response

from lookalike._version import __version__
from lookalike.errors import ImageError, LookalikeError
from lookalike.imaging.files import shown_path
from lookalike.imaging.images import load_image
from lookalike.inference.comparison import decide
from lookalike.inference.domain import domain_warnings
from lookalike.metrics.distances import cosine_similarity, euclidean_distance
from lookalike.model.network import SiameseModel
from lookalike.server import render
from lookalike.server.deps import IMAGE_ERRORS, ImageA, ImageB, LimitDep, StateDep, read_for_model
from lookalike.server.schemas import (
    CompareResponse,
    ErrorResponse,
    ExplainResponse,
    Health,
    Heatmap,
    SearchHit,
    SearchResponse,
)
from lookalike.server.search import IndexService
from lookalike.server.state import ServerState
from lookalike.server.uploads import MAX_PIXELS, Upload, read_image

log = logging.getLogger("lookalike.server")

router = APIRouter(prefix="/api")

SMALL_MODEL_PIXELS = 64 * 64


def _scores(model: SiameseModel, emb: np.ndarray) -> CompareResponse:
    cos = float(cosine_similarity(emb[0], emb[1]))
    dist = float(euclidean_distance(emb[0], emb[1]))
    prob_array = model.pair_probability(emb[:1], emb[1:])
    prob = None if prob_array is None else float(prob_array[0])
    same, threshold, metric = decide(model, cos, dist, prob)
    scores = CompareResponse(
        cosine=cos, euclidean=dist, probability=prob, same=same, threshold=threshold, metric=metric
    )
    return scores.model_copy(
        update={"warnings": domain_warnings(model, emb, ["image a", "image b"])}
    )


def _embed(state: ServerState, model: SiameseModel, *uploads: Upload) -> np.ndarray:
    arrays = np.stack([model.preprocess.image_to_array(u.image) for u in uploads])
    return state.batcher.embed(arrays)


@router.get("/health", response_model=Health, summary="What the server runs")
def health(state: StateDep, limit: LimitDep) -> Health:
    """The model, whether it has a pair head, whether an index is loaded, the version."""
    model = state.model
    pre = model.preprocess
    height, width = pre.input_size
    return Health(
        version=__version__,
        model=state.name,
        backbone=model.backbone_name,
        engine="onnx" if state.engine == "onnx" else "torch",
        embedding_dim=model.embedding_dim,
        input_size=(height, width),
        channels=pre.channels,
        small_model=pre.channels == 1 and height * width <= SMALL_MODEL_PIXELS,
        has_head=model.head is not None,
        has_index=state.index is not None,
        index_size=len(state.index) if state.index is not None else None,
        explain_available=_explain_available(),
        thresholds=dict(model.thresholds),
        pairs=len(state.pairs),
        training=state.jobs.busy,
        max_upload_bytes=limit,
    )


@router.post(
    "/compare",
    response_model=CompareResponse,
    responses=IMAGE_ERRORS,
    summary="Compare two images",
)
def compare(state: StateDep, limit: LimitDep, a: ImageA, b: ImageB) -> CompareResponse:
    """Cosine similarity, euclidean distance, P(same) (with a pair head) and the decision."""
    ua, ub = read_for_model(state, a, "a", limit), read_for_model(state, b, "b", limit)
    model = state.model
    return _scores(model, _embed(state, model, ua, ub))


def _explain_available() -> bool:
    try:
        import lookalike.viz.explain  # noqa: F401
    except ImportError:
        return False
    return True


@router.post(
    "/explain",
    response_model=ExplainResponse,
    responses={**IMAGE_ERRORS, 501: {"model": ErrorResponse, "description": "Unavailable"}},
    summary="Compare two images and map where they differ",
)
def explain(
    state: StateDep,
    limit: LimitDep,
    a: ImageA,
    b: ImageB,
    figure: Annotated[bool, Query(description="Also render the side-by-side figure")] = True,
) -> ExplainResponse:
    """The scores plus heatmaps (PNG, base64): one overlay per image (green agrees, red
    differs) and the side-by-side figure."""
    ua, ub = read_image(a, "a", limit), read_image(b, "b", limit)
    try:
        from lookalike.viz.explain import explain as run_explain
    except ImportError as exc:
        raise HTTPException(501, "explanations are not available in this build") from exc
    model = state.model
    result = run_explain(ua.image, ub.image, model)
    same, threshold, metric = decide(model, result.cosine, result.euclidean, result.probability)
    scores = CompareResponse(
        cosine=result.cosine,
        euclidean=result.euclidean,
        probability=result.probability,
        same=same,
        threshold=threshold,
        metric=metric,
    )
    heatmaps = [
        Heatmap(name=side, png_base64=render.png_base64(render.heat_overlay(up.image, heat)))
        for side, up, heat in (("a", ua, result.heatmap_a), ("b", ub, result.heatmap_b))
    ]
    if not figure:
        return ExplainResponse(**scores.model_dump(), heatmaps=heatmaps)
    try:
        with state.render_lock:
            rendered = render.explanation_figure(result, ua.image, ub.image)
        heatmaps.append(Heatmap(name="figure", png_base64=render.png_base64(rendered)))
    except LookalikeError as exc:  # matplotlib missing: the overlays still come back
        log.warning("explanation figure not rendered: %s", exc)
    return ExplainResponse(**scores.model_dump(), heatmaps=heatmaps)


# -- search -------------------------------------------------------------------------------------


@router.post(
    "/search",
    response_model=SearchResponse,
    responses={**IMAGE_ERRORS, 409: {"model": ErrorResponse, "description": "No index loaded"}},
    summary="Find the indexed images closest to one image",
)
def search(
    state: StateDep,
    limit: LimitDep,
    image: Annotated[UploadFile, File(description="The query image")],
    k: Annotated[int, Form(ge=1, le=100, description="How many hits")] = 12,
) -> SearchResponse:
    """The ``k`` closest images of the loaded index (start the server with ``--index``)."""
    index = _require_index(state)
    upload = read_for_model(state, image, "image", limit)
    model = state.model
    vector = _embed(state, model, upload)[0]
    hits = index.search(vector, k)
    return SearchResponse(
        hits=[
            SearchHit(path=shown, score=h.score, url=f"/api/index/image?path={quote(shown)}")
            for h in hits
            for shown in [shown_path(h.path)]
        ]
    )


def _require_index(state: ServerState) -> IndexService:
    if state.index is None:
        raise HTTPException(409, "no index loaded: start the server with --index INDEX_DIR")
    return state.index


@router.get(
    "/index/image",
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}}, "description": "A JPEG thumbnail"},
        404: {"model": ErrorResponse, "description": "Not an indexed image"},
        409: {"model": ErrorResponse, "description": "No index loaded"},
    },
    summary="A thumbnail of an indexed image",
)
def index_image(
    state: StateDep,
    path: Annotated[str, Query(description="The path as a search hit gives it")],
    size: Annotated[int, Query(ge=16, le=1024, description="Longest side in pixels")] = 256,
) -> Response:
    """Only files the index holds, inside its root folder, are served."""
    index = _require_index(state)
    try:
        file = index.file(path)  # the bytes of an object under a URI root
        if file is None:
            raise HTTPException(404, f"{path!r} is not an image of the loaded index")
        image = load_image(file, max_pixels=MAX_PIXELS)
    except ImageError as exc:
        raise HTTPException(404, f"{path!r} cannot be read now: {exc.cause}") from exc
    return Response(
        render.thumbnail_jpeg(image, size),
        media_type="image/jpeg",
        headers={"Cache-Control": "private, max-age=300"},
    )
