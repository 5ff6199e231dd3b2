"""What resolve_run decides before any work: the preprocessing for the input size, and the
input size a composite's missing members train at."""

from __future__ import annotations

import pytest

import cxrzoo
from cxrzoo import store
from cxrzoo.config import DEFAULT_PREPROCESSING, FULL_SIZE_PREPROCESSING, default_preprocessing
from cxrzoo.training import train_model
from cxrzoo.training.spec import resolve_run

pytestmark = pytest.mark.xdist_group("training")


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("CXRZOO_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.mark.parametrize("model", ["chest_xray_attention", "rare_disease", "advanced_resnet"])
def test_training_at_128_px_or_more_adds_clahe_on_the_full_size_image(home, model):
    small = resolve_run(model, config_overrides={"image_size": 64})
    assert small.config.preprocessing == DEFAULT_PREPROCESSING
    for size in (128, 224):
        large = resolve_run(model, config_overrides={"image_size": size})
        steps = large.config.preprocessing
        assert steps == FULL_SIZE_PREPROCESSING == default_preprocessing(size)
        # CLAHE runs on the cropped radiograph at its own size, before it is reduced.
        assert steps.index("center_crop") < steps.index("clahe") < steps.index("resize")


def test_a_preprocessing_the_user_sets_is_kept_at_any_size(home):
    chosen = "center_crop,resize,scale,normalize_grey"
    spec = resolve_run("chest_xray_attention", config_overrides={"image_size": 224, "preprocessing": chosen})
    assert spec.config.preprocessing == tuple(chosen.split(","))


def test_a_composite_keeps_its_config_and_passes_its_input_size_to_new_members(home):
    assert (
        resolve_run("ensemble", config_overrides={"image_size": 224}).config.preprocessing
        == DEFAULT_PREPROCESSING
    )
    quiet = {"progress": False, "echo": lambda _m: None}
    train_model(
        "ensemble",
        dataset="synthetic",
        dataset_options={"n": 120},
        recipe="quick",
        recipe_overrides={"epochs": 1},
        config_overrides={"members": ["chest_xray_attention"], "image_size": 48},
        **quiet,
    )
    assert "chest_xray_attention" in store.list_trained()
    member = cxrzoo.load("chest_xray_attention")
    assert member.config.image_size == 48  # the ensemble's --image-size, not the member's 224
    assert cxrzoo.load("ensemble").config.image_size == 48
