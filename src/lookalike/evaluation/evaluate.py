"""Evaluating a similarity model the way the field does, beside its two baselines.

One call, :func:`evaluate`, measures a model on identity-labelled images (and/or labelled
pairs) with three protocols:

* **verification** on pairs: ROC AUC, EER, TAR at fixed FAR, accuracy and F1, for cosine
  similarity, euclidean distance and the pair head's P(same), both at the threshold stored
  in the model folder and at the best threshold on these pairs (labelled as such);
* **retrieval** on identity-labelled images: precision@1, recall@K, R-precision, MAP@R
  (each image queries all the others);
* **N-way K-shot** episodes (Koch et al.'s one-shot protocol) with a 95 % confidence interval.

The same metrics are computed for raw pixels and for the frozen pretrained backbone on the
same images and pairs, so a report always shows what training bought.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from lookalike._progress import Phases, map_chunks
from lookalike.data.decode import DecodedImages, decode_all, normalize, raw_pixel_vectors
from lookalike.data.labelled import LabelledImages
from lookalike.data.pairs import PairList, make_pairs
from lookalike.errors import DataError, LookalikeError
from lookalike.metrics.calibration import Threshold, calibrate
from lookalike.metrics.distances import Score, cosine_similarity, euclidean_distance
from lookalike.metrics.episodes import EpisodeReport, n_way_k_shot
from lookalike.metrics.retrieval import RetrievalReport, retrieval_metrics
from lookalike.metrics.verification import VerificationReport, verify
from lookalike.model.network import SiameseModel


@dataclass(frozen=True)
class EvalConfig:
    """What to measure.

    Attributes:
        pairs: Number of seeded, balanced pairs built from the identities when no pairs are
            given (drawn with replacement; half same-identity).
        ways, shots, episodes: The N-way K-shot protocol (``episodes=0`` skips it).
        recall_ks: The K of recall@K.
        seed: Seed for pairs and episodes.
        baselines: Also measure raw pixels and the frozen pretrained backbone.
        raw_pixel_side: Raw pixels are area-downsampled to at most this many pixels a side
            before flattening (memory: N × C × side² floats).
        criterion: How ``calibrate`` chooses thresholds: ``"accuracy"``, ``"f1"`` or ``"far"``.
        far: The target false-accept rate for ``criterion="far"``.
        batch_size: Images per forward pass.
        frozen_backbone: The pretrained backbone of the frozen baseline; ``None`` uses the
            model's own (a model trained from scratch, like the demo's small CNN, has none:
            name one such as ``"mobilenet_v2"``, which then sees the images at its own size).
    """

    pairs: int = 2000
    ways: int = 5
    shots: int = 1
    episodes: int = 400
    recall_ks: tuple[int, ...] = (1, 5, 10)
    seed: int = 0
    baselines: bool = True
    raw_pixel_side: int = 32
    criterion: Literal["accuracy", "f1", "far"] = "accuracy"
    far: float | None = None
    batch_size: int = 64
    frozen_backbone: str | None = None


@dataclass
class SubjectResult:
    """The metrics of one embedding source (the model, raw pixels, or the frozen backbone).

    Attributes:
        name: ``"model"``, ``"raw_pixels"`` or ``"frozen_backbone"``.
        verification: Per score (``cosine``, ``euclidean``, ``probability``): the report at
            the stored threshold under ``"stored"`` (absent when none is stored) and at the
            best threshold on these pairs under ``"best"``.
        retrieval: Retrieval metrics, or ``None`` without identity labels.
        episodes: N-way K-shot accuracy, or ``None`` when skipped.
        pair_scores: Per score, the pair scores (P,) (for the report's histograms).
        pair_labels: The pairs' labels (P,), 1 same and 0 different.
    """

    name: str
    verification: dict[str, dict[str, VerificationReport]] = field(default_factory=dict)
    retrieval: RetrievalReport | None = None
    episodes: EpisodeReport | None = None
    pair_scores: dict[str, np.ndarray] = field(default_factory=dict)
    pair_labels: np.ndarray | None = None

    @property
    def primary(self) -> str:
        """The score decisions are made on: P(same) with a head, else cosine."""
        return "probability" if "probability" in self.verification else "cosine"

    def headline(self) -> VerificationReport:
        """The primary score's report at the stored threshold if any, else the best one."""
        reports = self.verification[self.primary]
        return reports.get("stored") or reports["best"]

    def summary(self) -> dict[str, Any]:
        """The flat headline figures (the keys ``lookalike eval --json`` promises)."""
        head = self.headline()
        return {
            "metric": self.primary,
            "roc_auc": head.roc_auc,
            "eer": head.eer,
            "accuracy": head.accuracy,
            "f1": head.f1,
            "threshold": head.threshold,
            "threshold_source": head.threshold_source,
            # An unresolved target (fewer than 1/FAR different pairs) is no figure: None.
            "tar_at_far": {
                key: value if head.tar_at_far_resolved.get(key, True) else None
                for key, value in head.tar_at_far.items()
            },
            "tar_at_far_resolved": dict(head.tar_at_far_resolved),
            "precision_at_1": None if self.retrieval is None else self.retrieval.precision_at_1,
            "r_precision": None if self.retrieval is None else self.retrieval.r_precision,
            "map_at_r": None if self.retrieval is None else self.retrieval.map_at_r,
            "n_way_accuracy": None if self.episodes is None else self.episodes.accuracy,
            "n_way_ci95": None if self.episodes is None else self.episodes.ci95,
        }

    def to_dict(self) -> dict[str, Any]:
        """Everything measured, JSON-serialisable."""
        return {
            **self.summary(),
            "verification": {
                metric: {kind: report.to_dict() for kind, report in reports.items()}
                for metric, reports in self.verification.items()
            },
            "retrieval": None if self.retrieval is None else self.retrieval.to_dict(),
            "episodes": None if self.episodes is None else self.episodes.to_dict(),
        }


@dataclass
class EvalResult:
    """What :func:`evaluate` measured.

    Attributes:
        model: The model's metrics.
        baselines: Raw pixels and frozen backbone metrics, by name.
        unavailable: Baselines that could not be measured, with the reason.
        pairs: Number of scored pairs, and ``pair_source`` where they came from.
        images: Number of identity-labelled images, ``identities`` their identity count.
        skipped: Unreadable images (name -> reason).
        embeddings, labels, classes: The model's embeddings (N, D) of the identity-labelled
            images with their labels (N,) and identity names, for embedding maps.
    """

    model: SubjectResult
    baselines: dict[str, SubjectResult]
    unavailable: dict[str, str]
    pairs: int
    pair_source: str
    images: int
    identities: int
    skipped: dict[str, str]
    embeddings: np.ndarray | None = None
    labels: np.ndarray | None = None
    classes: list[str] = field(default_factory=list)

    def worse_than_frozen(self) -> str | None:
        """A warning when the model is worse than its frozen backbone on these images.

        "Worse" means beyond noise: N-way accuracy lower by more than the two intervals
        combined (when episodes ran), else ROC AUC lower by more than 0.01.

        Returns:
            The warning (with the figures and their sample sizes), or ``None``.
        """
        frozen = self.baselines.get("frozen_backbone")
        if frozen is None:
            return None
        m, f = self.model.summary(), frozen.summary()
        if m["n_way_accuracy"] is not None and f["n_way_accuracy"] is not None:
            noise = float(np.hypot(m["n_way_ci95"], f["n_way_ci95"]))
            if m["n_way_accuracy"] < f["n_way_accuracy"] - noise:
                episodes = self.model.episodes.episodes if self.model.episodes else 0
                return (
                    f"the model is worse than its frozen pretrained backbone on these images: "
                    f"N-way accuracy {m['n_way_accuracy']:.4f} vs {f['n_way_accuracy']:.4f} "
                    f"(±{noise:.4f}, {episodes} episodes, {self.identities} identities)"
                )
            return None
        auc, frozen_auc = m["roc_auc"], f["roc_auc"]
        if auc is not None and frozen_auc is not None and auc < frozen_auc - 0.01:
            return (
                f"the model is worse than its frozen pretrained backbone on these images: "
                f"ROC AUC {auc:.4f} vs {frozen_auc:.4f} on {self.pairs} pairs"
            )
        return None

    def to_dict(self) -> dict[str, Any]:
        """The JSON report: the model's headline keys at top level, details below."""
        warning = self.worse_than_frozen()
        return {
            **self.model.summary(),
            "warnings": [] if warning is None else [warning],
            "pairs": self.pairs,
            "pair_source": self.pair_source,
            "images": self.images,
            "identities": self.identities,
            "skipped": len(self.skipped),
            "model": self.model.to_dict(),
            "baselines": {name: sub.to_dict() for name, sub in self.baselines.items()},
            "baselines_unavailable": dict(self.unavailable),
        }


@dataclass
class _Images:
    """Decoded images (identity-labelled and/or pair images) in one pixel tensor."""

    decoded: DecodedImages
    n_identity: int  # rows [0, n_identity) carry identity labels
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray] | None  # (i, j, y) rows into decoded


