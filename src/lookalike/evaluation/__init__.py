"""A model measured beside its baselines, and the report that shows it.

* :func:`lookalike.evaluation.evaluate.evaluate` (also ``lookalike.evaluate``) — one call
  measures a model on identity-labelled images and/or labelled pairs: verification (ROC
  AUC, EER, TAR at FAR, accuracy and F1 at the stored and at the best threshold),
  retrieval (precision@1, recall@K, R-precision, MAP@R) and N-way K-shot episodes, with
  the same numbers for raw pixels and the frozen pretrained backbone.
* :class:`EvalConfig` — what to measure (pairs, ways, shots, episodes, baselines,
  threshold criterion); :class:`EvalResult` — what was measured, per subject
  (``result.model``, ``result.baselines``), serialisable with ``to_dict()``.
* :func:`write_report` (:mod:`~lookalike.evaluation.report`) — ``metrics.json``,
  ``report.md``, ``roc.png``, ``scores.png`` and ``embedding_map.png`` in one folder.

``evaluate`` itself is not re-exported here: once the module
:mod:`lookalike.evaluation.evaluate` is imported, Python binds that name on this package to
the module, so ``from lookalike.evaluation import evaluate`` would give the module or the
function depending on import order. Use ``lookalike.evaluate``.

Names are imported lazily: ``import lookalike.evaluation`` imports neither torch nor
matplotlib.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lookalike._lazy import lazy_exports

if TYPE_CHECKING:
    from lookalike.evaluation.evaluate import EvalConfig, EvalResult
    from lookalike.evaluation.report import write_report

_LAZY = {
    "EvalConfig": "lookalike.evaluation.evaluate",
    "EvalResult": "lookalike.evaluation.evaluate",
    "write_report": "lookalike.evaluation.report",
}

__all__ = ["EvalConfig", "EvalResult", "write_report"]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
