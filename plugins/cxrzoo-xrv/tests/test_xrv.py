"""torchxrayvision's architectures in cxrzoo: conformance, safe import, parity with torchxrayvision.

torchxrayvision is a test dependency only. No published file can be downloaded here, so each
architecture is built with seeded random weights by torchxrayvision itself, saved in each
published format (a whole pickled module, a state dict), imported with ``cxrzoo import`` and
compared with torchxrayvision's own outputs on real radiographs.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from cxrzoo_xrv import published

import cxrzoo
from cxrzoo.cli import main
from cxrzoo.testing import ModelConformance

xrv = pytest.importorskip("torchxrayvision")

SAMPLE = (
    Path(os.environ.get("CXRZOO_TEST_DATA") or Path(__file__).parents[3].parent / "shared" / "data")
    / "nih-sample-512"
    / "images_001"
    / "images"
)


class TestDenseNetConformance(ModelConformance):
    model_name = "xrv_densenet"


class TestResNetConformance(ModelConformance):
    model_name = "xrv_resnet"


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("CXRZOO_HOME", str(home))
    return home


def _import(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["import", *args])
    return result.exit_code, result.output


def _randomise_norms(model: torch.nn.Module, seed: int) -> None:
    """Batch-norm statistics and affine terms away from their identity defaults, so that a
    wrongly mapped tensor shows in the outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(1 + 0.1 * torch.randn(n, generator=g))
                m.bias.copy_(0.1 * torch.randn(n, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                m.running_var.copy_(1 + 0.2 * torch.rand(n, generator=g))
            elif isinstance(m, torch.nn.Linear):
                m.bias.copy_(0.5 * torch.randn(m.out_features, generator=g))


def _reference(weights: published.PublishedWeights, tmp_path: Path, fmt: str, monkeypatch) -> tuple:
    """torchxrayvision's own model of ``weights`` with seeded random weights, loaded by
    torchxrayvision from a file in the published format; returns (model, file)."""
    torch.manual_seed(0)
    if weights.architecture == "xrv_densenet":
        net = xrv.models.DenseNet(weights=None)
        _randomise_norms(net, 1)
        module_file, state_file = tmp_path / "densenet.pt", tmp_path / "densenet-state.pt"
        # The published DenseNet files predate torch 1.6: whole modules in the legacy format.
        torch.save(net, module_file, _use_new_zipfile_serialization=fmt != "legacy")
        torch.save(net.state_dict(), state_file)
        monkeypatch.setattr(xrv.models, "get_weights", lambda *a, **k: str(module_file))
        ref = xrv.models.DenseNet(weights=weights.name)
    else:
        import torchvision

        net = torchvision.models.resnet50(num_classes=18, weights=None)
        net.conv1 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        _randomise_norms(net, 1)
        state_file = tmp_path / "resnet-state.pt"
        torch.save(net.state_dict(), state_file)  # torchxrayvision publishes the ResNet this way
        monkeypatch.setattr(xrv.models, "get_weights", lambda *a, **k: str(state_file))
        ref = xrv.models.ResNet(weights=weights.name)
        module_file = tmp_path / "resnet.pt"
        torch.save(ref, module_file)  # and a whole pickled torchxrayvision ResNet
    return ref.eval(), state_file if fmt == "state" else module_file


def _xrv_inputs(paths: list[Path], size: int) -> torch.Tensor:
    """Radiographs read and preprocessed the way torchxrayvision's README does."""
    import skimage.io
    import torchvision

    transform = torchvision.transforms.Compose(
        [xrv.datasets.XRayCenterCrop(), xrv.datasets.XRayResizer(size)]
    )
    batch = []
    for p in paths:
        img = xrv.datasets.normalize(skimage.io.imread(p), 255)
        if img.ndim == 3:
            img = img.mean(2)
        batch.append(torch.from_numpy(transform(img[None, ...])))
    return torch.stack(batch).float()


CASES = [
    ("densenet121-res224-all", "legacy"),
    ("densenet121-res224-nih", "module"),
    ("densenet121-res224-nih", "state"),
    ("densenet121-res224-chex", "module"),
    ("resnet50-res512-all", "state"),
    ("resnet50-res512-all", "module"),
]


@pytest.mark.realdata
@pytest.mark.parametrize(("name", "fmt"), CASES)
def test_parity_with_torchxrayvision(name, fmt, home, tmp_path, monkeypatch):
    if not SAMPLE.is_dir():
        pytest.skip(f"real radiographs not found at {SAMPLE}")
    weights = published.get(name)
    ref, file = _reference(weights, tmp_path, fmt, monkeypatch)
    code, out = _import(weights.source, "--file", str(file), "--name", "imported")
    assert code == 0, out
    model = cxrzoo.load("imported")
    named = list(weights.named)
    assert list(model.labels) == [weights.outputs[i] for i in named]

    paths = sorted(SAMPLE.glob("*.png"))[: 2 if weights.input_size > 224 else 4]
    x = _xrv_inputs(paths, weights.input_size)
    with torch.no_grad():
        ref.op_threshs, ref.apply_sigmoid = None, True
        theirs = ref(x)[:, named].numpy()
        ref.op_threshs = torch.tensor(
            [np.nan if t is None else t for t in weights.operating_thresholds], dtype=torch.float32
        )
        their_calls = ref(x)[:, named].numpy() >= 0.5
        ours = model.probabilities(x).numpy()
    diff = float(np.abs(ours - theirs).max())
    assert diff <= 1e-4, f"max probability difference {diff:.2e}"
    # Positive calls at the published thresholds agree wherever one is published.
    published_at = [weights.operating_thresholds[i] is not None for i in named]
    ours_calls = ours >= model.thresholds
    assert (ours_calls[:, published_at] == their_calls[:, published_at]).all()

    # cxrzoo's own decoding and preprocessing of the same files (8-bit area resize where
    # torchxrayvision resizes in float with skimage): close, not identical.
    end_to_end = model.predict_proba([str(p) for p in paths])
    assert float(np.abs(end_to_end - theirs).max()) <= 0.05


def test_code_running_pickle_is_refused_and_nothing_written(home, tmp_path):
    import shutil

    marker = tmp_path / "pwned"
    (tmp_path / "payload.txt").write_text("ran")

    class Payload:
        # Unpickling this would copy a file to ``marker``: code run by merely loading the file.
        def __reduce__(self):
            return (shutil.copyfile, (str(tmp_path / "payload.txt"), str(marker)))

    evil = tmp_path / "evil.pt"
    net = xrv.models.DenseNet(weights=None)
    torch.save({"state_dict": net.state_dict(), "extra": Payload()}, evil)
    code, out = _import("xrv:densenet121-res224-all", "--file", str(evil))
    assert code != 0
    assert "shutil.copyfile" in out and "nothing was loaded or written" in out
    assert len(out.strip().splitlines()) == 1
    assert not marker.exists()
    assert not (home / "models").exists() or not any((home / "models").iterdir())


def test_file_of_another_architecture_is_refused(home, tmp_path):
    file = tmp_path / "densenet.pt"
    torch.save(xrv.models.DenseNet(weights=None).state_dict(), file)
    code, out = _import("xrv:resnet50-res512-all", "--file", str(file))
    assert code != 0 and "does not hold the network of xrv:resnet50-res512-all" in out
    assert not (home / "models").exists() or not any((home / "models").iterdir())


def test_offline_names_the_address_and_file_option(home, monkeypatch):
    monkeypatch.setenv("CXRZOO_OFFLINE", "1")
    code, out = _import("xrv:densenet121-res224-rsna")
    weights = published.get("rsna")
    assert code != 0 and weights.url in out and "--file" in out


def test_unknown_weights_name_suggests():
    code, out = _import("xrv:densenet121-res224-nhi")
    assert code != 0 and "densenet121-res224-nih" in out


def test_every_published_weight_maps_to_the_vocabulary():
    from cxrzoo.labels import in_vocabulary

    for w in published.WEIGHTS:
        assert len(w.outputs) == len(w.operating_thresholds) == 18
        assert all(in_vocabulary(w.outputs[i]) for i in w.named)
        assert w.input_size in (224, 512)
