"""An unknown label (NaN) is never read as negative: not by the loss, the class weights, the
calibration, the metrics or the bootstrap. Each test builds data where reading unknowns as 0
gives a different answer, so it fails if that ever happens."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from cxrzoo.labels import LABELS, align, canonical, table_targets
from cxrzoo.metrics import bootstrap_ci, calibrate_thresholds, evaluate_predictions
from cxrzoo.nn import masked_bce
from cxrzoo.training.trainer import positive_weights


def test_masked_bce_ignores_unknown_targets_and_their_gradients() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.3, 1.5, -2.0]], requires_grad=True)
    targets = torch.tensor([[1.0, float("nan"), 0.0], [float("nan"), 1.0, float("nan")]])
    loss = masked_bce(logits, targets)
    known = ~torch.isnan(targets)
    expected = F.binary_cross_entropy_with_logits(logits[known], targets[known])
    assert torch.allclose(loss, expected)
    as_zero = F.binary_cross_entropy_with_logits(logits, torch.nan_to_num(targets))
    assert not torch.allclose(loss, as_zero)
    loss.backward()
    assert torch.all(logits.grad[~known] == 0) and torch.all(logits.grad[known] != 0)


def test_masked_bce_equals_plain_bce_when_everything_is_known() -> None:
    g = torch.Generator().manual_seed(0)
    logits, targets = torch.randn(8, 5, generator=g), (torch.rand(8, 5, generator=g) > 0.5).float()
    weight = torch.linspace(1, 3, 5)
    assert torch.allclose(
        masked_bce(logits, targets, weight),
        F.binary_cross_entropy_with_logits(logits, targets, pos_weight=weight),
    )


def test_class_weights_count_known_entries_only() -> None:
    labels = np.array([[1.0], [0.0], [np.nan], [np.nan], [np.nan], [np.nan]])
    assert positive_weights(labels, 100.0).item() == pytest.approx(1.0)  # 1 positive, 1 negative
    assert positive_weights(np.nan_to_num(labels), 100.0).item() == pytest.approx(5.0)


def _data():
    rng = np.random.default_rng(0)
    n = 200
    y = (rng.random((n, 2)) < 0.3).astype(float)
    s = np.clip(y * 0.3 + rng.random((n, 2)) * 0.7, 0, 1)
    # Unknown rows get the highest scores: read as negatives they would drag the AUROC down.
    unknown = rng.random((n, 2)) < 0.3
    s[unknown] = 0.99
    y_nan = np.where(unknown, np.nan, y)
    return y, y_nan, s, unknown


def test_metrics_score_each_finding_over_its_known_images() -> None:
    y, y_nan, s, unknown = _data()
    report = evaluate_predictions(y_nan, s, ["A", "B"])
    for j, name in enumerate(["A", "B"]):
        keep = ~unknown[:, j]
        assert report["per_class"][name]["auroc"] == pytest.approx(roc_auc_score(y[keep, j], s[keep, j]))
        assert report["per_class"][name]["unknown"] == int(unknown[:, j].sum())
        assert report["per_class"][name]["positives"] == int(y[keep, j].sum())
    as_zero = evaluate_predictions(np.nan_to_num(y_nan), s, ["A", "B"])
    assert as_zero["macro_auroc"] < report["macro_auroc"] - 0.05


def test_a_finding_absent_from_the_data_is_not_scorable() -> None:
    _, y_nan, s, _ = _data()
    y_nan[:, 1] = np.nan
    report = evaluate_predictions(y_nan, s, ["A", "B"])
    assert report["per_class"]["B"]["auroc"] is None and "B" in report["undefined"]["auroc"]
    assert "absent" in report["not_scorable"]["B"] and "A" not in report["not_scorable"]
    y_nan[:, 1] = np.where(np.isnan(y_nan[:, 1]), np.nan, 0)
    y_nan[:5, 1] = 0
    assert "no known positives" in evaluate_predictions(y_nan, s, ["A", "B"])["not_scorable"]["B"]


def test_calibration_uses_known_images_only() -> None:
    y, y_nan, s, unknown = _data()
    masked = calibrate_thresholds(y_nan, s)
    for j in range(2):
        keep = ~unknown[:, j]
        alone = calibrate_thresholds(y[keep, j : j + 1], s[keep, j : j + 1])
        assert masked.thresholds[j] == pytest.approx(alone.thresholds[0])


def test_bootstrap_estimates_match_the_masked_metrics() -> None:
    _, y_nan, s, _ = _data()
    report = evaluate_predictions(y_nan, s, ["A", "B"], metrics=["brier"])
    ci = bootstrap_ci(y_nan, s, ["A", "B"], n_resamples=50, metrics=("auroc", "f1", "brier"))
    for name in ("A", "B"):
        for metric in ("auroc", "f1", "brier"):
            assert ci["per_class"][name][metric]["estimate"] == pytest.approx(
                report["per_class"][name][metric]
            )


def test_alignment_fills_missing_model_labels_with_nan_never_zero() -> None:
    source = ("Pleural Effusion", "Cardiomegaly", "Support Devices")
    matrix = np.array([[1, 0, 1], [0, np.nan, 0]], dtype=np.float32)
    targets, known = align(source, matrix, LABELS)
    effusion, cardio, hernia = LABELS.index("Effusion"), LABELS.index("Cardiomegaly"), LABELS.index("Hernia")
    assert targets[:, effusion].tolist() == [1, 0] and canonical("Pleural Effusion") == "Effusion"
    assert targets[0, cardio] == 0 and np.isnan(targets[1, cardio])
    assert np.isnan(targets[:, hernia]).all() and not known[:, hernia].any()
    table = pd.DataFrame({"image": ["a", "b"], "path": ["x", "y"], **dict(zip(source, matrix.T))})
    assert np.array_equal(table_targets(table, LABELS), targets, equal_nan=True)
