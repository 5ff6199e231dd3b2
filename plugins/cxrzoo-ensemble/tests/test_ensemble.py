import numpy as np
import pytest
import torch
from cxrzoo_ensemble import MissingMemberError

import cxrzoo
from cxrzoo import store
from cxrzoo.testing import ModelConformance, tiny_model


class TestConformance(ModelConformance):
    model_name = "ensemble"


def test_averages_member_probabilities_with_optional_weights():
    a, b = tiny_model("chest_xray_attention", seed=1), tiny_model("rare_disease", seed=2)
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        pa, pb = torch.sigmoid(a.eval()(x)), torch.sigmoid(b.eval()(x))
        plain = cxrzoo.create_model("ensemble", members=[a, b], image_size=32).eval()
        assert torch.allclose(torch.sigmoid(plain(x)), (pa + pb) / 2, atol=1e-5)
        weighted = cxrzoo.create_model("ensemble", members=[a, b], weights=[3, 1], image_size=32).eval()
        assert torch.allclose(torch.sigmoid(weighted(x)), 0.75 * pa + 0.25 * pb, atol=1e-5)


def test_predict_preprocesses_for_each_member():
    a = tiny_model("chest_xray_attention", seed=1)
    b = tiny_model("rare_disease", seed=2, image_size=48, in_chans=3)
    ens = cxrzoo.create_model("ensemble", members=[a, b])
    img = np.random.default_rng(0).integers(0, 255, (100, 90), dtype=np.uint8)
    expected = (a.predict_proba([img]) + b.predict_proba([img])) / 2
    assert np.allclose(ens.predict_proba([img]), expected, atol=1e-6)


def test_loads_trained_members_from_the_store(tmp_path, monkeypatch):
    monkeypatch.setenv("CXRZOO_HOME", str(tmp_path))
    a, b = tiny_model("chest_xray_attention", seed=1), tiny_model("rare_disease", seed=2)
    store.save(a, "a")
    store.save(b, "b")
    ens = cxrzoo.create_model("ensemble", members=["a", "b"], image_size=32).eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        expected = (torch.sigmoid(a.eval()(x)) + torch.sigmoid(b.eval()(x))) / 2
        assert torch.allclose(torch.sigmoid(ens(x)), expected, atol=1e-5)
    # Saved ensembles are self-contained: loading needs no member in the store.
    store.save(ens, "ens")
    store.remove("a")
    again = cxrzoo.load("ens")
    with torch.no_grad():
        assert torch.allclose(torch.sigmoid(again(x)), expected, atol=1e-5)


def test_missing_member_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("CXRZOO_HOME", str(tmp_path))
    with pytest.raises(MissingMemberError, match="cxrzoo train advanced_resnet"):
        cxrzoo.create_model("ensemble")


def test_auroc_weights_lean_on_the_member_that_ranks_each_finding():
    from cxrzoo_ensemble.model import auroc_weights

    rng = np.random.default_rng(0)
    n = 400
    labels = np.stack([rng.random(n) < 0.3, rng.random(n) < 0.3, np.zeros(n, bool)], axis=1).astype(float)
    labels[:50, 1] = np.nan  # unknown entries are left out, not read as negatives
    noise = rng.random((n, 3))
    a = np.where(np.arange(3) == 0, np.nan_to_num(labels) * 0.5 + noise * 0.5, noise)  # ranks finding 0
    b = np.where(np.arange(3) == 1, np.nan_to_num(labels) * 0.5 + noise * 0.5, noise[::-1])  # finding 1
    w = auroc_weights([a, b], labels, prior=np.array([1.0, 1.0]), pseudo_positives=10)
    assert np.allclose(w.sum(0), 1.0)
    assert w[0, 0] > 0.85 and w[1, 1] > 0.85
    assert np.allclose(w[:, 2], 0.5), "a finding with no positives keeps the prior"
    # Three positives move the weights little: at most 3 / (3 + 10) of the way.
    few = labels.copy()
    few[:, 0] = 0
    few[:3, 0] = 1
    a_few = a.copy()
    a_few[:3, 0] = 2.0
    w_few = auroc_weights([a_few, b], few, prior=np.array([1.0, 1.0]), pseudo_positives=10)
    assert 0.5 < w_few[0, 0] <= 0.5 + 0.5 * 3 / 13 + 1e-9
    # The prior is the member weights.
    w_prior = auroc_weights([a, b], labels, prior=np.array([3.0, 1.0]))
    assert np.allclose(w_prior[:, 2], [0.75, 0.25])


def test_per_finding_weights_mix_each_finding_and_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("CXRZOO_HOME", str(tmp_path))
    a, b = tiny_model("chest_xray_attention", seed=1), tiny_model("rare_disease", seed=2)
    n = len(a.labels)
    fw = [[1.0] + [0.0] * (n - 1), [0.0] + [1.0] * (n - 1)]
    ens = cxrzoo.create_model("ensemble", members=[a, b], image_size=32, finding_weights=fw).eval()
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        pa, pb = torch.sigmoid(a.eval()(x)), torch.sigmoid(b.eval()(x))
        mixed = torch.sigmoid(ens(x))
        assert torch.allclose(mixed[:, 0], pa[:, 0], atol=1e-5)
        assert torch.allclose(mixed[:, 1:], pb[:, 1:], atol=1e-5)
        # Outputs that are not one column per finding (Grad-CAM maps) use the member weights.
        maps = [torch.rand(2, 100), torch.rand(2, 100)]
        assert torch.allclose(ens.combine_members(maps), (maps[0] + maps[1]) / 2)
    store.save(ens, "ens")
    again = cxrzoo.load("ens").eval()
    with torch.no_grad():
        assert torch.allclose(torch.sigmoid(again(x)), mixed, atol=1e-5)
    card = (tmp_path / "models" / "ens" / "README.md").read_text()
    assert "Per-finding weights" in card


@pytest.mark.parametrize(
    "change, message",
    [
        ({"weighting": "best"}, "weighting='best'"),
        ({"finding_weights": [[1.0, 1.0]]}, "finding_weights: expected 2 rows"),
        ({"weighting_prior": -1.0}, "weighting_prior"),
    ],
)
def test_weighting_options_are_checked(change, message):
    from cxrzoo_ensemble.config import EnsembleConfig

    from cxrzoo.config import ConfigError

    with pytest.raises(ConfigError, match=message):
        EnsembleConfig(members=("a", "b")).replace(**change)
