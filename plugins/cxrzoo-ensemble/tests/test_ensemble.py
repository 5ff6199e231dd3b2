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
