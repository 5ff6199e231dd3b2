from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

import cxrzoo
from cxrzoo import hookimpl, plugins
from cxrzoo.labels import DEFAULT_RARE, LABELS
from cxrzoo.metrics import (
    BUILTIN_METRICS,
    DEFAULT_METRICS,
    Calibration,
    Metric,
    bootstrap_ci,
    calibrate_thresholds,
    evaluate_predictions,
    patient_kfold,
    rank_metrics,
    rarest_positive,
    resample_weights,
)
from cxrzoo.metrics.bootstrap import _ResampledMetrics
from cxrzoo.metrics.core import ece
from cxrzoo.registry import UnknownNameError


def random_problem(
    n: int = 400, n_labels: int = 14, seed: int = 0, signal: float = 1.0, decimals: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Labels with prevalence 3-40 % and probabilities that rank positives higher."""
    rng = np.random.default_rng(seed)
    prevalence = np.linspace(0.03, 0.4, n_labels)
    y = (rng.random((n, n_labels)) < prevalence).astype(int)
    logits = signal * (2 * y - 1) + rng.normal(size=(n, n_labels))
    p = 1 / (1 + np.exp(-logits))
    if decimals is not None:
        p = np.round(p, decimals)  # creates ties
    return y, p


# --- registry ----------------------------------------------------------------------------------


def test_registry_contains_builtins() -> None:
    names = set(plugins.metrics.names())
    assert set(DEFAULT_METRICS) <= names
    assert set(DEFAULT_METRICS) <= set(cxrzoo.list_metrics())
    for metric in BUILTIN_METRICS:
        registered = plugins.metrics.get(metric.name)
        assert isinstance(registered, Metric)
        assert plugins.metrics.entry(metric.name).source == "cxrzoo"
    assert not plugins.metrics.get("brier").higher_is_better
    assert plugins.metrics.get("f1").needs_threshold
    assert not plugins.metrics.get("auroc").needs_threshold


def test_metric_call_requires_threshold() -> None:
    f1 = plugins.metrics.get("f1")
    with pytest.raises(ValueError, match="needs a threshold"):
        f1(np.array([0, 1]), np.array([0.2, 0.8]))
    assert f1(np.array([0, 1]), np.array([0.2, 0.8]), 0.5) == 1.0


# --- known answers -------------------------------------------------------------------------------


def test_perfect_and_reversed_ranking() -> None:
    y = np.array([[0, 1], [0, 1], [1, 0], [1, 0]])
    p = np.array([[0.1, 0.2], [0.2, 0.3], [0.7, 0.8], [0.8, 0.9]])
    report = evaluate_predictions(y, p, ["perfect", "reversed"])
    perfect, reversed_ = report["per_class"]["perfect"], report["per_class"]["reversed"]
    assert perfect["auroc"] == 1.0
    assert perfect["average_precision"] == 1.0
    assert perfect["f1"] == 1.0
    assert (perfect["tp"], perfect["fp"], perfect["fn"], perfect["tn"]) == (2, 0, 0, 2)
    assert reversed_["auroc"] == 0.0
    assert reversed_["f1"] == 0.0 and reversed_["recall"] == 0.0 and reversed_["specificity"] == 0.0
    assert report["macro_auroc"] == 0.5
    assert report["n_images"] == 4


def test_class_without_positives_is_undefined_not_zero() -> None:
    y = np.array([[1, 0], [0, 0], [1, 0], [0, 0]])
    p = np.array([[0.9, 0.1], [0.2, 0.7], [0.6, 0.2], [0.3, 0.3]])
    report = evaluate_predictions(y, p, ["A", "B"])
    b = report["per_class"]["B"]
    for name in ("auroc", "average_precision", "f1", "recall"):
        assert b[name] is None
        assert report["undefined"][name] == ["B"]
    assert b["positives"] == 0 and b["negatives"] == 4
    assert b["specificity"] == 0.75  # defined: negatives exist
    assert b["precision"] == 0.0  # one image predicted positive, wrongly
    # Macro skips the undefined class instead of counting it as 0 or 0.5.
    assert report["macro_auroc"] == report["per_class"]["A"]["auroc"] == 1.0
    assert report["macro"]["f1"] == report["per_class"]["A"]["f1"]
    assert report["undefined"]["specificity"] == []


def test_nothing_predicted_positive() -> None:
    """The founding failure: every probability below 0.5 gives F1 = 0 and undefined precision."""
    y = np.array([[1], [0], [1], [0], [0]])
    p = np.array([[0.30], [0.05], [0.20], [0.10], [0.02]])
    row = evaluate_predictions(y, p, ["A"])["per_class"]["A"]
    assert row["auroc"] == 1.0
    assert row["f1"] == 0.0
    assert row["recall"] == 0.0
    assert row["precision"] is None


def test_all_classes_undefined_gives_none_macro() -> None:
    y = np.zeros((3, 2), dtype=int)
    report = evaluate_predictions(y, np.full((3, 2), 0.2), ["A", "B"])
    assert report["macro_auroc"] is None
    assert report["micro"]["auroc"] is None
    assert report["undefined"]["auroc"] == ["A", "B"]


def test_ece_known_answer() -> None:
    y = np.array([0, 1, 0, 1])
    assert ece(y, np.full(4, 0.75)) == pytest.approx(0.25)
    # Two bins, each perfectly calibrated.
    y = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    p = np.array([0.25, 0.25, 0.25, 0.25, 0.75, 0.75, 0.75, 0.75])
    assert ece(y, p) == pytest.approx(0.0)
    assert ece(np.array([1]), np.array([1.0])) == 0.0  # 1.0 falls in the last bin


def test_matches_sklearn_on_random_data() -> None:
    y, p = random_problem(n=500, n_labels=6, seed=3)
    labels = [f"L{j}" for j in range(6)]
    thresholds = np.random.default_rng(4).uniform(0.3, 0.7, size=6)
    report = evaluate_predictions(y, p, labels, thresholds=thresholds)
    for j, label in enumerate(labels):
        row = report["per_class"][label]
        predicted = p[:, j] >= thresholds[j]
        assert row["auroc"] == pytest.approx(roc_auc_score(y[:, j], p[:, j]))
        assert row["average_precision"] == pytest.approx(average_precision_score(y[:, j], p[:, j]))
        assert row["f1"] == pytest.approx(f1_score(y[:, j], predicted))
        assert row["precision"] == pytest.approx(precision_score(y[:, j], predicted))
        assert row["recall"] == pytest.approx(recall_score(y[:, j], predicted))
        assert row["specificity"] == pytest.approx(recall_score(y[:, j], predicted, pos_label=0))
        assert row["brier"] == pytest.approx(brier_score_loss(y[:, j], p[:, j]))
        tn, fp, fn, tp = confusion_matrix(y[:, j], predicted).ravel()
        assert (row["tp"], row["fp"], row["fn"], row["tn"]) == (tp, fp, fn, tn)
        assert row["threshold"] == thresholds[j]
    aurocs = [report["per_class"][label]["auroc"] for label in labels]
    assert report["macro_auroc"] == pytest.approx(np.mean(aurocs))
    json.dumps(report, allow_nan=False)


def test_micro_differs_from_macro() -> None:
    # Each class is ranked perfectly on its own, but class B's scores all sit below class A's,
    # so pooling the two classes mixes B's positives with A's negatives.
    y = np.array([[1, 1], [0, 0], [1, 1], [0, 0]])
    p = np.array([[0.9, 0.4], [0.6, 0.1], [0.8, 0.3], [0.7, 0.2]])
    thresholds = [0.75, 0.25]
    report = evaluate_predictions(y, p, ["A", "B"], thresholds=thresholds)
    assert report["macro"]["auroc"] == 1.0
    assert report["micro"]["auroc"] == pytest.approx(roc_auc_score(y.ravel(), p.ravel()))
    assert report["micro"]["auroc"] < 1.0
    # Threshold metrics pool the per-class decisions, so both classes' thresholds apply.
    assert report["micro"]["f1"] == 1.0
    assert report["micro"]["f1"] == pytest.approx(f1_score(y.ravel(), (p >= thresholds).ravel()))
    assert report["micro"]["f1"] != pytest.approx(f1_score(y.ravel(), (p >= 0.5).ravel()))
    assert set(report["micro"]) >= {"auroc", "average_precision", "f1", "precision", "recall"}


def test_micro_and_macro_threshold_metrics_weight_classes_differently() -> None:
    y, p = random_problem(n=300, n_labels=5, seed=11)
    report = evaluate_predictions(y, p, list("ABCDE"))
    predicted = (p >= 0.5).ravel()
    assert report["micro"]["recall"] == pytest.approx(recall_score(y.ravel(), predicted))
    assert report["micro"]["precision"] == pytest.approx(precision_score(y.ravel(), predicted))
    assert report["micro"]["recall"] != pytest.approx(report["macro"]["recall"])


def test_rare_and_common_groups() -> None:
    y, p = random_problem(seed=5)
    report = evaluate_predictions(y, p, LABELS)
    rare = report["groups"]["rare"]
    assert rare["labels"] == [label for label in LABELS if label in DEFAULT_RARE]
    assert report["groups"]["common"]["labels"] == [label for label in LABELS if label not in DEFAULT_RARE]
    expected = np.mean([report["per_class"][label]["auroc"] for label in rare["labels"]])
    assert rare["auroc"] == pytest.approx(expected)
    assert rare["f1"] == pytest.approx(
        np.mean([report["per_class"][label]["f1"] for label in rare["labels"]])
    )

    custom = evaluate_predictions(y[:, :3], p[:, :3], LABELS[:3], rare=["Cardiomegaly", "Hernia"])
    assert custom["groups"]["rare"]["labels"] == ["Cardiomegaly"]  # Hernia is not evaluated here
    assert custom["groups"]["common"]["labels"] == ["Atelectasis", "Effusion"]
    none_rare = evaluate_predictions(y[:, :2], p[:, :2], LABELS[:2])
    assert none_rare["groups"]["rare"] == {"labels": [], **{m: None for m in none_rare["metrics"]}}


def test_report_schema() -> None:
    y, p = random_problem(n=120, seed=2)
    report = evaluate_predictions(y, p, LABELS)
    assert {"per_class", "macro_auroc", "macro", "micro", "groups", "undefined", "n_images"} <= set(report)
    keys = {"auroc", "average_precision", "f1", "precision", "recall", "specificity", "threshold"}
    keys |= {"positives", "negatives", "tp", "fp", "fn", "tn"}
    for row in report["per_class"].values():
        assert keys <= set(row)
        assert all(type(row[k]) is int for k in ("positives", "negatives", "tp", "fp", "fn", "tn"))
    assert list(report["per_class"]) == list(LABELS)
    json.dumps(report, allow_nan=False)


# --- validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda y, p: (y[:, :13], p), "y_true has 13 columns but 14 labels were given"),
        (lambda y, p: (y, p[:, :13]), "y_score has 13 columns but 14 labels were given"),
        (lambda y, p: (y[:10], p), "shape"),
        (
            lambda y, p: (y, np.where(np.arange(14) == 13, np.nan, p)),
            "y_score contains NaN in column 'Hernia'",
        ),
        (lambda y, p: (y, np.where(np.arange(14) == 0, np.inf, p)), "infinite value in column 'Atelectasis'"),
        (lambda y, p: (np.where(np.arange(14) == 2, 2, y), p), "column 'Effusion' contains 2"),
        (lambda y, p: (y, p * 4 - 2), "outside \\[0, 1\\].*logits"),
        (lambda y, p: (y[:, 0], p[:, 0]), "2-D"),
        (lambda y, p: (y[:0], p[:0]), "0 rows"),
    ],
)
def test_invalid_inputs_are_named(mutate, message) -> None:
    y, p = random_problem(n=20, seed=1)
    with pytest.raises(ValueError, match=message):
        evaluate_predictions(*mutate(y, p), LABELS)


def test_invalid_thresholds_and_metric_names() -> None:
    y, p = random_problem(n=20, seed=1)
    with pytest.raises(ValueError, match="13 thresholds were given for 14 labels"):
        evaluate_predictions(y, p, LABELS, thresholds=[0.5] * 13)
    with pytest.raises(UnknownNameError, match="Did you mean 'auroc'"):
        evaluate_predictions(y, p, LABELS, metrics=["aurc"])


# --- third-party metrics ---------------------------------------------------------------------------


class PredictedRatePlugin:
    """A third-party plugin: share of images predicted positive."""

    @hookimpl
    def register_metrics(self, register) -> None:
        register(
            "predicted_rate",
            Metric(
                "predicted_rate",
                lambda y, s, t: float(np.mean(s >= t)),
                needs_threshold=True,
                higher_is_better=False,
            ),
        )


@pytest.fixture
def predicted_rate_plugin():
    plugins.register_plugin(PredictedRatePlugin(), "test_predicted_rate")
    try:
        yield
    finally:
        plugins.unregister_plugin("test_predicted_rate")
    assert "predicted_rate" not in plugins.metrics


def test_third_party_metric_in_evaluation(predicted_rate_plugin) -> None:
    assert "predicted_rate" in cxrzoo.list_metrics()
    y, p = random_problem(n=200, n_labels=3, seed=8)
    labels = ["A", "B", "C"]
    thresholds = [0.2, 0.5, 0.8]
    report = evaluate_predictions(y, p, labels, thresholds=thresholds, metrics=["predicted_rate"])
    for j, label in enumerate(labels):
        assert report["per_class"][label]["predicted_rate"] == pytest.approx(
            np.mean(p[:, j] >= thresholds[j])
        )
        assert report["per_class"][label]["auroc"] is not None  # standard metrics stay
    assert report["micro"]["predicted_rate"] == pytest.approx(np.mean(p >= thresholds))
    assert report["undefined"]["predicted_rate"] == []
    assert "predicted_rate" not in evaluate_predictions(y, p, labels)["per_class"]["A"]


def test_third_party_metric_in_bootstrap(predicted_rate_plugin) -> None:
    y, p = random_problem(n=60, n_labels=2, seed=8)
    result = bootstrap_ci(y, p, ["A", "B"], n_resamples=20, metrics=["predicted_rate", "auroc"])
    ci = result["per_class"]["A"]["predicted_rate"]
    assert ci["estimate"] == pytest.approx(np.mean(p[:, 0] >= 0.5))
    assert ci["low"] <= ci["high"]


# --- calibration --------------------------------------------------------------------------------


def best_f1_by_brute_force(y: np.ndarray, s: np.ndarray) -> float:
    """F1 of ``s >= t`` for every observed score ``t``, from counts."""
    predicted = s[None, :] >= np.unique(s)[:, None]
    tp = (predicted & (y == 1)).sum(axis=1)
    fp = (predicted & (y == 0)).sum(axis=1)
    fn = (y == 1).sum() - tp
    return float(np.max(2 * tp / (2 * tp + fp + fn)))


def test_f1_calibration_known_optimum() -> None:
    y = np.array([[0], [0], [1], [0], [1], [1]])
    s = np.array([[0.10], [0.20], [0.30], [0.35], [0.40], [0.50]])
    # Best F1 = 6/7: threshold at 0.30 (tp 3, fp 1); the midpoint below it is 0.25.
    calibration = calibrate_thresholds(y, s, method="f1")
    assert isinstance(calibration, Calibration)
    assert calibration.thresholds[0] == pytest.approx(0.25)
    assert calibration.objective[0] == pytest.approx(6 / 7)
    assert calibration.fallback == []
    assert calibration.as_list() == [pytest.approx(0.25)]


@pytest.mark.parametrize("decimals", [None, 2])
def test_f1_calibration_reaches_brute_force_optimum(decimals) -> None:
    y, p = random_problem(n=300, n_labels=6, seed=21, signal=0.8, decimals=decimals)
    calibration = calibrate_thresholds(y, p, method="f1")
    for j in range(6):
        achieved = f1_score(y[:, j], p[:, j] >= calibration.thresholds[j])
        assert achieved == pytest.approx(best_f1_by_brute_force(y[:, j], p[:, j]))
        assert achieved == pytest.approx(calibration.objective[j])
        # Robust: strictly between two observed scores unless it is the lowest score.
        assert not np.any(p[:, j] == calibration.thresholds[j]) or calibration.thresholds[j] == p[:, j].min()


def test_youden_calibration_reaches_brute_force_optimum() -> None:
    y, p = random_problem(n=300, n_labels=4, seed=22, decimals=2)
    calibration = calibrate_thresholds(y, p, method="youden")
    assert calibration.method == "youden"
    for j in range(4):
        fpr, tpr, _ = roc_curve(y[:, j], p[:, j])
        predicted = p[:, j] >= calibration.thresholds[j]
        tn, fp, fn, tp = confusion_matrix(y[:, j], predicted).ravel()
        assert tp / (tp + fn) - fp / (fp + tn) == pytest.approx(np.max(tpr - fpr))


def test_calibration_rescues_f1_when_all_scores_are_below_half() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random((400, 3)) < [0.02, 0.05, 0.1]).astype(int)
    y[:8] = 1  # at least a few positives per class
    p = 0.05 + 0.3 * y + 0.1 * rng.random((400, 3))  # all < 0.5, positives ranked first
    labels = ["A", "B", "C"]
    at_half = evaluate_predictions(y, p, labels)
    assert all(at_half["per_class"][label]["f1"] == 0.0 for label in labels)
    calibration = calibrate_thresholds(y, p)
    calibrated = evaluate_predictions(y, p, labels, thresholds=calibration.as_list())
    for label in labels:
        assert calibrated["per_class"][label]["f1"] == 1.0
    assert evaluate_predictions(y, p, labels, thresholds=calibration) == calibrated


def test_calibration_fallback_is_reported() -> None:
    y = np.array([[0, 1, 1], [0, 1, 0], [0, 1, 1], [0, 1, 0]])
    p = np.array([[0.1, 0.9, 0.8], [0.2, 0.7, 0.1], [0.3, 0.8, 0.9], [0.4, 0.6, 0.3]])
    f1 = calibrate_thresholds(y, p, method="f1")
    assert f1.fallback == [0]
    assert f1.thresholds[0] == 0.5
    assert np.isnan(f1.objective[0])
    assert f1.thresholds[1] == pytest.approx(0.6)  # all positive: the lowest score
    youden = calibrate_thresholds(y, p, method="youden", fallback_threshold=0.9)
    assert youden.fallback == [0, 1]
    assert youden.thresholds[:2].tolist() == [0.9, 0.9]
    assert youden.to_dict()["objective"][0] is None
    json.dumps(youden.to_dict(), allow_nan=False)
    with pytest.raises(ValueError, match="Unknown calibration method"):
        calibrate_thresholds(y, p, method="accuracy")


# --- bootstrap --------------------------------------------------------------------------------------


def test_vectorised_rank_metrics_equal_sklearn_on_resampled_data() -> None:
    rng = np.random.default_rng(7)
    n = 150
    y = (rng.random(n) < 0.3).astype(int)
    s = np.round(rng.random(n) * 0.6 + 0.3 * y, 1)  # heavy ties
    assert len(np.unique(s)) < 15
    weights = resample_weights(np.random.default_rng(1), 8, n)
    values = rank_metrics(weights, y, s, average_precision=True)
    for b in range(8):
        index = np.repeat(np.arange(n), weights[b])
        assert values["auroc"][b] == pytest.approx(roc_auc_score(y[index], s[index]), abs=1e-12)
        assert values["average_precision"][b] == pytest.approx(
            average_precision_score(y[index], s[index]), abs=1e-12
        )
    # Without resampling it is the plain metric.
    ones = rank_metrics(np.ones((1, n), dtype=np.int32), y, s)
    assert ones["auroc"][0] == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_rank_metrics_undefined_rows_are_nan() -> None:
    y = np.array([0, 1, 0, 1])
    s = np.array([0.1, 0.9, 0.2, 0.8])
    weights = np.array([[1, 0, 1, 0], [1, 1, 1, 1]], dtype=np.int32)  # first row: no positives
    values = rank_metrics(weights, y, s)["auroc"]
    assert np.isnan(values[0]) and values[1] == 1.0


def test_vectorised_threshold_and_calibration_metrics_equal_explicit_resamples() -> None:
    y, p = random_problem(n=80, n_labels=3, seed=9, decimals=2)
    labels = ["A", "B", "C"]
    thresholds = np.array([0.4, 0.5, 0.6])
    weights = resample_weights(np.random.default_rng(2), 5, len(y))
    values = _ResampledMetrics(y.astype(np.int8), p, thresholds, list(DEFAULT_METRICS))(weights)
    for b in range(5):
        index = np.repeat(np.arange(len(y)), weights[b])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            report = evaluate_predictions(y[index], p[index], labels, thresholds=thresholds)
        for name in DEFAULT_METRICS:
            for j, label in enumerate(labels):
                expected = report["per_class"][label][name]
                got = values[name][b, j]
                assert (np.isnan(got) and expected is None) or got == pytest.approx(expected, abs=1e-12)


def test_bootstrap_ci_contains_estimate_and_matches_evaluation() -> None:
    y, p = random_problem(n=300, seed=12)
    thresholds = calibrate_thresholds(y, p).as_list()
    result = bootstrap_ci(y, p, LABELS, thresholds=thresholds, n_resamples=200, seed=1)
    report = evaluate_predictions(y, p, LABELS, thresholds=thresholds)
    for label in LABELS:
        for name in ("auroc", "f1", "precision", "recall"):
            ci = result["per_class"][label][name]
            assert ci["estimate"] == pytest.approx(report["per_class"][label][name])
            assert ci["low"] <= ci["estimate"] <= ci["high"]
            assert ci["low"] <= ci["mean"] <= ci["high"]
    macro = result["macro_auroc"]
    assert macro == result["macro"]["auroc"]
    assert macro["estimate"] == pytest.approx(report["macro_auroc"])
    assert macro["low"] < macro["estimate"] < macro["high"]
    assert result["n_resamples"] == 200 and result["method"] == "percentile"
    json.dumps(result, allow_nan=False)


def test_bootstrap_ci_narrows_with_more_data() -> None:
    def width(n: int) -> float:
        y, p = random_problem(n=n, n_labels=2, seed=13)
        ci = bootstrap_ci(y, p, ["A", "B"], n_resamples=300, seed=0)["per_class"]["B"]["auroc"]
        return ci["high"] - ci["low"]

    assert width(2000) < 0.6 * width(200)


def test_bootstrap_is_deterministic_and_paired() -> None:
    y, p = random_problem(n=100, n_labels=3, seed=14)
    first = bootstrap_ci(y, p, ["A", "B", "C"], n_resamples=50, seed=5)
    assert first == bootstrap_ci(y, p, ["A", "B", "C"], n_resamples=50, seed=5)
    assert first != bootstrap_ci(y, p, ["A", "B", "C"], n_resamples=50, seed=6)
    # Paired: two identical columns get identical intervals.
    y2, p2 = np.repeat(y[:, :1], 2, axis=1), np.repeat(p[:, :1], 2, axis=1)
    twin = bootstrap_ci(y2, p2, ["A", "A2"], n_resamples=50)["per_class"]
    assert twin["A"] == twin["A2"]


def test_bootstrap_undefined_classes() -> None:
    y, p = random_problem(n=100, n_labels=3, seed=15)
    y[:, 1] = 0  # no positives anywhere
    y[:, 2] = 0
    y[0, 2] = 1  # one positive: missing from about 37 % of resamples
    result = bootstrap_ci(y, p, ["A", "B", "C"], n_resamples=200, seed=0)
    assert result["per_class"]["B"]["auroc"] is None
    assert result["per_class"]["B"]["recall"] is None
    rare = result["per_class"]["C"]["auroc"]
    assert rare is not None and 100 < rare["n_valid"] < 160
    # The macro averages A and C, dropping resamples where either is undefined.
    assert result["macro_auroc"]["n_valid"] <= min(
        rare["n_valid"], result["per_class"]["A"]["auroc"]["n_valid"]
    )


def test_bootstrap_rejects_bad_arguments() -> None:
    y, p = random_problem(n=30, n_labels=2, seed=1)
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci(y, p, ["A", "B"], confidence=95)
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_ci(y, p, ["A", "B"], n_resamples=0)
    with pytest.raises(ValueError, match="3 labels"):
        bootstrap_ci(y, p, ["A", "B", "C"])
    with pytest.raises(UnknownNameError):
        bootstrap_ci(y, p, ["A", "B"], metrics=["no_such_metric"])


# --- patient folds ------------------------------------------------------------------------------------


def test_patient_kfold_keeps_patients_together() -> None:
    rng = np.random.default_rng(0)
    patients = rng.integers(0, 120, size=600)
    y = (rng.random((600, 14)) < np.linspace(0.01, 0.3, 14)).astype(int)
    folds = patient_kfold(patients, y, k=5, seed=3)
    assert len(folds) == 5
    seen: set[int] = set()
    for train, test in folds:
        assert not set(patients[train]) & set(patients[test])
        assert not set(test.tolist()) & seen
        seen |= set(test.tolist())
        assert len(train) + len(test) == 600
    assert seen == set(range(600))
    test_patients = [set(patients[test]) for _, test in folds]
    for a in range(5):
        for b in range(a + 1, 5):
            assert not test_patients[a] & test_patients[b]
    again = patient_kfold(patients, y, k=5, seed=3)
    assert all(np.array_equal(t1, t2) for (_, t1), (_, t2) in zip(folds, again))
    other = patient_kfold(patients, y, k=5, seed=4)
    assert not all(np.array_equal(t1, t2) for (_, t1), (_, t2) in zip(folds, other))


def test_patient_kfold_spreads_rare_findings() -> None:
    rng = np.random.default_rng(1)
    patients = np.arange(500)  # one image each
    y = np.zeros((500, 3), dtype=int)
    y[rng.choice(500, 10, replace=False), 0] = 1  # rare
    y[rng.random(500) < 0.3, 1] = 1
    folds = patient_kfold([f"p{i}" for i in patients], y, k=5)
    assert [int(y[test, 0].sum()) for _, test in folds] == [2, 2, 2, 2, 2]


def test_rarest_positive_and_errors() -> None:
    y = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0], [1, 1, 1]])
    assert rarest_positive(y).tolist() == [1, 0, 3, 2]
    with pytest.raises(ValueError, match="3 patients"):
        patient_kfold([1, 1, 2, 3], y, k=5)
    with pytest.raises(ValueError, match="3 patient ids were given for 4 images"):
        patient_kfold([1, 2, 3], y, k=2)
