"""Cross-dataset evaluation: a model trained on real NIH images, scored on a CheXpert-layout
folder, reports the findings the two share and lists the rest as not scorable, with why."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cxrzoo.cli import main
from cxrzoo.data.synthetic import write_chexpert_layout

TINY = ["--set", "backbone=test_resnet", "--set", "reduction=4", "--image-size", "32"]
# Findings CheXpert's label set has in common with NIH's 14 (by the vocabulary's synonyms).
SHARED = {"Atelectasis", "Cardiomegaly", "Effusion", "Pneumonia", "Pneumothorax", "Consolidation", "Edema"}


@pytest.mark.realdata
def test_nih_model_on_a_chexpert_folder(nih_sample, tmp_path, monkeypatch):
    monkeypatch.setenv("CXRZOO_HOME", str(tmp_path / "home"))
    runner = CliRunner()
    args = ["train", "chest_xray_attention", "--data", str(nih_sample), "--epochs", "2", "--recipe", "quick"]
    trained = runner.invoke(main, [*args, "--name", "nih64", "--no-progress", *TINY])
    assert trained.exit_code == 0, trained.output
    chexpert = write_chexpert_layout(tmp_path / "CheXpert-v1.0-small", 300, size=64, seed=5)
    report = tmp_path / "report"
    evaluated = runner.invoke(
        main,
        [
            "evaluate",
            "nih64",
            "--data",
            str(chexpert),
            "--bootstrap",
            "0",
            "--report",
            str(report),
            "--no-progress",
        ],
    )
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["data"]["dataset"] == "chexpert"
    scored = {k for k, v in metrics["per_class"].items() if v["auroc"] is not None}
    assert scored and scored <= SHARED
    not_scorable = metrics["not_scorable"]
    for finding in (
        "Infiltration",
        "Mass",
        "Nodule",
        "Emphysema",
        "Fibrosis",
        "Pleural_Thickening",
        "Hernia",
    ):
        assert "absent from the data" in not_scorable[finding]
        assert (
            metrics["per_class"][finding]["positives"] == 0
            and metrics["per_class"][finding]["negatives"] == 0
        )
    assert set(not_scorable) | scored == set(metrics["labels"])
    text = (report / "report.md").read_text()
    assert "Findings these data cannot score" in text and "Hernia: absent from the data" in text
    assert "not scorable" in evaluated.output
