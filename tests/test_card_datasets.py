"""A model card names the data set the model was trained on, as its source describes itself."""

from __future__ import annotations

import pytest

from cxrzoo.cards import dataset_info, render_card


def test_sources_describe_themselves():
    assert dataset_info("nih14") == ("nih-chest-xrays", "NIH ChestX-ray14", "nih-chest-xrays")
    assert dataset_info("synthetic")[2] is None  # generated, not hosted
    assert dataset_info("not-registered") == ("not-registered", "not-registered", None)


def test_a_card_of_a_chexpert_model_names_chexpert_not_nih():
    pytest.importorskip("cxrzoo_public_datasets")
    doc = {"architecture": "chest_xray_attention", "training": {"dataset": "chexpert", "epochs": 1}}
    card = render_card(None, doc)
    assert "CheXpert" in card
    assert "datasets:" not in card.split("---")[1] or "nih-chest-xrays" not in card.split("---")[1]
