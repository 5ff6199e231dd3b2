"""Per-finding evaluation of multi-label predictions.

Every metric is a :class:`Metric` in the ``metric`` registry, so third-party metrics are
computed and reported exactly like the built-ins. A metric that is undefined for a finding
(AUROC without positives, precision without predicted positives …) is ``None`` and listed
under ``undefined``; it is never replaced by 0 or 0.5, and macro averages skip it.

One decision rule is used everywhere: a finding is predicted positive iff
``probability >= threshold``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from cxrzoo.labels import DEFAULT_RARE

if TYPE_CHECKING:
    from cxrzoo.metrics.calibration import Calibration

#: One threshold per finding: a sequence, an array, or a Calibration.
Thresholds = Union[Sequence[float], np.ndarray, "Calibration"]
MetricFn = Callable[[np.ndarray, np.ndarray, float | None], float | None]

#: Metrics every report of :func:`evaluate_predictions` contains, whatever ``metrics=`` names.
STANDARD_METRICS: tuple[str, ...] = ("auroc", "average_precision", "f1", "precision", "recall", "specificity")
#: Metrics computed when ``metrics=None``.
DEFAULT_METRICS: tuple[str, ...] = (*STANDARD_METRICS, "brier", "ece")
#: Keys of a per-class report that are not metrics (a metric may not use these names).
COUNT_KEYS: tuple[str, ...] = ("threshold", "positives", "negatives", "unknown", "tp", "fp", "fn", "tn")
ECE_BINS = 10


@dataclass(frozen=True)
class Metric:
    """A per-finding metric.

    ``fn(y_true, y_score, threshold)`` receives one finding's labels (int 0/1, shape ``[N]``)
    and probabilities (float, shape ``[N]``), plus that finding's threshold when
    ``needs_threshold`` is true (``None`` otherwise). It returns a float, or ``None`` when the
    metric is undefined on these data.
    """

    name: str
    fn: MetricFn
    needs_threshold: bool
    higher_is_better: bool = True
    description: str = ""

    def __call__(
        self, y_true: np.ndarray, y_score: np.ndarray, threshold: float | None = None
    ) -> float | None:
        if self.needs_threshold and threshold is None:
            raise ValueError(f"Metric {self.name!r} needs a threshold")
        return metric_value(self.fn(y_true, y_score, threshold if self.needs_threshold else None), self.name)


def metric_value(value: Any, name: str) -> float | None:
    """A metric result as a JSON-safe float; NaN and infinities count as undefined."""
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(
            f"Metric {name!r} returned {type(value).__name__}, expected a float or None"
        ) from None
    return value if math.isfinite(value) else None


def _both_classes(y_true: np.ndarray) -> bool:
    positives = int(np.count_nonzero(y_true))
    return 0 < positives < len(y_true)


# --- built-in metric functions -------------------------------------------------------------


def auroc(y_true: np.ndarray, y_score: np.ndarray, threshold: float | None = None) -> float | None:
    """Area under the ROC curve; ``None`` without both positives and negatives."""
    return float(roc_auc_score(y_true, y_score)) if _both_classes(y_true) else None


def average_precision(
    y_true: np.ndarray, y_score: np.ndarray, threshold: float | None = None
) -> float | None:
    """Average precision (area under the step-wise PR curve); ``None`` without both classes.

    With no negatives it would be 1 whatever the scores, so it is reported as undefined.
    """
    return float(average_precision_score(y_true, y_score)) if _both_classes(y_true) else None


def f1(y_true: np.ndarray, y_score: np.ndarray, threshold: float | None) -> float | None:
    """F1 of ``y_score >= threshold``; ``None`` when there are no positives."""
    if not np.any(y_true):
        return None
    return float(f1_score(y_true, y_score >= threshold, zero_division=0.0))


def precision(y_true: np.ndarray, y_score: np.ndarray, threshold: float | None) -> float | None:
    """Positive predictive value; ``None`` when nothing is predicted positive."""
    predicted = y_score >= threshold
    if not np.any(predicted):
        return None
    return float(precision_score(y_true, predicted))


def recall(y_true: np.ndarray, y_score: np.ndarray, threshold: float | None) -> float | None:
    """Sensitivity; ``None`` when there are no positives."""
    if not np.any(y_true):
        return None
    return float(recall_score(y_true, y_score >= threshold))


def specificity(y_true: np.ndarray, y_score: np.ndarray, threshold: float | None) -> float | None:
    """True-negative rate; ``None`` when there are no negatives."""
    if np.all(y_true):
        return None
    return float(recall_score(y_true, y_score >= threshold, pos_label=0))


def brier(y_true: np.ndarray, y_score: np.ndarray, threshold: float | None = None) -> float | None:
    """Mean squared error of the probability (lower is better)."""
    return float(brier_score_loss(y_true, y_score, pos_label=1)) if len(y_true) else None


def ece_bins(y_score: np.ndarray, n_bins: int = ECE_BINS) -> np.ndarray:
    """Bin index of each probability: equal-width bins ``[0, 1/n), …, [(n-1)/n, 1]``."""
    return np.clip(np.floor(np.asarray(y_score, dtype=np.float64) * n_bins), 0, n_bins - 1).astype(np.intp)


def ece(y_true: np.ndarray, y_score: np.ndarray, threshold: float | None = None) -> float | None:
    """Expected calibration error over 10 equal-width probability bins (lower is better).

    ``sum_b (n_b / N) * |mean(y_true in b) - mean(y_score in b)|``, which equals
    ``sum_b |sum_{i in b} (y_true_i - y_score_i)| / N``.
    """
    if not len(y_true):
        return None
    gap = np.bincount(ece_bins(y_score), weights=np.asarray(y_true, np.float64) - y_score, minlength=ECE_BINS)
    return float(np.abs(gap).sum() / len(y_true))


BUILTIN_METRICS: tuple[Metric, ...] = (
    Metric("auroc", auroc, needs_threshold=False, description="Area under the ROC curve"),
    Metric("average_precision", average_precision, needs_threshold=False, description="Average precision"),
    Metric("f1", f1, needs_threshold=True, description="F1 at the finding's threshold"),
    Metric("precision", precision, needs_threshold=True, description="Positive predictive value"),
    Metric("recall", recall, needs_threshold=True, description="Sensitivity (true-positive rate)"),
    Metric("specificity", specificity, needs_threshold=True, description="True-negative rate"),
    Metric("brier", brier, needs_threshold=False, higher_is_better=False, description="Brier score"),
    Metric(
        "ece",
        ece,
        needs_threshold=False,
        higher_is_better=False,
        description=f"Expected calibration error, {ECE_BINS} equal-width bins",
    ),
)


# --- input checks ----------------------------------------------------------------------------


def _column_name(labels: Sequence[str] | None, j: int) -> str:
    return repr(labels[j]) if labels is not None else str(j)


def validate_predictions(
    y_true: Any,
    y_score: Any,
    labels: Sequence[str] | None = None,
    *,
    probabilities: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Check a label matrix and a score matrix ``[N, L]``; return them as int8 and float64.

    Raises ``ValueError`` naming the problem: mismatched shapes, a label count that differs
    from ``labels``, labels other than 0/1, NaN or infinite scores, or (with
    ``probabilities``) scores outside ``[0, 1]``.
    """
    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score)
    for name, arr in (("y_true", y_true), ("y_score", y_score)):
        if arr.ndim != 2:
            raise ValueError(f"{name} must be a 2-D array [images, findings], got shape {arr.shape}")
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    if labels is not None:
        if len(set(labels)) != len(labels):
            raise ValueError(f"labels contains duplicates: {list(labels)}")
        for name, arr in (("y_true", y_true), ("y_score", y_score)):
            if arr.shape[1] != len(labels):
                raise ValueError(f"{name} has {arr.shape[1]} columns but {len(labels)} labels were given")
    if y_true.shape != y_score.shape:
        raise ValueError(f"y_true has shape {y_true.shape} but y_score has shape {y_score.shape}")
    if y_true.shape[0] == 0:
        raise ValueError("No images: y_true and y_score have 0 rows")

    bad_label = ~np.isin(y_true, (0, 1))
    if bad_label.any():
        j = int(np.flatnonzero(bad_label.any(axis=0))[0])
        example = y_true[bad_label[:, j], j][0].item()
        raise ValueError(
            f"y_true column {_column_name(labels, j)} contains {example!r}; labels must be 0 or 1"
        )
    y_score = y_score.astype(np.float64, copy=False)
    for problem, mask in (("NaN", np.isnan(y_score)), ("an infinite value", np.isinf(y_score))):
        if mask.any():
            j = int(np.flatnonzero(mask.any(axis=0))[0])
            raise ValueError(f"y_score contains {problem} in column {_column_name(labels, j)}")
    if probabilities:
        outside = (y_score < 0) | (y_score > 1)
        if outside.any():
            j = int(np.flatnonzero(outside.any(axis=0))[0])
            raise ValueError(
                f"y_score column {_column_name(labels, j)} has values outside [0, 1] "
                f"(e.g. {y_score[outside[:, j], j][0]:g}); pass probabilities, not logits"
            )
    return y_true.astype(np.int8), y_score


