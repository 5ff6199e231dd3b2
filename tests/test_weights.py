"""Weights from outside the zoo: safe checkpoint reading and the one initialisation loader."""

from __future__ import annotations

import os

import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file

import cxrzoo
from cxrzoo import store
from cxrzoo.weights import CheckpointRefused, WeightSourceError, apply_init, init_from, read_checkpoint


def _resnet18_target():
    return cxrzoo.create_model("chest_xray_attention", backbone="resnet18", image_size=32)


@pytest.fixture(scope="module")
def tv_resnet18():
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None)


def test_reads_every_format_the_same(tmp_path, tv_resnet18):
    state = tv_resnet18.state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "w.safetensors")
    torch.save(state, tmp_path / "state.pth")
    torch.save({"epoch": 3, "state_dict": state, "optimizer": {"lr": 0.1}}, tmp_path / "ckpt.pth")
    torch.save(tv_resnet18, tmp_path / "module.pth")  # a whole pickled torchvision module
    for name in ("w.safetensors", "state.pth", "ckpt.pth", "module.pth"):
        got = read_checkpoint(tmp_path / name)
        assert set(got) == set(state), name
        assert torch.equal(got["conv1.weight"], state["conv1.weight"]), name


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"conv.weight": torch.zeros(1), "x": _Payload(str(marker))}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointRefused) as info:
        read_checkpoint(tmp_path / "evil.pt")
    message = str(info.value)
    assert "posix.system" in message and "\n" not in message
    assert not marker.exists()


def test_legacy_format_whole_module_loads_and_its_payloads_are_refused(tmp_path, tv_resnet18):
    # torch < 1.6 files name each module class in a persistent id, which weights_only cannot
    # read: a restricted unpickler applies the same allow-list.
    torch.save(tv_resnet18, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    got = read_checkpoint(tmp_path / "legacy.pth")
    assert torch.equal(got["layer1.0.conv1.weight"], tv_resnet18.layer1[0].conv1.weight)
    marker = tmp_path / "ran"
    evil = {"model": tv_resnet18, "x": _Payload(str(marker))}
    torch.save(evil, tmp_path / "evil-legacy.pth", _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointRefused, match="posix.system"):
        read_checkpoint(tmp_path / "evil-legacy.pth")
    assert not marker.exists()


def test_torchvision_layout_into_timm_encoder_folds_the_stem(tv_resnet18):
    model = _resnet18_target()
    report = init_from(model, tv_resnet18.state_dict(), source_name="torchvision:resnet18")
    assert report.adapted == ["encoder.conv1.weight"]  # 3 channels summed to 1, as timm does
    folded = tv_resnet18.conv1.weight.sum(1, keepdim=True)
    assert torch.allclose(model.encoder.conv1.weight, folded)
    assert torch.equal(model.encoder.layer4[1].conv2.weight, tv_resnet18.layer4[1].conv2.weight)
    backbone = [k for k in model.state_dict() if k.startswith("encoder.")]
    assert len(report.loaded) == len(backbone) - 1
    assert all(not k.startswith("encoder.") for k in report.new)
    assert "classifier.weight" in report.new  # ImageNet's fc is 1000 classes: fresh head
    assert {"fc.weight", "fc.bias"} <= set(report.unused)


def test_timm_layout_matches_too():
    torch.manual_seed(0)
    source = timm.create_model("resnet18", pretrained=False).state_dict()
    report = init_from(_resnet18_target(), source, source_name="timm:resnet18")
    assert report.counts()["adapted"] == 1 and report.counts()["loaded"] > 100


def test_head_rows_kept_for_shared_labels():
    torch.manual_seed(0)
    source = cxrzoo.create_model("chest_xray_attention", backbone="test_resnet", image_size=32)
    target = cxrzoo.create_model(
        "chest_xray_attention",
        backbone="test_resnet",
        image_size=32,
        labels=("Effusion", "Fracture", "Atelectasis"),
    )
    report = init_from(target, source.state_dict(), source_name="src", source_labels=source.labels)
    assert report.shared_labels == ["Effusion", "Atelectasis"]
    assert "classifier.weight" in report.adapted
    w_src, w_tgt = source.classifier.weight, target.classifier.weight
    assert torch.equal(w_tgt[0], w_src[source.labels.index("Effusion")])
    assert torch.equal(w_tgt[2], w_src[source.labels.index("Atelectasis")])


def test_init_that_loads_nothing_is_an_error(tmp_path):
    save_file({"something.else": torch.zeros(3)}, tmp_path / "w.safetensors")
    with pytest.raises(WeightSourceError, match="no tensor of the source matches"):
        apply_init(_resnet18_target(), str(tmp_path / "w.safetensors"))


def test_weight_source_field_is_cleared_on_load(tmp_path, tv_resnet18, monkeypatch):
    monkeypatch.setenv("CXRZOO_HOME", str(tmp_path / "home"))
    ckpt = tmp_path / "tv.pth"
    torch.save(tv_resnet18.state_dict(), ckpt)
    model = cxrzoo.create_model(
        "chest_xray_attention", backbone="resnet18", image_size=32, pretrained=str(ckpt)
    )
    assert torch.allclose(model.encoder.conv1.weight, tv_resnet18.conv1.weight.sum(1, keepdim=True))
    cls = type(model.config)
    assert cls.weight_source_fields() == ("pretrained",)
    assert cls.clear_weight_source({"pretrained": "timm:x", "dropout": 0.1}) == {
        "pretrained": False,
        "dropout": 0.1,
    }
    store.save(model, "seam")
    ckpt.unlink()  # the stored weights are enough: the source is never read again
    again = cxrzoo.load("seam")
    assert torch.equal(again.encoder.conv1.weight, model.encoder.conv1.weight)


def test_torchvision_densenet_file_with_its_old_key_names(tmp_path):
    import re

    from cxrzoo.weights import resolve_source

    state = torchvision.models.densenet121(weights=None).state_dict()
    old = {re.sub(r"(denselayer\d+\.(?:norm|relu|conv))(\d)", r"\1.\2", k): v for k, v in state.items()}
    assert "features.denseblock1.denselayer1.norm.1.weight" in old
    torch.save(old, tmp_path / "densenet121-a639ec97.pth")
    loaded = resolve_source("torchvision:densenet121", file=str(tmp_path / "densenet121-a639ec97.pth"))
    assert set(loaded.state) == set(state)
    assert loaded.provenance["address"].startswith("https://download.pytorch.org/models/densenet121")
