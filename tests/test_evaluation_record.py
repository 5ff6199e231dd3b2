"""What ``cxrzoo evaluate`` leaves behind: a plugin's metric in the output, the CSV and the
card; held-out figures recorded in config.json and the card's model-index, validation
figures labelled as selection metrics; and external predictions scored like a model's."""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from huggingface_hub import ModelCard

from cxrzoo import hookimpl, plugins, store
from cxrzoo.cli import main
from cxrzoo.metrics import Metric

TINY = ["--set", "backbone=test_resnet", "--set", "reduction=4", "--image-size", "32"]


def _fraction_above_half(y_true: np.ndarray, y_score: np.ndarray, threshold: float | None = None) -> float:
    return float(np.mean(y_score >= 0.5))


@pytest.fixture
def metric_plugin():
    module = types.ModuleType("cxrzoo_test_metric_plugin")

    @hookimpl
    def register_metrics(register):
        register(
            "share_high",
            Metric(
                "share_high", _fraction_above_half, needs_threshold=False, description="Share of p >= 0.5"
            ),
        )

    module.register_metrics = register_metrics
    plugins.register_plugin(module, "test-metric-plugin")
    yield "share_high"
    plugins.unregister_plugin("test-metric-plugin")


@pytest.fixture
def trained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CXRZOO_HOME", str(tmp_path / "home"))
    args = ["train", "chest_xray_attention", "--synthetic-n", "120", "--epochs", "2", "--recipe", "quick"]
    result = CliRunner().invoke(main, [*args, "--no-progress", *TINY], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return "chest_xray_attention"


def test_a_plugin_metric_appears_in_output_csv_and_card(
    trained: str, metric_plugin: str, tmp_path: Path
) -> None:
    report = tmp_path / "report"
    args = ["evaluate", trained, "--metric", metric_plugin, "--bootstrap", "0", "--report", str(report)]
    result = CliRunner().invoke(main, [*args, "--no-progress"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "share_high" in result.output
    frame = pd.read_csv(report / "per_class.csv")
    assert metric_plugin in frame.columns and frame[metric_plugin].between(0, 1).all()
    metrics = json.loads((report / "metrics.json").read_text())
    predictions = pd.read_csv(report / "predictions.csv")
    first = next(iter(metrics["per_class"]))
    assert metrics["per_class"][first][metric_plugin] == pytest.approx(
        float(np.mean(predictions[first] >= 0.5))
    )
    card = (store.model_path(trained) / "README.md").read_text()
    assert "share_high" in card
    assert "share_high" in (report / "report.md").read_text()


def test_card_shows_held_out_metrics_after_evaluate(trained: str) -> None:
    folder = store.model_path(trained)
    before = ModelCard((folder / "README.md").read_text())
    assert "Validation (selection) metrics" in before.text and "Held-out evaluation" not in before.text
    assert {r.dataset_split for r in before.data.eval_results} == {"val"}
    sha_before = json.loads((folder / "config.json").read_text())["config_sha256"]

    result = CliRunner().invoke(main, ["evaluate", trained, "--bootstrap", "0", "--json", "--no-progress"])
    assert result.exit_code == 0, result.output
    held_out = json.loads(result.stdout)["macro_auroc"]

    doc = json.loads((folder / "config.json").read_text())
    assert doc["evaluation"]["split"] == "test" and doc["evaluation"]["macro_auroc"] == held_out
    assert doc["evaluation"]["evaluated"] and doc["evaluation"]["dataset"] == "synthetic"
    assert doc["evaluations"][-1]["macro_auroc"] == held_out
    assert doc["config_sha256"] == sha_before  # sealed keys untouched: the model still loads
    card = ModelCard((folder / "README.md").read_text())
    assert "Held-out evaluation" in card.text and "Validation (selection) metrics" in card.text
    macro = [r for r in card.data.eval_results if r.metric_config == "macro"]
    assert macro[0].dataset_split == "test" and macro[0].metric_value == pytest.approx(held_out, abs=1e-4)
    import cxrzoo

    cxrzoo.load(trained)


def test_external_predictions_are_scored_like_a_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sklearn.metrics import roc_auc_score

    from cxrzoo.data.spec import DataSpec, load_splits
    from cxrzoo.data.synthetic import write_kaggle_layout

    monkeypatch.setenv("CXRZOO_HOME", str(tmp_path / "home"))
    root = write_kaggle_layout(tmp_path / "nih", 200, size=32, seed=4)
    test = load_splits(DataSpec(data=str(root)), echo=lambda _m: None).test
    rng = np.random.default_rng(0)
    effusion = test["Effusion"].to_numpy(float)
    noisy = rng.random(len(test))
    frame = pd.DataFrame(
        {
            "Image Index": test["image"],
            "prob_Effusion": effusion * 0.6 + 0.2,  # perfect ranking: AUROC 1
            "prob_Cardiomegaly": 1 - (test["Cardiomegaly"].to_numpy(float) * 0.6 + 0.2),  # reversed: 0
            "prob_Infiltration": noisy,
        }
    )
    csv = tmp_path / "external.csv"
    frame.to_csv(csv, index=False)
    report = tmp_path / "report"
    args = [
        "evaluate",
        "--predictions",
        str(csv),
        "--data",
        str(root),
        "--bootstrap",
        "0",
        "--report",
        str(report),
    ]
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["labels"] == ["Effusion", "Cardiomegaly", "Infiltration"]
    assert metrics["per_class"]["Effusion"]["auroc"] == pytest.approx(1.0)
    assert metrics["per_class"]["Cardiomegaly"]["auroc"] == pytest.approx(0.0)
    expected = roc_auc_score(test["Infiltration"].to_numpy(int), noisy)
    assert metrics["per_class"]["Infiltration"]["auroc"] == pytest.approx(expected)
    assert metrics["n_images"] == len(test) and metrics["calibrated"] is False
    for name in ("metrics.json", "per_class.csv", "report.md", "predictions.csv", "roc_curves.png"):
        assert (report / name).is_file()
    # A file that does not hold probabilities is one clear line naming the line and column.
    frame.loc[3, "prob_Effusion"] = 7.0
    frame.to_csv(csv, index=False)
    bad = CliRunner().invoke(main, ["evaluate", "--predictions", str(csv), "--data", str(root)])
    assert bad.exit_code == 3 and "line 5" in bad.output and "prob_Effusion" in bad.output