def _decode(
    data: LabelledImages | None,
    pairs: PairList | None,
    model: SiameseModel,
    cfg: EvalConfig,
    progress: bool = False,
) -> tuple[_Images, str]:
    """Decode identity images and pair images once, and build the pair index."""
    sources: list[Any] = []
    labels: list[int] = []
    classes: list[str] = []
    if data is not None:
        sources += list(data.sources)
        labels += data.labels.tolist()
        classes = list(data.classes)
    pair_paths: list[str] = []
    pair_class = len(classes)  # pair images get one extra label after the identities
    if pairs is not None:
        pair_paths = sorted({*pairs.a, *pairs.b})
        sources += pair_paths
        labels += [pair_class] * len(pair_paths)
    holder = LabelledImages(
        sources, np.asarray(labels, dtype=np.int64), [*classes, "<pair images>"]
    )
    decoded = decode_all(holder, model.preprocess, progress=progress)
    decoded.classes = classes
    kept = [str(s) for s in decoded.kept.sources]
    n_kept_identity = int(np.count_nonzero(decoded.labels.numpy() != pair_class))
    if pairs is not None:
        row = {src: k for k, src in enumerate(kept) if k >= n_kept_identity}
        keep = [
            k
            for k, (a, b) in enumerate(zip(pairs.a, pairs.b, strict=True))
            if a in row and b in row
        ]
        if not keep:
            raise DataError("no labelled pair has two readable images")
        if np.isnan(pairs.labels[keep]).any():
            raise DataError("every pair needs a label (1 same, 0 different) for evaluation")
        i = np.array([row[pairs.a[k]] for k in keep], dtype=np.int64)
        j = np.array([row[pairs.b[k]] for k in keep], dtype=np.int64)
        y = pairs.labels[keep].astype(np.float32)
        return _Images(decoded, n_kept_identity, (i, j, y)), "pairs CSV"
    if n_kept_identity == 0:
        return _Images(decoded, 0, None), "none"
    i, j, y = make_pairs(
        decoded.labels.numpy()[:n_kept_identity], cfg.pairs, positive_fraction=0.5, seed=cfg.seed
    )
    return _Images(decoded, n_kept_identity, (i, j, y)), "seeded balanced pairs"


