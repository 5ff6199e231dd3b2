"""``cxrzoo train MODEL --init SOURCE``: start from any checkpoint, freeze or slow the backbone."""

from __future__ import annotations

import json

import pytest
import timm
import torch
import torchvision
from click.testing import CliRunner

import cxrzoo
from cxrzoo.cli import main

#: Each report model with a ResNet-18 backbone at 32 px on 40 phantoms, one epoch: seconds each.
SMALL = ["--synthetic-n", "40", "--recipe", "quick", "--epochs", "1", "--image-size", "32", "--no-progress"]


def _train(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["train", *args, *SMALL])
    return result.exit_code, result.output


def _init_record(name: str) -> dict:
    return cxrzoo.load(name).metadata["training"]["init"]


@pytest.fixture(scope="module")
def torchvision_state(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "resnet18-torchvision.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def timm_state(tmp_path_factory):
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("ckpt") / "resnet18-timm.pth"
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), path)
    return path


@pytest.mark.parametrize("model", ["chest_xray_attention", "advanced_resnet", "rare_disease"])
@pytest.mark.parametrize("layout", ["torchvision", "timm"])
def test_report_models_start_from_imagenet_layouts(model, layout, cxrzoo_home, torchvision_state, timm_state):
    ckpt = torchvision_state if layout == "torchvision" else timm_state
    code, out = _train(model, "--name", "m", "--set", "backbone=resnet18", "--init", str(ckpt))
    assert code == 0, out
    assert "tensors loaded" in out
    record = _init_record("m")
    # ResNet-18's 122 tensors minus the 1000-class fc (2), one of them the stem: folded or
    # repeated to the model's channels (adapted) unless they already agree.
    assert record["loaded"] + record["adapted"] == 120
    assert record["unused"] == 2 and record["new"] > 0
    stem = torch.load(ckpt, weights_only=True)["conv1.weight"]
    got = cxrzoo.load("m").state_dict()
    key = next(k for k in got if k.endswith("conv1.weight") and ".layer" not in k and "layer" not in k)
    assert got[key].shape[1] in (1, 3)
    if got[key].shape[1] == 1:
        assert record["adapted"] == 1
        assert torch.allclose(got[key], stem.sum(1, keepdim=True), atol=1e-1)  # then trained one epoch


def test_imported_classifier_as_init_keeps_shared_heads(cxrzoo_home, tmp_path):
    xrv = pytest.importorskip("torchxrayvision")
    torch.manual_seed(0)
    file = tmp_path / "xrv.pt"
    torch.save(xrv.models.DenseNet(weights=None), file)
    result = CliRunner().invoke(main, ["import", "xrv:densenet121-res224-chex", "--file", str(file)])
    assert result.exit_code == 0, result.output
    code, out = _train("xrv_densenet", "--name", "ft", "--init", "xrv-densenet121-res224-chex")
    assert code == 0, out
    record = _init_record("ft")
    # Every tensor but the head loads; the head keeps the rows of the findings CheXpert's
    # weights share with NIH's 14 (Atelectasis, Cardiomegaly, Effusion, ...), fresh for the rest.
    assert record["new"] == 0 and record["adapted"] == 2
    assert "Effusion" in record["shared_labels"] and "Hernia" not in record["shared_labels"]


def test_freeze_backbone_trains_only_the_rest(cxrzoo_home, torchvision_state):
    code, out = _train(
        "chest_xray_attention",
        "--name",
        "probe",
        "--set",
        "backbone=resnet18",
        "--init",
        str(torchvision_state),
        "--freeze-backbone",
    )
    assert code == 0, out
    assert "frozen" in out
    source = torch.load(torchvision_state, weights_only=True)
    model = cxrzoo.load("probe")
    assert torch.equal(model.encoder.layer3[0].conv1.weight, source["layer3.0.conv1.weight"])
    recipe = model.metadata["training"]["recipe"]
    assert recipe["freeze_backbone"] is True


def test_backbone_learning_rate_factor(cxrzoo_home, torchvision_state):
    code, out = _train(
        "chest_xray_attention",
        "--name",
        "slow",
        "--set",
        "backbone=resnet18",
        "--init",
        str(torchvision_state),
        "--backbone-lr",
        "0.1",
    )
    assert code == 0, out
    assert "0.1 x the learning rate" in out


def test_init_that_loads_nothing_is_an_error(cxrzoo_home, torchvision_state):
    # ResNet-18's tensors match a ResNet-18 backbone; a DenseNet's none of them.
    code, out = _train(
        "chest_xray_attention",
        "--name",
        "x",
        "--set",
        "backbone=densenet121",
        "--init",
        str(torchvision_state),
    )
    assert code != 0 and "no tensor of the source matches" in out
    assert not (cxrzoo_home / "models" / "x").exists()


def test_freeze_without_init_and_init_of_a_composite_are_refused(cxrzoo_home, torchvision_state):
    code, out = _train("chest_xray_attention", "--freeze-backbone")
    assert code != 0 and "need --init" in out
    code, out = _train("ensemble", "--init", str(torchvision_state))
    assert code != 0 and "--init applies to a model trained by gradient descent" in out


def test_init_record_is_json(cxrzoo_home, torchvision_state):
    code, out = _train(
        "chest_xray_attention", "--name", "j", "--set", "backbone=resnet18", "--init", str(torchvision_state)
    )
    assert code == 0, out
    doc = json.loads((cxrzoo_home / "models" / "j" / "config.json").read_text())
    assert doc["training"]["init"]["source"] == str(torchvision_state)


def test_init_from_a_code_running_pickle_is_refused_before_any_write(cxrzoo_home, tmp_path):
    import os

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "x": Payload()}, tmp_path / "evil.pth")
    code, out = _train(
        "chest_xray_attention",
        "--name",
        "e",
        "--set",
        "backbone=resnet18",
        "--init",
        str(tmp_path / "evil.pth"),
    )
    assert code != 0 and "posix.system" in out and "nothing was loaded or written" in out
    assert not marker.exists()
    assert not (cxrzoo_home / "models" / "e").exists()
