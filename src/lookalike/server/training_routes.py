"""The REST endpoints for labelled pairs, head training, jobs and the model download.

Plain ``def`` endpoints, like those of :mod:`lookalike.server.routes` (FastAPI runs them in
its threadpool).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Form, HTTPException
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, Response

from lookalike.server import render
from lookalike.server.deps import IMAGE_ERRORS, ImageA, ImageB, LimitDep, StateDep, read_for_model
from lookalike.server.jobs import JobRunningError, JobSnapshot
from lookalike.server.pairs_store import DuplicatePairError, Pair, StoredImage, media_type
from lookalike.server.schemas import (
    ErrorResponse,
    JobCreated,
    JobInfo,
    PairInfo,
    PairListResponse,
    TrainRequest,
)
from lookalike.server.state import ServerState

router = APIRouter(prefix="/api")


# -- labelled pairs ------------------------------------------------------------------------------


def _pair_info(pair: Pair) -> PairInfo:
    return PairInfo(
        id=pair.id,
        label=pair.label,
        created=pair.created,
        a_name=pair.a_name,
        b_name=pair.b_name,
        a_url=f"/api/pairs/{pair.id}/image/a",
        b_url=f"/api/pairs/{pair.id}/image/b",
    )


@router.post(
    "/pairs",
    response_model=PairInfo,
    status_code=201,
    responses={
        **IMAGE_ERRORS,
        409: {
            "model": ErrorResponse,
            "description": "The pair store is full, or the pair is already labelled",
        },
    },
    summary="Add a labelled pair",
)
def add_pair(
    state: StateDep,
    limit: LimitDep,
    a: ImageA,
    b: ImageB,
    label: Annotated[Literal["same", "different"], Form(description="same or different")],
) -> PairInfo:
    """Store both images (by content hash) and the label; pairs survive a restart. The
    store is bounded (``lookalike serve --max-pairs``, ``--max-pair-mb``): when full, 409.
    The same two images (by content, in either order) are one pair: a second label is 409."""
    ua, ub = read_for_model(state, a, "a", limit), read_for_model(state, b, "b", limit)
    try:
        pair = state.pairs.add(
            StoredImage(ua.data, ua.name, ua.format),
            StoredImage(ub.data, ub.name, ub.format),
            label,
        )
    except DuplicatePairError as exc:
        raise HTTPException(409, str(exc)) from exc
    return _pair_info(pair)


@router.get("/pairs", response_model=PairListResponse, summary="List the labelled pairs")
def list_pairs(state: StateDep) -> PairListResponse:
    """Every labelled pair, oldest first, with counts per label."""
    pairs = state.pairs.list()
    same = sum(p.label == "same" for p in pairs)
    return PairListResponse(
        pairs=[_pair_info(p) for p in pairs], same=same, different=len(pairs) - same
    )


PairId = Annotated[str, PathParam(description="The pair's id")]


@router.delete(
    "/pairs/{pair_id}",
    status_code=204,
    response_class=Response,
    responses={404: {"model": ErrorResponse, "description": "Unknown pair"}},
    summary="Delete a labelled pair",
)
def delete_pair(state: StateDep, pair_id: PairId) -> Response:
    """Delete the pair (and its images when no other pair uses them)."""
    if not state.pairs.delete(pair_id):
        raise HTTPException(404, f"no pair with id {pair_id!r}")
    return Response(status_code=204)


@router.get(
    "/pairs/{pair_id}/image/{side}",
    response_class=FileResponse,
    responses={
        200: {"content": {"image/*": {}}, "description": "The image as uploaded"},
        404: {"model": ErrorResponse, "description": "Unknown pair"},
    },
    summary="One image of a labelled pair",
)
def pair_image(state: StateDep, pair_id: PairId, side: Literal["a", "b"]) -> FileResponse:
    """The image exactly as it was uploaded."""
    pair = state.pairs.get(pair_id)
    if pair is None:
        raise HTTPException(404, f"no pair with id {pair_id!r}")
    path = state.pairs.image_path(pair, side)
    if not path.is_file():
        raise HTTPException(404, f"the image of pair {pair_id!r} is missing from the data folder")
    return FileResponse(path, media_type=media_type(path.name))


# -- head training -------------------------------------------------------------------------------


@router.post(
    "/train-head",
    response_model=JobCreated,
    status_code=202,
    responses={
        400: {"model": ErrorResponse, "description": "Too few pairs, or only one label"},
        409: {"model": ErrorResponse, "description": "A training job is running"},
    },
    summary="Train the pair head on the labelled pairs",
)
def train_head(
    state: StateDep, settings: Annotated[TrainRequest | None, Body()] = None
) -> JobCreated:
    """Starts a background job; poll ``GET /api/jobs/{id}``. When it succeeds, compare
    answers with the new head's P(same) and its 0.5 threshold, unless the head did worse
    than plain cosine on the held-out pairs (the job's ``used`` is then ``"cosine"``)."""
    settings = settings or TrainRequest()
    try:
        job = state.start_training(steps=settings.steps, lr=settings.lr)
    except JobRunningError as exc:
        raise HTTPException(409, str(exc)) from exc
    return JobCreated(id=job.id, url=f"/api/jobs/{job.id}")


def _job_info(state: ServerState, snap: JobSnapshot) -> JobInfo:
    return JobInfo(
        id=snap.id,
        state=snap.state,
        phase=snap.phase,
        step=snap.step,
        total=snap.total,
        loss=snap.loss,
        started=snap.started,
        finished=snap.finished,
        error=None if snap.error is None else state.redact(snap.error),
        **snap.result,
    )


@router.get(
    "/jobs/{job_id}",
    response_model=JobInfo,
    responses={404: {"model": ErrorResponse, "description": "Unknown job"}},
    summary="A job's state and progress",
)
def job(state: StateDep, job_id: str) -> JobInfo:
    """State, step/total, loss; training and held-out accuracy once it succeeded."""
    snap = state.jobs.get(job_id)
    if snap is None:
        raise HTTPException(404, f"no job with id {job_id!r}")
    return _job_info(state, snap)


@router.get(
    "/head/download",
    response_class=Response,
    responses={
        200: {"content": {"application/zip": {}}, "description": "A zipped model folder"},
        409: {"model": ErrorResponse, "description": "No pair head yet"},
    },
    summary="Download the model with its trained head",
)
def download_head(state: StateDep) -> Response:
    """A zip holding one model folder (``lookalike-model/``: config.json, model.safetensors).
    A pretrained backbone is referenced by name and sha256, not stored. Unzip it and use
    ``lookalike compare --model lookalike-model A B`` or ``SiameseModel.load``."""
    model = state.model
    if model.head is None:
        raise HTTPException(409, "no pair head yet: label pairs and train one first")
    data = render.model_zip(model, reference_backbone=state.reference_backbone)
    return Response(
        data,
        media_type="application/zip",
        headers={"Content-Disposition": 'attachment; filename="lookalike-model.zip"'},
    )
