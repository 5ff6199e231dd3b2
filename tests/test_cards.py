"""Model cards: rendered from model_cards/<architecture>.md, parsed back by huggingface_hub."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from huggingface_hub import ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results

import cxrzoo
from cxrzoo import cards, store
from cxrzoo.labels import LABELS

ARCHITECTURES = ("advanced_resnet", "chest_xray_attention", "rare_disease", "ensemble")


@pytest.fixture(autouse=True)
def _store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CXRZOO_HOME", str(tmp_path / "cxrzoo"))


def tiny_model() -> cxrzoo.ZooModel:
    from cxrzoo.plugins import models

    torch.manual_seed(0)
    return cxrzoo.create_model("chest_xray_attention", models.get("chest_xray_attention").tiny_config())


def trained_metadata() -> dict[str, Any]:
    per_class = {
        label: {
            "auroc": None if label == "Hernia" else round(0.6 + i / 50, 4),
            "f1": 0.25 + i / 100,
            "precision": 0.2,
            "recall": 0.7,
            "threshold": 0.05 + i / 100,
            "positives": 3 + i,
        }
        for i, label in enumerate(LABELS)
    }
    return {
        "training": {
            "dataset": "nih14",
            "data": "/data/nih-chestxray14",
            "fraction": 0.1,
            "seed": 42,
            "image_size": 64,
            "split": {
                "train": {"images": 8000, "patients": 2500},
                "val": {"images": 2000, "patients": 600},
                "test": 2500,
            },
            "recipe": {
                "name": "quick",
                "optimizer": "adamw",
                "lr": 3e-4,
                "epochs": 5,
                "batch_size": 64,
                "loss": "bce",
            },
        },
        "metrics": {"split": "test", "dataset": "nih14", "macro_auroc": 0.71234, "per_class": per_class},
        "calibration": {"method": "f1", "split": "val"},
    }


def trained_model() -> cxrzoo.ZooModel:
    model = tiny_model()
    model.set_thresholds([0.05 + i / 100 for i in range(len(LABELS))])
    model.metadata.update(trained_metadata())
    return model


def test_card_of_an_evaluated_model_passes_huggingface_hub_parsing() -> None:
    folder = store.save(trained_model(), "evaluated")
    text = (folder / "README.md").read_text()
    sha = json.loads((folder / "config.json").read_text())["weights"]["sha256"]

    card = ModelCard(text)
    data = card.data.to_dict()
    assert data["license"] == "apache-2.0"
    assert data["library_name"] == "cxrzoo"
    assert data["pipeline_tag"] == "image-classification"
    assert data["datasets"] == ["nih-chest-xrays"]
    assert "base_model" not in data
    assert set(data["tags"]) == {
        "cxrzoo",
        "chest-x-ray",
        "medical-imaging",
        "multi-label-classification",
        "chest_xray_attention",
    }

    model_name, results = model_index_to_eval_results(data["model-index"])
    assert model_name == "cxrzoo-chest_xray_attention"
    by_name = {r.metric_name: r for r in results}
    assert by_name["Macro AUROC"].metric_value == pytest.approx(0.7123)
    expected = {f"AUROC {label}" for label in LABELS if label != "Hernia"}  # None is skipped
    assert set(by_name) == expected | {"Macro AUROC"}
    assert by_name["AUROC Cardiomegaly"].metric_value == pytest.approx(0.62)
    for result in results:
        assert result.task_type == "image-classification"
        assert result.metric_type == "roc_auc"
        assert result.dataset_name == "NIH ChestX-ray14"
        assert result.dataset_type == "nih-chest-xrays"
        assert result.dataset_split == "test"

    # ModelCard.load reads the file the same way the Hub does.
    loaded = ModelCard.load(folder / "README.md")
    assert [(r.metric_name, r.metric_value) for r in loaded.data.eval_results] == [
        (r.metric_name, r.metric_value) for r in results
    ]

    body = card.text
    assert "| Finding | AUROC | F1 | Precision | Recall | Threshold | Positives |" in body
    assert re.search(r"\| Cardiomegaly \| 0\.620 \| 0\.260 \| 0\.200 \| 0\.700 \| 0\.060 \| 4 \|", body)
    assert "| Hernia | – |" in body
    assert "| **Macro** | **0.712** |" in body
    assert sha in body
    assert "seed `42`" in body and "| optimizer | `adamw` |" in body
    assert "| val | 2,000 | 600 |" in body and "| test | 2,500 | – |" in body
    assert "1. `center_crop`" in body and "2. `resize`: to 32 x 32 px" in body and "`standardize`" in body
    assert "maximise f1 on the val split" in body
    assert "not a medical device" in body
    assert "wang2017chestxray8" in body


def test_card_of_an_untrained_model_renders() -> None:
    folder = store.save(tiny_model(), "untrained")
    text = (folder / "README.md").read_text()

    card = ModelCard(text)
    data = card.data.to_dict()
    assert "model-index" not in data and "datasets" not in data
    assert data["library_name"] == "cxrzoo"
    assert card.data.eval_results is None
    assert "No training is recorded" in card.text
    assert "No evaluation is recorded" in card.text
    assert "Not calibrated" in card.text
    assert "{{" not in text


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("trained", [False, True], ids=["untrained", "trained"])
def test_every_architecture_has_a_card_source(architecture: str, trained: bool) -> None:
    source = (cards.CARDS_DIR / f"{architecture}.md").read_text()
    assert cards.card_source(architecture) == source
    doc: dict[str, Any] = {
        "format": "cxrzoo-model",
        "architecture": architecture,
        "config": {
            "labels": list(LABELS),
            "image_size": 224,
            "in_chans": 1,
            "preprocessing": ["clahe", "resize"],
        },
        "weights": {"file": "model.safetensors", "sha256": "ab" * 32, "parameters": 1234},
    }
    if trained:
        doc.update(trained_metadata())
    text = cards.render_card(None, doc)
    card = ModelCard(text)
    assert "{{" not in text and "}}" not in text
    assert card.text.lstrip().startswith(f"# cxrzoo-{architecture}")
    for needle in ("not a medical device", "Limitations", "wang2017chestxray8", "ab" * 32, "1,234"):
        assert needle in card.text
    assert ("model-index" in card.data.to_dict()) is trained


def test_advanced_resnet_card_states_its_size() -> None:
    assert "28,085,194 trainable parameters" in cards.card_source("advanced_resnet")


def test_unknown_architecture_gets_the_generic_card() -> None:
    doc = {"architecture": "third_party_net", "config": {}, "weights": {"sha256": "cd" * 32}}
    assert cards.card_source("third_party_net") == cards.GENERIC_CARD
    assert cards.card_source("../advanced_resnet") == cards.GENERIC_CARD
    text = cards.render_card(None, doc)
    assert "`third_party_net`" in text and "not a medical device" in text and "cd" * 32 in text
    assert "third_party_net" in ModelCard(text).data.to_dict()["tags"]


def test_missing_card_folder_falls_back_to_the_generic_card(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(cards, "CARDS_DIR", tmp_path / "absent")
    assert cards.card_source("advanced_resnet") == cards.GENERIC_CARD


def test_unknown_placeholder_is_an_error() -> None:
    with pytest.raises(KeyError, match="no_such_field"):
        cards.fill("{{ no_such_field }}", {"name": "x"})


def test_card_tolerates_partial_metrics() -> None:
    doc = {
        "architecture": "rare_disease",
        "config": {"labels": list(LABELS), "rare_labels": ["Hernia", "Fibrosis"], "thresholds": None},
        "weights": {},
        "training": {"dataset": "synthetic"},
        "metrics": {
            "dataset": "synthetic",
            "split": "val",
            "macro_auroc": None,
            "per_class": {"Hernia": {"auroc": float("nan")}},
        },
    }
    text = cards.render_card(None, doc)
    card = ModelCard(text)
    assert card.data.eval_results is None  # every AUROC undefined: nothing to report
    assert "Hernia, Fibrosis" in card.text
    assert "never seen a real radiograph" in card.text