def _embed(
    model: SiameseModel,
    pixels: torch.Tensor,
    batch_size: int,
    *,
    desc: str = "embedding",
    progress: bool = False,
) -> np.ndarray:
    """Embeddings (N, D) of decoded uint8 pixels (N, C, H, W), in batches (a ``desc`` bar)."""

    def embed_chunk(chunk: torch.Tensor) -> np.ndarray:
        return model.embed(normalize(chunk, model.preprocess).numpy(), batch_size=batch_size)

    return map_chunks(embed_chunk, pixels, batch_size, desc=desc, progress=progress)


def _raw_pixels(model: SiameseModel, pixels: torch.Tensor, side: int) -> np.ndarray:
    """Normalised pixels (N, C, H, W) area-downsampled to at most ``side`` a side, flattened."""
    return raw_pixel_vectors(pixels, model.preprocess, side=side)


def _measure(
    name: str,
    emb: np.ndarray,
    images: _Images,
    cfg: EvalConfig,
    *,
    stored: dict[str, float],
    model: SiameseModel | None = None,
) -> SubjectResult:
    """All metrics for one embedding matrix (N, D) over the decoded images."""
    result = SubjectResult(name)
    if images.pairs is not None:
        i, j, y = images.pairs
        scores: dict[str, np.ndarray] = {
            "cosine": np.asarray(cosine_similarity(emb[i], emb[j]), dtype=np.float64),
            "euclidean": np.asarray(euclidean_distance(emb[i], emb[j]), dtype=np.float64),
        }
        if model is not None and model.head is not None:
            prob = model.pair_probability(emb[i], emb[j])
            if prob is not None:
                scores["probability"] = np.asarray(prob, dtype=np.float64)
        for metric, s in scores.items():
            higher = Score(metric).higher_is_same
            reports = {"best": verify(s, y, higher_is_same=higher)}
            if metric in stored:
                rule = Threshold(stored[metric], higher, float("nan"))
                reports["stored"] = verify(s, y, higher_is_same=higher, threshold=rule)
            result.verification[metric] = reports
        result.pair_scores, result.pair_labels = scores, y
    n = images.n_identity
    if n:
        labels = images.decoded.labels.numpy()[:n]
        ident = emb[:n]
        result.retrieval = retrieval_metrics(ident, labels, recall_ks=cfg.recall_ks)
        if cfg.episodes > 0:
            result.episodes = n_way_k_shot(
                ident, labels, ways=cfg.ways, shots=cfg.shots, episodes=cfg.episodes, seed=cfg.seed
            )
    return result


