"""Per-finding decision thresholds chosen on validation data.

A fixed 0.5 threshold predicts almost nothing positive for findings with a prevalence of a
few percent, which gives F1 = 0 even when the ranking is good. These thresholds are chosen
on a validation split and then applied unchanged to the test split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import precision_recall_curve, roc_curve

from cxrzoo.metrics.core import split_known, validate_predictions

METHODS = ("f1", "youden")
DEFAULT_FALLBACK_THRESHOLD = 0.5


@dataclass(frozen=True, eq=False)
class Calibration:
    """Thresholds chosen per finding, and which findings could not be calibrated.

    Attributes:
        thresholds: one threshold per finding; positive iff ``score >= threshold``.
        method: ``"f1"`` or ``"youden"``.
        fallback: column indices that got the fallback threshold because the data could not
            define the optimum (no positives; for Youden also no negatives).
        objective: F1 or Youden's J reached on the calibration data (NaN where it fell back).
    """

    thresholds: np.ndarray
    method: str
    fallback: list[int] = field(default_factory=list)
    objective: np.ndarray | None = None

    def as_list(self) -> list[float]:
        """Thresholds as plain floats (for JSON and for ``evaluate_predictions``)."""
        return [float(t) for t in self.thresholds]

    def to_dict(self) -> dict[str, Any]:
        objective = None
        if self.objective is not None:
            objective = [float(v) if np.isfinite(v) else None for v in self.objective]
        return {
            "thresholds": self.as_list(),
            "method": self.method,
            "fallback": list(self.fallback),
            "objective": objective,
        }


def _robust_threshold(chosen: float, scores: np.ndarray) -> float:
    """Midpoint between ``chosen`` and the next lower distinct score.

    It makes the same decisions as ``chosen`` on these data under ``score >= threshold``,
    and leaves a margin on both sides for scores that differ slightly on new data. When
    ``chosen`` is the lowest score, or the two are adjacent floats, ``chosen`` itself is used.
    """
    lower = scores[scores < chosen]
    if lower.size == 0:
        return float(chosen)
    below = float(lower.max())
    midpoint = below + (chosen - below) / 2
    return float(midpoint) if below < midpoint <= chosen else float(chosen)


def _best_f1(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    precision, recall, thresholds = precision_recall_curve(y, s, drop_intermediate=False)
    precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(denominator), where=denominator > 0)
    best = int(np.argmax(f1))
    return float(thresholds[best]), float(f1[best])


def _best_youden(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    fpr, tpr, thresholds = roc_curve(y, s, drop_intermediate=False)
    j = (tpr - fpr)[1:]  # the first point is the "predict nothing" threshold (inf)
    best = int(np.argmax(j))
    return float(thresholds[1:][best]), float(j[best])


def calibrate_thresholds(
    y_true: Any,
    y_score: Any,
    method: str = "f1",
    *,
    fallback_threshold: float = DEFAULT_FALLBACK_THRESHOLD,
) -> Calibration:
    """Choose one threshold per finding on validation data ``[N, L]``.

    Methods:
        ``"f1"``: the threshold that maximises F1 on these data (ties: the lowest such
        threshold, i.e. the higher recall).
        ``"youden"``: the threshold that maximises Youden's J = TPR - FPR (ties: the
        highest such threshold, i.e. the higher specificity).

    Each threshold is the midpoint between the optimal score and the next lower distinct
    score, so ``score >= threshold`` reproduces the optimum exactly on these data.

    A finding with no positives (for ``"youden"``: no positives or no negatives) has no
    optimum; it gets ``fallback_threshold`` (0.5 by default, the uncalibrated rule) and is
    listed in :attr:`Calibration.fallback` so that reports can say so.
    """
    if method not in METHODS:
        raise ValueError(f"Unknown calibration method {method!r}; choose one of {', '.join(METHODS)}")
    y_true, known = split_known(y_true)
    y_true, y_score = validate_predictions(y_true, y_score, probabilities=False)
    n_labels = y_true.shape[1]
    thresholds = np.full(n_labels, float(fallback_threshold))
    objective = np.full(n_labels, np.nan)
    fallback: list[int] = []
    for j in range(n_labels):
        # Calibrated on the images whose label for this finding is known.
        y, s = y_true[known[:, j], j], y_score[known[:, j], j]
        positives = int(np.count_nonzero(y))
        if positives == 0 or (method == "youden" and positives == len(y)):
            fallback.append(j)
            continue
        chosen, objective[j] = _best_f1(y, s) if method == "f1" else _best_youden(y, s)
        thresholds[j] = _robust_threshold(chosen, s)
    return Calibration(thresholds=thresholds, method=method, fallback=fallback, objective=objective)
