"""Request and response models of the web API (they make up its OpenAPI schema)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ErrorResponse(BaseModel):
    """Every error the API returns: one message, never a stack trace."""

    detail: str = Field(description="What went wrong and, where possible, how to fix it.")


class Health(BaseModel):
    """What the server is running."""

    status: Literal["ok"] = "ok"
    version: str = Field(description="lookalike version.")
    model: str = Field(description="The model folder's name, or the backbone's when none.")
    backbone: str
    engine: Literal["torch", "onnx"] = Field(description="What embeds request images.")
    embedding_dim: int
    input_size: tuple[int, int] = Field(description="Model input (height, width) in pixels.")
    channels: int = Field(description="1 for grayscale models (digits), 3 for RGB.")
    small_model: bool = Field(
        description="A small grayscale model (seed 003's digits): read the euclidean "
        "distance, low means same."
    )
    has_head: bool = Field(description="A pair head gives P(same).")
    has_index: bool
    index_size: int | None = Field(description="Images in the loaded index.")
    explain_available: bool
    thresholds: dict[str, float] = Field(description="Calibrated decision thresholds.")
    pairs: int = Field(description="Labelled pairs stored.")
    training: bool = Field(description="A head-training job is running.")
    max_upload_bytes: int


class CompareResponse(BaseModel):
    """How similar two images are."""

    cosine: float = Field(description="Cosine similarity in [-1, 1]; higher is more similar.")
    euclidean: float = Field(description="Euclidean distance; lower is more similar.")
    probability: float | None = Field(description="P(same) from the pair head; null without.")
    same: bool | None = Field(description="The decision at the threshold; null uncalibrated.")
    threshold: float | None
    metric: str | None = Field(description="What the threshold applies to.")
    warnings: list[str] = Field(
        default_factory=list,
        description="One line per image that looks unlike the images the model was trained on "
        "(its scores and verdict may mean nothing); empty for models without a domain record.",
    )


class Heatmap(BaseModel):
    """One rendered heatmap."""

    name: str
    png_base64: str = Field(description="The PNG image, base64-encoded.")


class ExplainResponse(CompareResponse):
    """Scores plus visual explanations."""

    heatmaps: list[Heatmap]


class SearchHit(BaseModel):
    """One indexed image close to the query."""

    path: str = Field(description="The image's path as the index records it.")
    score: float = Field(description="Similarity (higher is closer) as the index reports it.")
    url: str = Field(description="Where the server serves a copy of the image.")


class SearchResponse(BaseModel):
    """The closest indexed images, best first."""

    hits: list[SearchHit]


class PairInfo(BaseModel):
    """A labelled pair."""

    id: str
    label: Literal["same", "different"]
    created: float = Field(description="Unix time it was added.")
    a_name: str
    b_name: str
    a_url: str
    b_url: str


class PairListResponse(BaseModel):
    """All labelled pairs, oldest first."""

    pairs: list[PairInfo]
    same: int
    different: int


class TrainRequest(BaseModel):
    """Optional settings of head training."""

    steps: int = Field(default=300, ge=1, le=20_000, description="Full-batch Adam steps.")
    lr: float = Field(default=1e-3, gt=0.0, le=1.0, description="Learning rate.")


class JobCreated(BaseModel):
    """A started job."""

    id: str
    url: str = Field(description="Poll this for progress.")


class JobInfo(BaseModel):
    """A head-training job and its progress."""

    id: str
    state: Literal["running", "succeeded", "failed"]
    phase: Literal["embedding", "training", "done"]
    step: int
    total: int
    loss: float | None
    started: float
    finished: float | None
    error: str | None
    n_train: int | None = None
    n_holdout: int | None = None
    train_accuracy: float | None = None
    holdout_accuracy: float | None = None
    cosine_holdout_accuracy: float | None = None
    used: Literal["head", "cosine"] | None = Field(
        default=None,
        description="Which one won on the held-out pairs: 'head' (compare now answers with "
        "the new head) or 'cosine' (the new head did worse than plain cosine, so it is not "
        "used and compare answers as before).",
    )