def _frozen_backbone(model: SiameseModel, name: str | None) -> SiameseModel:
    """A pretrained backbone, untrained, without projection: the model's own by default.

    Raises:
        LookalikeError: The backbone has no pretrained weights (or they are not available).
    """
    if name is None or name == model.backbone_name:
        return SiameseModel.create(
            model.backbone_name,
            pretrained=True,
            input_size=model.preprocess.input_size,
            channels=model.preprocess.channels,
        ).to_device(model.device)
    return SiameseModel.create(name, pretrained=True).to_device(model.device)


def _frozen_embeddings(
    model: SiameseModel, images: _Images, cfg: EvalConfig, progress: bool = False
) -> np.ndarray:
    """Frozen-backbone embeddings (N, D) of the decoded images (re-decoded at its input size)."""
    try:
        frozen = _frozen_backbone(model, cfg.frozen_backbone)
    except LookalikeError as exc:
        hint = (
            ""
            if cfg.frozen_backbone
            else "; pass a pretrained one, e.g. --frozen-backbone mobilenet_v2"
        )
        raise LookalikeError(f"{exc}{hint}") from exc
    pixels = images.decoded.pixels
    if frozen.preprocess.input_size != model.preprocess.input_size or (
        frozen.preprocess.channels != model.preprocess.channels
    ):
        redecoded = decode_all(images.decoded.kept, frozen.preprocess, progress=progress)
        if len(redecoded) != len(images.decoded):
            raise DataError("images decoded differently for the frozen backbone")
        pixels = redecoded.pixels
    return _embed(
        frozen, pixels, cfg.batch_size, desc="embedding (frozen backbone)", progress=progress
    )


def _check_episodes(data: LabelledImages | None, cfg: EvalConfig) -> None:
    """Refuse up front (before any embedding) when N-way K-shot cannot be run."""
    if data is None or cfg.episodes <= 0:
        return
    need = cfg.shots + 1
    qualifying = int(np.count_nonzero(data.counts() >= need))
    if qualifying < cfg.ways:
        raise DataError(
            f"{cfg.ways}-way {cfg.shots}-shot episodes need {cfg.ways} identities with at least "
            f"{need} images each; the data has {qualifying}. Lower --ways or --shots, or pass "
            "--episodes 0 to skip them"
        )


