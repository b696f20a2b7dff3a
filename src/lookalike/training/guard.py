"""Keep what the pretrained backbone knew unless training beats it beyond chance.

Fine-tuning on a few kinds of images can make a pretrained backbone worse on every other
kind, while validation (drawn from the same kinds) says it improved. Two defences, both
measured in ``benchmarks/bench_quality.py``:

* **WiSE-FT** (Wortsman et al. 2022): the fine-tuned weights are interpolated with the
  pretrained ones, ``θ(α) = (1 − α) θ₀ + α θ``, for α in :data:`ALPHAS`; the mixtures keep
  much of the pretrained features' generality at little cost on the training kinds.
* **A statistical guard**: a candidate replaces the pretrained backbone only when its gain
  in validation pair accuracy has a 95 % interval above zero, the interval coming from a
  bootstrap over validation *identities*, and only when there are at least
  :data:`MIN_IDENTITIES` of them (a bootstrap over 2 identities has 3 distinct resamples and
  proves nothing). Among the candidates that pass, the *least* change (smallest α) whose accuracy
  is within the noise of the best one is kept: when validation cannot tell two models
  apart, the one closer to the pretrained weights is the safer bet on images unlike the
  training ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from lookalike._progress import bar
from lookalike.metrics.bootstrap import Interval
from lookalike.metrics.calibration import best_accuracy_threshold
from lookalike.model.network import SiameseModel
from lookalike.training.validation import PairValidator

__all__ = ["ALPHAS", "MIN_IDENTITIES", "Candidate", "GuardDecision", "guard", "interpolate"]

MIN_IDENTITIES = 4
"""Fewest validation identities on which the guard lets training replace the start."""

ALPHAS: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
"""Mixing weights of the fine-tuned model tried (1.0 is the fine-tuned model itself)."""


@dataclass(frozen=True)
class Candidate:
    """One model the guard considered.

    Attributes:
        alpha: Its share of the fine-tuned weights (0 is the pretrained start).
        accuracy: Its validation pair accuracy (best threshold on the validation pairs).
        accuracy_ci: That accuracy with its interval over validation identities.
        gain: Its accuracy minus the pretrained start's, with its interval.
    """

    alpha: float
    accuracy: float
    accuracy_ci: Interval
    gain: Interval

    @property
    def significant(self) -> bool:
        """Better than the pretrained start beyond chance (gain interval above 0)."""
        return self.gain.low > 0


@dataclass
class GuardDecision:
    """What the guard kept, and why.

    Attributes:
        alpha: The kept mixture (0: the pretrained start; 1: the fine-tuned model).
        reason: One sentence for the user.
        candidates: Every candidate measured, α ascending.
    """

    alpha: float
    reason: str
    candidates: list[Candidate] = field(default_factory=list)

    @property
    def kept(self) -> Candidate | None:
        """The kept candidate (``None`` when the pretrained start was kept)."""
        return next((c for c in self.candidates if c.alpha == self.alpha), None)


def interpolate(
    start: Mapping[str, torch.Tensor], tuned: Mapping[str, torch.Tensor], alpha: float
) -> dict[str, torch.Tensor]:
    """``(1 − α)·start + α·tuned`` for floating tensors; other tensors from ``tuned``.

    Args:
        start: The pretrained state dict.
        tuned: The fine-tuned state dict (same keys and shapes).
        alpha: Share of the fine-tuned weights, in [0, 1].

    Returns:
        A new state dict.

    Raises:
        ValueError: ``alpha`` outside [0, 1], or the state dicts do not match.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if set(start) != set(tuned):
        raise ValueError("the pretrained and fine-tuned state dicts have different keys")
    out = {}
    for name, value in tuned.items():
        base = start[name]
        if value.is_floating_point() and base.shape == value.shape:
            out[name] = torch.lerp(base.to(value), value, alpha)
        else:
            out[name] = value.clone()
    return out


def guard(
    model: SiameseModel,
    start: Mapping[str, torch.Tensor],
    validator: PairValidator,
    *,
    alphas: tuple[float, ...] = ALPHAS,
    progress: bool = False,
) -> GuardDecision:
    """Choose among the pretrained start, WiSE-FT mixtures and the fine-tuned model.

    ``model`` holds the fine-tuned weights on entry and the chosen ones on return.

    Args:
        model: The fine-tuned model (its state is replaced by the chosen mixture).
        start: Its state dict before training (the pretrained backbone, nothing trained on
            top: the guard is only meaningful when that start is itself a usable model).
        validator: Scores models on the fixed validation pairs.
        alphas: Mixing weights to try.
        progress: A "guard: WiSE-FT sweep" bar over the start and each mixture (each one
            embedded and bootstrapped), on a terminal only.

    Returns:
        The decision.
    """
    tuned = {k: v.detach().clone() for k, v in model.state_dict().items()}
    sweep = bar(desc="guard: WiSE-FT sweep", total=len(alphas) + 1, unit="model", progress=progress)
    with sweep:
        model.load_state_dict(dict(start))
        sweep.set_postfix_str("pretrained start")
        base = validator.scores(validator.embed(model, desc="guard: embedding"), model)
        sweep.update(1)
        candidates = []
        for alpha in sorted(alphas):
            sweep.set_postfix_str(f"alpha {alpha:.2f}, bootstrap")
            model.load_state_dict(tuned if alpha == 1.0 else interpolate(start, tuned, alpha))
            scores = validator.scores(validator.embed(model, desc="guard: embedding"), model)
            threshold = best_accuracy_threshold(scores, validator.y)
            candidates.append(
                Candidate(
                    alpha,
                    threshold.accuracy,
                    validator.interval(scores, threshold.value),
                    validator.improvement(base, scores),
                )
            )
            sweep.update(1)
    identities = candidates[0].gain.identities if candidates else 0
    if identities < MIN_IDENTITIES:
        model.load_state_dict(dict(start))
        reason = (
            f"kept the pretrained backbone: validation has {identities} identities, too few "
            f"(< {MIN_IDENTITIES}) to show that training helps (--no-guard keeps it anyway)"
        )
        return GuardDecision(0.0, reason, candidates)
    passing = [c for c in candidates if c.significant]
    if not passing:
        model.load_state_dict(dict(start))
        best = max(candidates, key=lambda c: c.accuracy)
        reason = (
            "kept the pretrained backbone: no trained model beat it on validation beyond "
            f"chance (best gain {best.gain.value:+.3f}, 95 % CI {best.gain.low:+.3f} to "
            f"{best.gain.high:+.3f}, over {best.gain.identities} identities)"
        )
        return GuardDecision(0.0, reason, candidates)
    top = max(passing, key=lambda c: c.accuracy)
    noise = top.accuracy_ci.half_width
    chosen = min((c for c in passing if c.accuracy >= top.accuracy - noise), key=lambda c: c.alpha)
    model.load_state_dict(tuned if chosen.alpha == 1.0 else interpolate(start, tuned, chosen.alpha))
    what = (
        "the fine-tuned model"
        if chosen.alpha == 1.0
        else (f"a {chosen.alpha:.2f} mix of the fine-tuned and pretrained weights (WiSE-FT)")
    )
    reason = (
        f"kept {what}: validation gain over the pretrained backbone {chosen.gain.value:+.3f} "
        f"(95 % CI {chosen.gain.low:+.3f} to {chosen.gain.high:+.3f}, "
        f"{chosen.gain.identities} identities)"
    )
    return GuardDecision(chosen.alpha, reason, candidates)
