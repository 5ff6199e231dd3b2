"""Training on two sources with different label spaces learns every finding each one knows.

NIH-layout and CheXpert-layout phantoms are trained on together: the NIH-only findings are
unknown (NaN) on CheXpert images and CheXpert's "No Finding" is unknown on NIH images; the
masked loss must still teach all of them, scored on each source's held-out images."""

from __future__ import annotations

import numpy as np
import pytest

from cxrzoo.data.spec import DataSpec, load_splits
from cxrzoo.data.synthetic import write_chexpert_layout, write_kaggle_layout
from cxrzoo.labels import LABELS, table_targets
from cxrzoo.metrics import evaluate_predictions
from cxrzoo.plugins import models
from cxrzoo.training.run import predict_table, train_model

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("learning")]

MODEL_LABELS = (*LABELS, "No Finding")
NIH_ONLY = ("Infiltration", "Mass", "Nodule", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia")


def test_nih_and_chexpert_phantoms_train_together(tmp_path, monkeypatch):
    monkeypatch.setenv("CXRZOO_HOME", str(tmp_path / "home"))
    common = {"size": 64, "prevalence": "uniform:0.2", "images_per_patient": 2}
    nih = write_kaggle_layout(tmp_path / "nih", 1200, seed=21, **common)
    chexpert = write_chexpert_layout(tmp_path / "chexpert", 1200, seed=22, **common)
    spec = DataSpec(data=[str(nih), str(chexpert)])
    splits = load_splits(spec, echo=lambda _m: None)
    train = splits.train
    targets = table_targets(train, MODEL_LABELS)
    from_nih = (train["source"] == "nih14").to_numpy()
    no_finding = MODEL_LABELS.index("No Finding")
    # Unknown is unknown, both ways: nothing here may have been filled with 0.
    assert np.isnan(targets[from_nih, no_finding]).all()
    assert not np.isnan(targets[~from_nih, no_finding]).all()
    for name in NIH_ONLY:
        assert np.isnan(targets[~from_nih, MODEL_LABELS.index(name)]).all()

    overrides = {
        k: v
        for k, v in models.get("chest_xray_attention").tiny_config().to_dict().items()
        if k not in {"labels"}
    } | {"image_size": 64, "labels": list(MODEL_LABELS)}
    model = train_model(
        "chest_xray_attention",
        data=[str(nih), str(chexpert)],
        recipe="quick",
        recipe_overrides={"epochs": 20, "batch_size": 32, "lr": 3e-3},
        config_overrides=overrides,
        progress=False,
        echo=lambda _m: None,
    )
    # NIH: its held-out test split. CheXpert: its official validation set (valid.csv), the
    # only CheXpert labels with explicit negatives for No Finding, as in the real release.
    for source, split, expected in (("nih14", "test", set(LABELS)), ("chexpert", "val", None)):
        table = getattr(splits, split)
        probs, data = predict_table(model, table, progress=False, echo=lambda _m: None)
        rows = table.set_index("image").loc[data.names].reset_index()
        mask = (rows["source"] == source).to_numpy()
        assert mask.sum() > 50
        scores = evaluate_predictions(data.labels[mask], probs[mask], model.labels)
        scored = {k for k, v in scores["per_class"].items() if v["auroc"] is not None}
        if expected is not None:
            assert scored == expected and "No Finding" in scores["not_scorable"]
        else:  # CheXpert's valid.csv: the findings it shares with the phantoms, and No Finding
            assert "No Finding" in scored and not scored & set(NIH_ONLY)
        for name in scored:
            assert scores["per_class"][name]["auroc"] >= 0.7, (source, name, scores["per_class"][name])
        assert scores["macro_auroc"] >= 0.85, (source, scores["macro_auroc"])