def evaluate(
    model: SiameseModel,
    data: LabelledImages | None = None,
    *,
    pairs: PairList | None = None,
    config: EvalConfig | None = None,
    progress: bool = False,
) -> EvalResult:
    """Measure a model (and its baselines) on identity-labelled images and/or labelled pairs.

    Args:
        model: The model to evaluate (its stored thresholds are reported on).
        data: Identity-labelled images: retrieval and N-way K-shot run on them, and without
            ``pairs`` a seeded, balanced pair set is drawn from them.
        pairs: Labelled pairs for verification (every pair needs a label).
        config: What to measure.
        progress: Show an "eval" bar over the phases (decoding, embedding, measuring each
            subject), with a bar inside the long ones; on a terminal only.

    Returns:
        The metrics of the model and of its baselines.

    Raises:
        DataError: Neither data nor pairs, too few identities for the episodes, or no
            readable image.
    """
    cfg = config or EvalConfig()
    if data is None and pairs is None:
        raise DataError("evaluation needs identity-labelled images, labelled pairs, or both")
    _check_episodes(data, cfg)
    with Phases("eval", 6 if cfg.baselines else 3, progress=progress) as phases:
        return _evaluate(model, data, pairs, cfg, phases, progress)


def _evaluate(
    model: SiameseModel,
    data: LabelledImages | None,
    pairs: PairList | None,
    cfg: EvalConfig,
    phases: Phases,
    progress: bool,
) -> EvalResult:
    """:func:`evaluate`'s work, each step shown as a phase of ``phases``."""
    phases.start("decoding")
    images, source = _decode(data, pairs, model, cfg, progress)
    phases.start("embedding (model)")
    emb = _embed(model, images.decoded.pixels, cfg.batch_size, progress=progress)
    phases.start("measuring the model")
    result = EvalResult(
        model=_measure("model", emb, images, cfg, stored=dict(model.thresholds), model=model),
        baselines={},
        unavailable={},
        pairs=0 if images.pairs is None else len(images.pairs[2]),
        pair_source=source,
        images=images.n_identity,
        identities=len(np.unique(images.decoded.labels.numpy()[: images.n_identity])),
        skipped=dict(images.decoded.skipped),
    )
    if images.n_identity:
        result.embeddings = emb[: images.n_identity]
        result.labels = images.decoded.labels.numpy()[: images.n_identity]
        result.classes = list(images.decoded.classes)
    if cfg.baselines:
        phases.start("raw pixels")
        raw = _raw_pixels(model, images.decoded.pixels, cfg.raw_pixel_side)
        result.baselines["raw_pixels"] = _measure("raw_pixels", raw, images, cfg, stored={})
        phases.start("frozen backbone")
        try:
            frozen_emb = _frozen_embeddings(model, images, cfg, progress)
        except LookalikeError as exc:
            result.unavailable["frozen_backbone"] = str(exc)
        else:
            phases.start("measuring the frozen backbone")
            result.baselines["frozen_backbone"] = _measure(
                "frozen_backbone", frozen_emb, images, cfg, stored={}
            )
    return result


def calibrated_thresholds(result: EvalResult, config: EvalConfig | None = None) -> dict[str, float]:
    """Thresholds chosen on the evaluated pairs by ``config.criterion``, one per score.

    Raises:
        DataError: The evaluation scored no pairs.
    """
    cfg = config or EvalConfig()
    labels = result.model.pair_labels
    if labels is None:
        raise DataError("calibration needs labelled pairs; none were scored")
    out = {}
    for metric, scores in result.model.pair_scores.items():
        rule = calibrate(
            scores,
            labels,
            criterion=cfg.criterion,
            far=cfg.far if cfg.criterion == "far" else None,
            higher_is_same=Score(metric).higher_is_same,
        )
        out[metric] = float(rule.value)
    return out


def save_thresholds(
    model_dir: str | os.PathLike[str], thresholds: dict[str, float], *, criterion: str
) -> None:
    """Store calibrated thresholds in a model folder's ``config.json`` (nothing else changes)."""
    from lookalike.model.folder import update_config

    update_config(model_dir, thresholds=thresholds, metrics={"threshold_criterion": criterion})
