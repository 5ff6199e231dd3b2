"""Per-finding thresholds with a finite-sample guarantee.

"At this threshold at most 10% of effusions are missed, with 90% confidence": for a target
sensitivity ``s`` and confidence ``1 - δ``, the threshold is chosen on ``n`` calibration images
whose finding is known so that, over the draw of those images from the population the model
will meet, the population's sensitivity at that threshold is at least ``s`` with probability at
least ``1 - δ`` (a PAC / Learn-then-Test guarantee, distribution-free: it needs no assumption on
the model's scores, only that calibration and future images are drawn from the same site).

- **sensitivity**: with the positives' scores sorted ``x(1) ≤ … ≤ x(n)`` and the threshold
  ``x(k)`` (called positive at ``p ≥ x(k)``), the miss rate at ``x(k)`` exceeds ``α = 1 - s``
  exactly when fewer than ``k`` of the ``n`` positives fall below the population's
  ``α``-quantile, which has probability ``BinomCDF(k - 1; n, α)``. The largest ``k`` with that
  probability at most ``δ`` is used: the most specific threshold that keeps the guarantee.
  No ``k`` exists when ``(1 - α)^n > δ``: the finding is refused, naming the positives needed,
  ``ceil(log δ / log(1 - α))`` (22 for 90% sensitivity at 90% confidence).
- **specificity**: the same on the negatives' scores from the top.
- **precision**: Learn-then-Test over 50 candidate thresholds at quantiles of the scores: at
  each the null "precision ≤ s" is rejected when ``P(Bin(m, s) ≥ tp) ≤ δ / 50`` (Bonferroni)
  for the ``m`` images called positive of which ``tp`` are; the lowest rejected threshold is
  used. Valid conditionally on the number of images called positive.

Unknown labels (NaN) are left out of each finding's calibration set.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.stats import binom

from cxrzoo.errors import UserError

TARGETS = ("sensitivity", "specificity", "precision")
#: Candidate thresholds tested for a precision target (at quantiles of the scores).
PRECISION_CANDIDATES = 50


@dataclass(frozen=True)
class Target:
    """A guarantee asked for: ``kind`` at least ``level`` with probability ``confidence``."""

    kind: str
    level: float
    confidence: float = 0.9

    def __post_init__(self) -> None:
        if self.kind not in TARGETS:
            raise UserError(f"--target {self.kind}: expected one of {', '.join(TARGETS)}")
        for name, value in (("target", self.level), ("--confidence", self.confidence)):
            if not 0 < value < 1 or not math.isfinite(value):
                raise UserError(f"{name} must be strictly between 0 and 1, got {value}")

    def describe(self) -> str:
        return f"{self.kind} ≥ {self.level:g} with {self.confidence:.0%} confidence"

    @property
    def needed(self) -> int:
        """Fewest calibration cases (positives for sensitivity, negatives for specificity, images
        called positive for precision) with which the guarantee can hold at all."""
        # sensitivity / specificity: (1 - α)^n = level^n ≤ δ; precision: level^m ≤ δ, every call right.
        return math.ceil(math.log(1 - self.confidence) / math.log(self.level))


def parse_target(text: str, confidence: float = 0.9) -> Target:
    """``sensitivity=0.9`` (or ``specificity=`` / ``precision=``) as a :class:`Target`."""
    kind, sep, value = text.partition("=")
    if not sep:
        raise UserError(f"--target {text!r}: expected KIND=LEVEL, e.g. sensitivity=0.9")
    try:
        level = float(value)
    except ValueError:
        raise UserError(f"--target {text!r}: {value!r} is not a number") from None
    return Target(kind.strip().lower(), level, confidence)


@dataclass(frozen=True)
class Guarantee:
    """One finding's result: its threshold, or why none could be guaranteed."""

    threshold: float | None
    cases: int  # positives / negatives / images the guarantee was computed on
    needed: int
    achieved: float | None  # the target's value on the calibration images at the threshold
    reason: str = ""

    @property
    def guaranteed(self) -> bool:
        return self.threshold is not None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "guaranteed": self.guaranteed}


