"""Every model must learn: trained briefly on the synthetic phantoms, it must separate the
findings on held-out images, and its calibrated thresholds must give F1 > 0. Shuffled labels
must score near chance, which shows the test can fail."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cxrzoo
from cxrzoo import store
from cxrzoo.inference import predict_arrays
from cxrzoo.metrics import evaluate_predictions
from cxrzoo.plugins import models
from cxrzoo.training.recipes import get_recipe
from cxrzoo.training.run import DataSpec, arrays_for, load_splits, predict_table, train_model
from cxrzoo.training.trainer import Trainer

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("learning")]

# Enough phantoms that every finding has held-out positives; 64 px keeps a CPU fast.
SYNTHETIC = {"n": 1500, "size": 64, "seed": 11, "prevalence": "uniform:0.2"}
RECIPE = {"epochs": 20, "batch_size": 32, "lr": 3e-3}


def tiny_overrides(name: str) -> dict:
    return {
        k: v
        for k, v in models.get(name).tiny_config().to_dict().items()
        if k not in {"labels", "member_specs"}
    } | {"image_size": 64}


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    path = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CXRZOO_HOME", str(path))
        yield path


def held_out_scores(model) -> dict:
    spec = DataSpec.from_dict(model.metadata["training"])
    splits = load_splits(spec, echo=lambda _m: None)
    probs, data = predict_table(model, splits.test, progress=False, echo=lambda _m: None)
    return evaluate_predictions(data.labels, probs, model.labels, thresholds=model.thresholds.tolist())


@pytest.mark.parametrize("name", ["chest_xray_attention", "rare_disease", "advanced_resnet"])
def test_model_learns_the_synthetic_findings(home, name):
    model = train_model(
        name,
        dataset="synthetic",
        dataset_options=SYNTHETIC,
        recipe="quick",
        recipe_overrides=RECIPE,
        config_overrides=tiny_overrides(name),
        seed=0,
        progress=False,
        echo=lambda _m: None,
    )
    assert model.config.thresholds is not None, "thresholds were not calibrated"
    scores = held_out_scores(cxrzoo.load(name))
    per_class = {k: v["auroc"] for k, v in scores["per_class"].items()}
    print(
        f"{name}: held-out macro AUROC {scores['macro_auroc']:.3f}, min {min(per_class.values()):.3f}, "
        f"macro F1 {scores['macro']['f1']:.3f}"
    )
    assert scores["macro_auroc"] >= 0.85, per_class
    assert min(per_class.values()) >= 0.55, per_class  # every finding above chance
    assert scores["macro"]["f1"] > 0.3
    assert all(v["f1"] and v["f1"] > 0 for v in scores["per_class"].values()), "a finding with F1 0"


def test_ensemble_learns_from_its_members(home):
    # Members trained by the test above are reused from the store; missing ones are trained.
    overrides = {"members": ["chest_xray_attention", "rare_disease"], "image_size": 64}
    for member in overrides["members"]:
        if member not in store.list_trained():
            train_model(
                member,
                dataset="synthetic",
                dataset_options=SYNTHETIC,
                recipe="quick",
                recipe_overrides=RECIPE,
                config_overrides=tiny_overrides(member),
                seed=0,
                progress=False,
                echo=lambda _m: None,
            )
    model = train_model(
        "ensemble",
        dataset="synthetic",
        dataset_options=SYNTHETIC,
        recipe="quick",
        config_overrides=overrides,
        seed=0,
        progress=False,
        echo=lambda _m: None,
    )
    scores = held_out_scores(cxrzoo.load("ensemble"))
    print(f"ensemble: held-out macro AUROC {scores['macro_auroc']:.3f}, macro F1 {scores['macro']['f1']:.3f}")
    assert scores["macro_auroc"] >= 0.85
    assert scores["macro"]["f1"] > 0.3
    members = [held_out_scores(cxrzoo.load(m))["macro_auroc"] for m in overrides["members"]]
    assert scores["macro_auroc"] >= min(members) - 0.01
    assert model.metadata["training"]["members"] == overrides["members"]


def shuffled_model(name: str = "chest_xray_attention") -> tuple:
    """``name`` trained on labels detached from their images, and the held-out test arrays."""
    config = models.get(name).config_class().replace(**tiny_overrides(name))
    splits = load_splits(DataSpec(dataset="synthetic", options=SYNTHETIC), echo=lambda _m: None)
    train = arrays_for(splits.train, config, progress=False, echo=lambda _m: None)
    val = arrays_for(splits.val, config, progress=False, echo=lambda _m: None)
    test = arrays_for(splits.test, config, progress=False, echo=lambda _m: None)
    rng = np.random.default_rng(0)
    train.labels = train.labels[rng.permutation(len(train))]
    val.labels = val.labels[rng.permutation(len(val))]
    torch.manual_seed(0)
    model = cxrzoo.create_model(name, config)
    recipe = get_recipe("quick").replace(**RECIPE)
    Trainer(model, recipe, train, val, progress=False, echo=lambda _m: None).fit()
    return model, test


def test_shuffled_labels_score_near_chance(home):
    """The same pipeline with labels detached from images must not look like learning."""
    model, test = shuffled_model()
    store.save(model, "shuffled")  # an uninformative ensemble member for the test below
    probs = predict_arrays(model, test.images, rows=test.rows, device=torch.device("cpu"))
    auroc = evaluate_predictions(test.labels, probs, model.labels, metrics=["auroc"])["macro_auroc"]
    print(f"shuffled labels: held-out macro AUROC {auroc:.3f}")
    assert 0.4 <= auroc <= 0.6, auroc


def test_auroc_weighted_ensemble_leans_on_the_member_that_learned(home):
    """``weighting=auroc``: a member that learned nothing (trained on shuffled labels) gets
    little weight on every finding, and the ensemble scores at least as well as the plain
    average held out."""
    learned = "chest_xray_attention"
    quiet = {"progress": False, "echo": lambda _m: None}
    data = {"dataset": "synthetic", "dataset_options": SYNTHETIC, "recipe": "quick", "seed": 0}
    if learned not in store.list_trained():
        train_model(
            learned, recipe_overrides=RECIPE, config_overrides=tiny_overrides(learned), **data, **quiet
        )
    if "shuffled" not in store.list_trained():
        store.save(shuffled_model()[0], "shuffled")
    members = {"members": [learned, "shuffled"], "image_size": 64}
    train_model("ensemble", config_overrides=members, name="uniform", **data, **quiet)
    weighted = train_model(
        "ensemble", config_overrides={**members, "weighting": "auroc"}, name="weighted", **data, **quiet
    )
    weights = np.asarray(weighted.config.finding_weights)
    assert weights.shape == (2, len(weighted.labels))
    assert (weights[0] > weights[1]).all(), weights
    uniform_scores = held_out_scores(cxrzoo.load("uniform"))
    weighted_scores = held_out_scores(cxrzoo.load("weighted"))
    print(
        f"ensemble with a member trained on shuffled labels: uniform {uniform_scores['macro_auroc']:.3f}, "
        f"weighted {weighted_scores['macro_auroc']:.3f}"
    )
    assert weighted_scores["macro_auroc"] >= uniform_scores["macro_auroc"] - 0.002
    assert weighted_scores["macro_auroc"] >= 0.85
