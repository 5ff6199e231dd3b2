"""Percentile bootstrap confidence intervals for per-finding and macro metrics.

Resampling is paired: each resample draws one multiset of image indices and every finding is
scored on it, so the macro CI reflects the correlation between findings. A resample is
stored as a count per image (a row of a weight matrix ``W [B, N]``) rather than as an index
list, which turns every metric into array arithmetic over all resamples at once:

- threshold metrics: ``tp``, ``fp`` and positive counts are ``W @ indicator`` products;
- AUROC: the weighted Mann-Whitney statistic. Sorting one finding's scores once, the
  cumulative weight below each tie group gives every positive's mid-rank in all resamples,
  and ``AUROC = (sum_pos w * midrank - P^2 / 2) / (P * N_neg)``; tied scores count 1/2;
- average precision: the same cumulative weights give precision at each positive's
  threshold.

A count matrix with ``w`` copies of an image is exactly the explicitly resampled data set,
so each resample's value equals the scikit-learn metric on that data set (tested).

Resamples are processed in chunks of rows, so memory stays at a few tens of MB whatever
``n_resamples`` is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse
from threadpoolctl import threadpool_limits

from cxrzoo.metrics.core import (
    ECE_BINS,
    Thresholds,
    ece_bins,
    get_metric,
    metric_value,
    split_known,
    validate_predictions,
    validate_thresholds,
)

#: Metrics computed for all resamples at once; any other registered metric is computed
#: resample by resample (correct, but about a thousand times slower).
VECTORISED_METRICS: tuple[str, ...] = (
    "auroc",
    "average_precision",
    "f1",
    "precision",
    "recall",
    "specificity",
    "brier",
    "ece",
)
_COUNT_METRICS = ("f1", "precision", "recall", "specificity")
#: Number of matrix elements per chunk of resamples (rows x images); bounds memory and keeps
#: the per-finding sort buffers in cache.
_CHUNK_ELEMENTS = 1 << 21


@dataclass(frozen=True)
class _SortedFinding:
    """One finding's scores sorted once, with what the rank statistics need per positive."""

    order: np.ndarray  # image indices in ascending score order
    positives: np.ndarray  # image index of each positive, in ascending score order
    group_start: np.ndarray  # sorted position where each positive's tie group starts
    group_end: np.ndarray  # sorted position just past each positive's tie group
    positives_below: np.ndarray  # number of positives sorted before each positive's tie group


def _sort_finding(y: np.ndarray, s: np.ndarray) -> _SortedFinding:
    order = np.argsort(s, kind="stable")
    sorted_scores = s[order]
    n = len(s)
    new_group = np.empty(n, dtype=bool)
    new_group[0] = True
    new_group[1:] = sorted_scores[1:] != sorted_scores[:-1]
    positions = np.arange(n)
    start = np.maximum.accumulate(np.where(new_group, positions, 0))
    starts = np.flatnonzero(new_group)
    ends = np.append(starts[1:], n)
    end = ends[np.cumsum(new_group) - 1]
    sorted_positive = np.flatnonzero(y[order])
    return _SortedFinding(
        order=order,
        positives=order[sorted_positive],
        group_start=start[sorted_positive],
        group_end=end[sorted_positive],
        positives_below=np.searchsorted(sorted_positive, start[sorted_positive]),
    )