def _largest_k(n: int, alpha: float, delta: float) -> int:
    """Largest k in 1..n with BinomCDF(k - 1; n, α) ≤ δ, or 0."""
    k = np.arange(1, n + 1)
    ok = np.flatnonzero(binom.cdf(k - 1, n, alpha) <= delta)
    return int(k[ok[-1]]) if len(ok) else 0


def guaranteed_threshold(scores: np.ndarray, labels: np.ndarray, target: Target) -> Guarantee:
    """The threshold for one finding (see the module docstring); ``labels`` 1 / 0 / NaN."""
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels, np.float64)
    known = np.isfinite(labels) & np.isfinite(scores)
    s, y = scores[known], labels[known] > 0.5
    delta = 1 - target.confidence
    need = target.needed
    if target.kind in ("sensitivity", "specificity"):
        cases = np.sort(s[y]) if target.kind == "sensitivity" else np.sort(-s[~y])
        n = len(cases)
        k = _largest_k(n, 1 - target.level, delta)
        what = "positives" if target.kind == "sensitivity" else "negatives"
        if k == 0:
            return Guarantee(None, n, need, None, f"{n} known {what}; the guarantee needs at least {need}")
        if target.kind == "sensitivity":
            threshold = float(cases[k - 1])
            achieved = float(np.mean(s[y] >= threshold))
        else:
            # The k-th largest negative score, made just strict so that only the k - 1 above it
            # are called positive.
            threshold = float(np.nextafter(-cases[k - 1], np.inf))
            achieved = float(np.mean(s[~y] < threshold))
        return Guarantee(min(max(threshold, 0.0), 1.0), n, need, achieved)
    # precision: Learn-then-Test, Bonferroni over a grid of candidate thresholds.
    grid = np.unique(np.quantile(s, np.linspace(0, 1, PRECISION_CANDIDATES))) if len(s) else np.zeros(0)
    level = delta / max(len(grid), 1)
    chosen: tuple[float, float] | None = None
    for t in grid:  # ascending: the first threshold whose null is rejected is the most sensitive
        called = s >= t
        m, tp = int(called.sum()), int((called & y).sum())
        if m and binom.sf(tp - 1, m, target.level) <= level:
            chosen = (float(t), tp / m)
            break
    if chosen is None:
        return Guarantee(
            None,
            len(s),
            need,
            None,
            f"no threshold reaches precision {target.level:g} with {target.confidence:.0%} confidence on "
            f"{int(y.sum())} known positives (at least {need} correct positive calls are needed)",
        )
    return Guarantee(chosen[0], len(s), need, chosen[1])


def guarantee_thresholds(
    probs: np.ndarray, labels: np.ndarray, names: list[str] | tuple[str, ...], target: Target
) -> dict[str, Guarantee]:
    """:func:`guaranteed_threshold` for every finding (columns of ``probs`` and ``labels``)."""
    return {name: guaranteed_threshold(probs[:, j], labels[:, j], target) for j, name in enumerate(names)}


def achieved(probs: np.ndarray, labels: np.ndarray, threshold: float, kind: str) -> tuple[float | None, int]:
    """The value of ``kind`` at ``threshold`` on labelled images, and the cases it was taken on."""
    known = np.isfinite(labels)
    s, y = probs[known], labels[known] > 0.5
    called = s >= threshold
    if kind == "sensitivity":
        n = int(y.sum())
        return (float(called[y].mean()) if n else None), n
    if kind == "specificity":
        n = int((~y).sum())
        return (float((~called[~y]).mean()) if n else None), n
    n = int(called.sum())
    return (float(y[called].mean()) if n else None), n


__all__ = [
    "TARGETS",
    "Guarantee",
    "Target",
    "achieved",
    "guarantee_thresholds",
    "guaranteed_threshold",
    "parse_target",
]
