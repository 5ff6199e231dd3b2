"""Model folders: exact round trips, strict loading, integrity, atomic writes, the store."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import cxrzoo
from cxrzoo import store
from cxrzoo.store import IntegrityError, StoreError
from cxrzoo.testing import tiny_model


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("CXRZOO_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_saved_folder_holds_weights_config_and_card_only(tmp_path):
    model = tiny_model("rare_disease")
    model.set_thresholds([0.3] * 14)
    folder = model.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    doc = json.loads((folder / "config.json").read_text())
    assert doc["architecture"] == "rare_disease"
    assert doc["config"]["labels"] == list(cxrzoo.LABELS)
    assert doc["config"]["thresholds"] == [0.3] * 14
    assert doc["config"]["preprocessing"] == list(model.config.preprocessing)
    assert doc["weights"]["sha256"] == store.sha256_file(folder / "model.safetensors")
    assert set(load_file(folder / "model.safetensors")) == set(model.state_dict())


def test_load_by_store_name_and_path(home):
    model = tiny_model("chest_xray_attention", seed=3)
    path = store.save(model, "mine")
    assert path == home / "models" / "mine"
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        expected = model.eval()(x)
        assert torch.equal(cxrzoo.load("mine")(x), expected)
        assert torch.equal(cxrzoo.load(path)(x), expected)
    assert store.list_trained() == ["mine"]


def test_unknown_store_name_is_explained(home):
    store.save(tiny_model("chest_xray_attention"), "chest_small")
    with pytest.raises(StoreError, match="Did you mean 'chest_small'"):
        cxrzoo.load("chest_smal")
    with pytest.raises(StoreError, match="cxrzoo train rare_disease"):
        cxrzoo.load("rare_disease")


def _rewrite_weights(folder, change):
    weights = folder / "model.safetensors"
    state = load_file(weights)
    change(state)
    save_file(state, weights)
    doc = json.loads((folder / "config.json").read_text())
    doc["weights"]["sha256"] = store.sha256_file(weights)  # consistent hash: test strictness alone
    (folder / "config.json").write_text(json.dumps(store.seal(doc)))


def test_missing_extra_and_misshaped_tensors_are_named(tmp_path):
    folder = tiny_model("chest_xray_attention").save_pretrained(tmp_path / "m")
    _rewrite_weights(folder, lambda s: s.pop("classifier.bias"))
    with pytest.raises(StoreError, match=r"missing tensor\(s\) \['classifier.bias'\]"):
        cxrzoo.load(folder)

    folder = tiny_model("chest_xray_attention").save_pretrained(tmp_path / "m2")
    _rewrite_weights(folder, lambda s: s.update(stray=torch.zeros(1)))
    with pytest.raises(StoreError, match=r"unexpected tensor\(s\) \['stray'\]"):
        cxrzoo.load(folder)

    folder = tiny_model("chest_xray_attention").save_pretrained(tmp_path / "m3")
    _rewrite_weights(folder, lambda s: s.update({"classifier.weight": torch.zeros(3, 3)}))
    with pytest.raises(StoreError, match=r"'classifier.weight' has shape \(3, 3\)"):
        cxrzoo.load(folder)


def test_config_weight_mismatch_is_named(tmp_path):
    folder = tiny_model("chest_xray_attention").save_pretrained(tmp_path / "m")
    doc = json.loads((folder / "config.json").read_text())
    doc["config"]["labels"] = doc["config"]["labels"][:13]
    (folder / "config.json").write_text(json.dumps(store.seal(doc)))
    with pytest.raises(StoreError, match="classifier.weight"):
        cxrzoo.load(folder)


def test_tampered_weights_are_refused(tmp_path):
    folder = tiny_model("chest_xray_attention").save_pretrained(tmp_path / "m")
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="sha256"):
        cxrzoo.load(folder)


def test_pickles_are_never_loaded(tmp_path):
    folder = tiny_model("chest_xray_attention").save_pretrained(tmp_path / "m")
    doc = json.loads((folder / "config.json").read_text())
    doc["weights"]["file"] = "model.pt"
    torch.save({}, folder / "model.pt")
    (folder / "config.json").write_text(json.dumps(doc))
    with pytest.raises(StoreError, match="never pickles"):
        cxrzoo.load(folder)


def test_failed_save_leaves_the_previous_model_intact(home, monkeypatch):
    first = tiny_model("chest_xray_attention", seed=1)
    path = store.save(first, "m")
    before = {p.name: p.read_bytes() for p in path.iterdir()}

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(store, "save_file", broken_save)
    with pytest.raises(OSError, match="disk full"):
        store.save(tiny_model("chest_xray_attention", seed=2), "m")
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before
    # No temporary folders left (the hidden lock folder is not one).
    assert [p.name for p in path.parent.iterdir() if p.name != ".locks"] == ["m"]


def test_malformed_config_is_a_clear_error(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text("{not json")
    with pytest.raises(StoreError, match="not valid JSON"):
        cxrzoo.load(folder)
    (folder / "config.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(StoreError, match="not a cxrzoo model config"):
        cxrzoo.load(folder)