def _nan_where(values: np.ndarray, undefined: np.ndarray) -> np.ndarray:
    values = values.astype(np.float64, copy=False)
    values[undefined] = np.nan
    return values


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator`` with NaN (undefined) where the denominator is 0."""
    out = np.full(np.broadcast(numerator, denominator).shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def rank_metrics(
    weights: np.ndarray, y_true: np.ndarray, y_score: np.ndarray, *, average_precision: bool = False
) -> dict[str, np.ndarray]:
    """Weighted AUROC (and average precision) of one finding for every row of ``weights``.

    ``weights [B, N]`` holds non-negative integer counts per image (row ``b`` is the data set
    with ``weights[b, i]`` copies of image ``i``); ``y_true`` and ``y_score`` are ``[N]``.
    Returns ``{"auroc": [B]}`` (plus ``"average_precision"``), NaN where a row has no
    positives or no negatives.
    """
    y_true, y_score = np.asarray(y_true), np.asarray(y_score, dtype=np.float64)
    finding = _sort_finding(y_true, y_score)
    return _rank_metrics(np.asarray(weights, dtype=np.int32), finding, average_precision=average_precision)


def _rank_metrics(
    weights: np.ndarray, finding: _SortedFinding, *, average_precision: bool = False
) -> dict[str, np.ndarray]:
    n_rows, n_images = weights.shape
    # cumulative[:, k] = total weight of the k lowest-scoring images.
    cumulative = np.empty((n_rows, n_images + 1), dtype=np.int32)
    cumulative[:, 0] = 0
    np.cumsum(np.take(weights, finding.order, axis=1, mode="clip"), axis=1, out=cumulative[:, 1:])
    below = cumulative[:, finding.group_start]
    w_pos = weights[:, finding.positives].astype(np.float64)
    n_pos = w_pos.sum(axis=1)
    n_total = cumulative[:, -1].astype(np.float64)
    n_neg = n_total - n_pos
    undefined = (n_pos == 0) | (n_neg == 0)

    # 2 * sum over positives of w * mid-rank, where mid-rank = below + tied / 2.
    twice_rank_sum = np.einsum("ij,ij->i", w_pos, below + cumulative[:, finding.group_end])
    auc = _ratio(twice_rank_sum - n_pos**2, 2 * n_pos * n_neg)
    result = {"auroc": _nan_where(auc, undefined)}

    if average_precision:
        # Precision when the threshold is a positive's score: (positives and all) at or above.
        pos_cumulative = np.zeros((n_rows, w_pos.shape[1] + 1))
        np.cumsum(w_pos, axis=1, out=pos_cumulative[:, 1:])
        tp_at = n_pos[:, None] - pos_cumulative[:, finding.positives_below]
        predicted_at = np.maximum(n_total[:, None] - below, 1)  # >= w when w > 0
        ap = _ratio(np.einsum("ij,ij->i", w_pos, tp_at / predicted_at), n_pos)
        result["average_precision"] = _nan_where(ap, undefined)
    return result


class _ResampledMetrics:
    """Everything that does not depend on the resample, computed once."""

    def __init__(
        self,
        y_true: np.ndarray,
        y_score: np.ndarray,
        thresholds: np.ndarray,
        metrics: Sequence[str],
        known: np.ndarray | None = None,
    ) -> None:
        self.y_true, self.y_score, self.thresholds = y_true, y_score, thresholds
        # Unknown labels take part in no metric: their images weigh 0 for that finding.
        self.known = known if known is not None and not known.all() else None
        self.n_images, self.n_labels = y_true.shape
        self.metrics = list(metrics)
        wanted = set(metrics)
        self.rank_wanted = bool(wanted & {"auroc", "average_precision"})
        self.sorted = (
            [_sort_finding(y_true[:, j], y_score[:, j]) for j in range(self.n_labels)]
            if self.rank_wanted
            else []
        )

        # Counts need tp, fp and positives per finding. Sums of integer counts are exact in
        # float32 (and twice as fast as float64) while they stay below 2**24.
        self.count_dtype = np.float32 if self.n_images < 2**24 else np.float64
        self.count_columns: np.ndarray | None = None
        if wanted & set(_COUNT_METRICS):
            predicted = y_score >= thresholds
            positive = y_true.astype(bool)
            present = self.known if self.known is not None else np.ones_like(positive)
            self.count_columns = np.concatenate(
                [positive & predicted & present, ~positive & predicted & present, positive & present], axis=1
            ).astype(self.count_dtype)

        # Brier and ECE are weighted sums of per-image terms, so matrix products too. ECE has
        # one column per (finding, bin) with one non-zero per image and finding: sparse.
        present_f = 1.0 if self.known is None else self.known.astype(np.float64)
        self.present_f = present_f
        self.brier_terms = (y_score - y_true) ** 2 * present_f if "brier" in wanted else None
        self.ece_terms: sparse.csr_matrix | None = None
        if "ece" in wanted:
            finding_bin = (np.arange(self.n_labels) * ECE_BINS + ece_bins(y_score)).ravel()
            image = np.repeat(np.arange(self.n_images), self.n_labels)
            self.ece_terms = sparse.csr_matrix(
                (((y_true - y_score) * present_f).ravel(), (finding_bin, image)),
                shape=(self.n_labels * ECE_BINS, self.n_images),
            )

        self.other = {name: get_metric(name) for name in self.metrics if name not in VECTORISED_METRICS}

    def __call__(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        """Every metric ``[rows, labels]`` for a chunk of count rows ``weights [rows, N]``."""
        rows, n_labels = weights.shape[0], self.n_labels
        # Images per finding in each resample: all of them, or those whose label is known.
        n = (
            np.full((rows, n_labels), weights.sum(axis=1, dtype=np.float64)[:, None])
            if self.known is None
            else weights.astype(np.float64) @ self.known.astype(np.float64)
        )
        out: dict[str, np.ndarray] = {}

        if self.count_columns is not None:
            counts = weights.astype(self.count_dtype) @ self.count_columns
            tp, fp, pos = (counts[:, k * n_labels : (k + 1) * n_labels].astype(np.float64) for k in range(3))
            fn, neg = pos - tp, n - pos
            tn = neg - fp
            out["precision"] = _ratio(tp, tp + fp)
            out["recall"] = _ratio(tp, pos)
            out["specificity"] = _ratio(tn, neg)
            out["f1"] = _nan_where(_ratio(2 * tp, 2 * tp + fp + fn), pos == 0)

        if self.brier_terms is not None:
            out["brier"] = _ratio(weights.astype(np.float64) @ self.brier_terms, n)
        if self.ece_terms is not None:
            bins = np.asarray(self.ece_terms @ weights.T.astype(np.float64)).T
            out["ece"] = _ratio(np.abs(bins.reshape(rows, n_labels, ECE_BINS)).sum(axis=2), n)

        if self.rank_wanted:
            with_ap = "average_precision" in self.metrics
            per_label = [
                _rank_metrics(
                    weights if self.known is None else weights * self.known[:, j].astype(np.int32),
                    f,
                    average_precision=with_ap,
                )
                for j, f in enumerate(self.sorted)
            ]
            for name in ("auroc", "average_precision"):
                if name in self.metrics:
                    out[name] = np.stack([values[name] for values in per_label], axis=1)

        for name, metric in self.other.items():
            values = np.full((rows, n_labels), np.nan)
            for r in range(rows):
                index = np.repeat(np.arange(self.n_images), weights[r])
                for j in range(n_labels):
                    threshold = float(self.thresholds[j]) if metric.needs_threshold else None
                    rows_j = index if self.known is None else index[self.known[index, j]]
                    value = metric_value(
                        metric.fn(self.y_true[rows_j, j], self.y_score[rows_j, j], threshold), name
                    )
                    if value is not None:
                        values[r, j] = value
            out[name] = values
        return {name: out[name] for name in self.metrics}


def resample_weights(rng: np.random.Generator, n_rows: int, n_images: int) -> np.ndarray:
    """``[n_rows, n_images]`` int32 counts: each row is one bootstrap resample of the images."""
    draws = rng.integers(0, n_images, size=(n_rows, n_images), dtype=np.int32)
    weights = np.empty((n_rows, n_images), dtype=np.int32)
    for row in range(n_rows):  # one row's counts stay in cache; a global bincount does not
        weights[row] = np.bincount(draws[row], minlength=n_images)
    return weights


def _interval(estimate: float, values: np.ndarray, confidence: float) -> dict[str, Any] | None:
    valid = values[~np.isnan(values)]
    if valid.size == 0 or valid.size < values.size / 2:
        return None
    alpha = 1 - confidence
    low, high = np.quantile(valid, [alpha / 2, 1 - alpha / 2])
    return {
        "low": float(low),
        "high": float(high),
        "mean": float(valid.mean()),
        "estimate": None if math.isnan(estimate) else float(estimate),
        "n_valid": int(valid.size),
    }


def bootstrap_ci(
    y_true: Any,
    y_score: Any,
    labels: Sequence[str],
    thresholds: Thresholds | None = None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    metrics: Sequence[str] = ("auroc", "f1", "precision", "recall"),
) -> dict[str, Any]:
    """Percentile bootstrap confidence intervals, per finding and for the macro averages.

    Images are resampled with replacement, the same images for every finding. Thresholds are
    held fixed (positive iff ``score >= threshold``, 0.5 by default), so the intervals do not
    include the uncertainty of choosing them.

    A resample where a metric is undefined for a finding (no positives, nothing predicted
    positive …) is dropped for that finding; if fewer than half of the resamples remain the
    interval is ``None``. The macro value of a resample averages the findings where the
    metric is defined on the full data, and the resample is dropped if any of them is
    undefined in it, so every kept resample averages the same findings.

    Returns a JSON-serialisable dict::

        {"per_class": {label: {metric: CI | None}},
         "macro": {metric: CI | None}, "macro_auroc": CI | None,
         "n_resamples", "confidence", "seed", "method", "n_images", "labels", "metrics", "thresholds"}

    where ``CI = {"low", "high", "mean", "estimate", "n_valid"}``: the percentile interval,
    the mean over kept resamples, the value on the full data, and how many resamples were kept.
    """
    labels = list(labels)
    if isinstance(metrics, str):
        raise TypeError("metrics must be a sequence of names, not a single string")
    metrics = list(dict.fromkeys(metrics))
    if not metrics:
        raise ValueError("metrics is empty")
    if not (isinstance(n_resamples, (int, np.integer)) and n_resamples >= 1):
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence!r}")
    y_true, known = split_known(y_true)
    y_true, y_score = validate_predictions(y_true, y_score, labels)
    thr = validate_thresholds(thresholds, labels)
    evaluate = _ResampledMetrics(y_true, y_score, thr, metrics, known=known)
    n_images = y_true.shape[0]

    estimate = evaluate(np.ones((1, n_images), dtype=np.int32))
    values = {name: np.empty((n_resamples, len(labels))) for name in metrics}
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_resamples, _CHUNK_ELEMENTS // n_images))
    # The products here are skinny (a few dozen columns): one BLAS thread is faster than
    # several, and several stall badly when the cores are busy with other work.
    with threadpool_limits(1, user_api="blas"):
        for start in range(0, n_resamples, chunk):
            rows = min(chunk, n_resamples - start)
            for name, block in evaluate(resample_weights(rng, rows, n_images)).items():
                values[name][start : start + rows] = block

    per_class: dict[str, dict[str, Any]] = {label: {} for label in labels}
    macro: dict[str, Any] = {}
    for name in metrics:
        point, samples = estimate[name][0], values[name]
        for j, label in enumerate(labels):
            per_class[label][name] = _interval(point[j], samples[:, j], confidence)
        defined = ~np.isnan(point)
        if defined.any():
            # nan if any defined finding is undefined in a resample: that resample is dropped.
            macro[name] = _interval(
                float(point[defined].mean()), samples[:, defined].mean(axis=1), confidence
            )
        else:
            macro[name] = None

    return {
        "per_class": per_class,
        "macro": macro,
        "macro_auroc": macro.get("auroc"),
        "n_resamples": int(n_resamples),
        "confidence": float(confidence),
        "seed": int(seed),
        "method": "percentile",
        "n_images": int(n_images),
        "labels": labels,
        "metrics": metrics,
        "thresholds": [float(t) for t in thr],
    }
