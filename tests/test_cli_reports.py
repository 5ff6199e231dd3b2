"""evaluate / compare / predict / explain / export / crossval on small trained models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import cxrzoo
from cxrzoo.cli import main
from cxrzoo.training.run import DataSpec, load_splits

pytestmark = pytest.mark.xdist_group("reports")

TINY = [
    "--synthetic-n",
    "160",
    "--recipe",
    "quick",
    "--epochs",
    "2",
    "--image-size",
    "32",
    "--no-progress",
    "--set",
    "backbone=test_resnet",
]


def invoke(*args: str):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CXRZOO_HOME", str(home))
        invoke("train", "chest_xray_attention", *TINY, "--set", "reduction=4")
        invoke("train", "rare_disease", *TINY, "--set", "feature_dim=8")
        model = cxrzoo.load("chest_xray_attention")
        test = load_splits(DataSpec.from_dict(model.metadata["training"]), echo=lambda _m: None).test
        yield {"home": home, "images": test["path"].tolist()[:3]}


def test_evaluate_writes_the_report(trained, tmp_path):
    out = tmp_path / "report"
    result = invoke(
        "evaluate", "chest_xray_attention", "--report", str(out), "--bootstrap", "200", "--no-progress"
    )
    assert "macro AUROC" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["calibrated"] is True
    assert set(metrics["per_class"]) == set(cxrzoo.LABELS)
    for entry in metrics["per_class"].values():
        assert {"auroc", "f1", "precision", "recall", "threshold", "tp", "fp", "fn", "tn"} <= set(entry)
    assert metrics["macro_auroc_ci"] is None or metrics["macro_auroc_ci"]["low"] <= metrics["macro_auroc"]
    assert {"sex=M", "sex=F"} <= set(metrics["subgroups"])
    for name in (
        "per_class.csv",
        "confusion.csv",
        "predictions.csv",
        "roc_curves.png",
        "rare_vs_common.png",
        "confusion.png",
        "subgroups.png",
        "report.md",
    ):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    report = (out / "report.md").read_text()
    assert "![ROC curves](roc_curves.png)" in report and "Hernia" in report


def test_compare_names_the_best(trained):
    result = invoke(
        "compare", "chest_xray_attention", "rare_disease", "--bootstrap", "0", "--json", "--no-progress"
    )
    data = json.loads(result.stdout)
    assert [m["model"] for m in data["models"]] == ["chest_xray_attention", "rare_disease"]
    scores = {m["model"]: m["macro_auroc"] for m in data["models"]}
    assert data["best"] == max(scores, key=scores.get)
    assert data["models"][0]["images"] == data["models"][1]["images"]  # same test images for both


def test_predict_prints_probabilities_and_calibrated_calls(trained):
    result = invoke("predict", "chest_xray_attention", *trained["images"], "--json")
    data = json.loads(result.stdout)
    assert data["calibrated"] is True and len(data["results"]) == 3
    model = cxrzoo.load("chest_xray_attention")
    for r in data["results"]:
        assert list(r["probabilities"]) == list(cxrzoo.LABELS)
        expected = [lab for lab, p in r["probabilities"].items() if p >= r["thresholds"][lab]]
        assert r["positive"] == expected
        assert r["thresholds"] == dict(zip(model.labels, model.thresholds.tolist()))
    text = invoke("predict", "chest_xray_attention", trained["images"][0]).output
    assert "threshold" in text and "positive:" in text


def test_predict_reports_a_bad_image_and_goes_on(trained, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    result = CliRunner().invoke(
        main, ["predict", "chest_xray_attention", str(bad), trained["images"][0], "--json"]
    )
    assert result.exit_code == 1
    assert "broken.png" in result.stderr and "Traceback" not in result.output
    data = json.loads(result.stdout)
    assert len(data["results"]) == 1 and data["failed"][0]["image"] == str(bad)


def test_explain_writes_gradcam_overlays(trained, tmp_path):
    result = invoke("explain", "rare_disease", trained["images"][0], "--out", str(tmp_path), "--top", "2")
    written = sorted(Path(tmp_path).glob("*.png"))
    assert len(written) == 2 and "probability" not in result.output
    import cv2

    overlay = cv2.imread(str(written[0]))
    assert overlay is not None and overlay.ndim == 3 and overlay.shape[0] >= 32
    # A colour map was drawn: the channels differ somewhere.
    assert np.abs(overlay[..., 0].astype(int) - overlay[..., 2].astype(int)).max() > 10


def test_export_to_onnx_matches_pytorch(trained, tmp_path):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "m.onnx"
    result = invoke("export", "chest_xray_attention", "--format", "onnx", "--out", str(out))
    assert out.is_file() and "max |diff|" in result.output


def test_crossval_folds_are_by_patient(trained):
    result = invoke(
        "crossval", "chest_xray_attention", "--folds", "2", *TINY, "--set", "reduction=4", "--json"
    )
    data = json.loads(result.stdout)
    assert len(data["folds"]) == 2
    assert sum(f["images"] for f in data["folds"]) == 128  # every train_val image validated once
    assert data["macro_auroc_mean"] is not None