def split_known(y_true: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(labels with unknowns as 0, known mask)`` of a label matrix where NaN means unknown.

    The zeros stand in for unknowns only so the matrix keeps a 0/1 type: every metric and
    calibration reads a finding's labels through the mask, never the zeros.
    """
    raw = np.asarray(y_true)
    if raw.dtype.kind != "f":
        return raw, np.ones(raw.shape, dtype=bool)
    known = ~np.isnan(raw)
    return np.where(known, raw, 0.0), known


def not_scorable(known: np.ndarray, y_true: np.ndarray, labels: Sequence[str]) -> dict[str, str]:
    """Findings these data cannot score, and why: absent (no known label) or no known positives."""
    reasons = {}
    for j, label in enumerate(labels):
        if not known[:, j].any():
            reasons[label] = "absent from the data: no image has a known label for it"
        elif not np.any(y_true[known[:, j], j]):
            reasons[label] = "no known positives in the data"
    return reasons


def validate_thresholds(thresholds: Thresholds | None, labels: Sequence[str]) -> np.ndarray:
    """Per-finding thresholds as a float64 array; 0.5 for every finding when ``None``.

    A :class:`~cxrzoo.metrics.Calibration` may be passed as is.
    """
    if thresholds is None:
        return np.full(len(labels), 0.5)
    thresholds = getattr(thresholds, "thresholds", thresholds)
    values = np.asarray(thresholds, dtype=np.float64)
    if values.ndim == 0:
        raise ValueError("thresholds must be a sequence with one threshold per label, got a scalar")
    if values.shape != (len(labels),):
        raise ValueError(f"{values.size} thresholds were given for {len(labels)} labels")
    if np.isnan(values).any():
        raise ValueError(f"threshold for {labels[int(np.flatnonzero(np.isnan(values))[0])]!r} is NaN")
    return values


def get_metric(name: str) -> Metric:
    """The registered metric called ``name`` (built-in or from a plugin)."""
    from cxrzoo.plugins import metrics as registry

    obj = registry.get(name)
    if not (callable(getattr(obj, "fn", None)) and hasattr(obj, "needs_threshold")):
        raise TypeError(f"Metric {name!r} is a {type(obj).__name__}, not a cxrzoo.metrics.Metric")
    return obj


def _metric_names(metrics: Sequence[str] | None) -> list[str]:
    if isinstance(metrics, str):
        raise TypeError("metrics must be a sequence of names, not a single string")
    requested = DEFAULT_METRICS if metrics is None else (*STANDARD_METRICS, *metrics)
    names = list(dict.fromkeys(requested))
    clash = [name for name in names if name in COUNT_KEYS]
    if clash:
        raise ValueError(f"Metric names {clash} clash with the count keys {list(COUNT_KEYS)}")
    return names


def _mean_defined(values: Sequence[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


# --- evaluation ------------------------------------------------------------------------------


def evaluate_predictions(
    y_true: Any,
    y_score: Any,
    labels: Sequence[str],
    thresholds: Thresholds | None = None,
    metrics: Sequence[str] | None = None,
    rare: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Evaluate probabilities ``y_score [N, L]`` against 0/1 labels ``y_true [N, L]``.

    Args:
        labels: the finding of each column.
        thresholds: one per finding (positive iff ``score >= threshold``), or a
            :class:`Calibration`; 0.5 each by default, which is rarely right for rare
            findings: see :func:`calibrate_thresholds`.
        metrics: registered metric names. ``None`` computes :data:`DEFAULT_METRICS`; a list
            adds its metrics (built-in or from a plugin) to :data:`STANDARD_METRICS`, which
            are always reported.
        rare: findings to report as the ``rare`` group; :data:`cxrzoo.labels.DEFAULT_RARE`
            by default. Names not in ``labels`` are ignored.

    Returns a JSON-serialisable dict:

    - ``per_class``: ``{label: {metric: value | None, "threshold", "positives", "negatives",
      "tp", "fp", "fn", "tn"}}``
    - ``macro``: ``{metric: mean over findings where it is defined}`` (``None`` if none);
      ``macro_auroc`` repeats ``macro["auroc"]``.
    - ``micro``: every metric on the flattened ``[N * L]`` arrays; threshold metrics use the
      per-finding decisions.
    - ``groups``: ``{"rare": {"labels": [...], metric: macro over the group}, "common": {...}}``
    - ``undefined``: ``{metric: [findings where it is undefined]}``
    - ``n_images``, ``labels``, ``metrics``.
    """
    labels = list(labels)
    y_true, known = split_known(y_true)
    y_true, y_score = validate_predictions(y_true, y_score, labels)
    thr = validate_thresholds(thresholds, labels)
    names = _metric_names(metrics)
    chosen = {name: get_metric(name) for name in names}
    predicted = y_score >= thr

    per_class: dict[str, dict[str, Any]] = {}
    for j, label in enumerate(labels):
        # Each finding is scored over the images where its label is known.
        rows = known[:, j]
        yt, ys, pj = y_true[rows, j], y_score[rows, j], predicted[rows, j]
        row: dict[str, Any] = {}
        if len(yt):
            tn, fp, fn, tp = (int(c) for c in confusion_matrix(yt, pj, labels=[0, 1]).ravel())
            for name, metric in chosen.items():
                row[name] = metric_value(
                    metric.fn(yt, ys, float(thr[j]) if metric.needs_threshold else None), name
                )
        else:
            tn = fp = fn = tp = 0
            row = dict.fromkeys(chosen)
        row.update(
            threshold=float(thr[j]),
            positives=tp + fn,
            negatives=tn + fp,
            unknown=int(len(rows) - rows.sum()),
            tp=tp,
            fp=fp,
            fn=fn,
            tn=tn,
        )
        per_class[label] = row

    macro = {name: _mean_defined([per_class[label][name] for label in labels]) for name in names}
    undefined = {name: [label for label in labels if per_class[label][name] is None] for name in names}

    # Micro: one pooled binary problem. Threshold metrics see the per-finding decisions as
    # 0/1 scores, so ``decision >= 0.5`` reproduces them whatever each finding's threshold.
    flat_known = known.ravel()
    flat_true, flat_score = y_true.ravel()[flat_known], y_score.ravel()[flat_known]
    flat_decision = predicted.ravel()[flat_known].astype(np.float64)
    micro = {
        name: metric_value(
            metric.fn(flat_true, flat_decision, 0.5)
            if metric.needs_threshold
            else metric.fn(flat_true, flat_score, None),
            name,
        )
        for name, metric in chosen.items()
    }

    rare_set = set(DEFAULT_RARE if rare is None else rare)
    rare_labels = [label for label in labels if label in rare_set]
    common_labels = [label for label in labels if label not in rare_set]
    groups = {
        group: {
            "labels": members,
            **{name: _mean_defined([per_class[label][name] for label in members]) for name in names},
        }
        for group, members in (("rare", rare_labels), ("common", common_labels))
    }

    return {
        "n_images": int(y_true.shape[0]),
        "labels": labels,
        "not_scorable": not_scorable(known, y_true, labels),
        "metrics": names,
        "per_class": per_class,
        "macro_auroc": macro.get("auroc"),
        "macro": macro,
        "micro": micro,
        "groups": groups,
        "undefined": undefined,
    }
