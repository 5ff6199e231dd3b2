"""An imported torchxrayvision network is an ordinary zoo model: predict (a folder with PNG and
DICOM), evaluate on an NIH and a CheXpert layout, explain, export to ONNX, push and pull."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

import cxrzoo
from cxrzoo import hub
from cxrzoo.cli import main
from cxrzoo.data.synthetic import write_chexpert_layout

sys.path.insert(0, str(Path(__file__).parent))
from hub_server import FakeHub

xrv = pytest.importorskip("torchxrayvision")
pytest.importorskip("cxrzoo_xrv")

pytestmark = pytest.mark.xdist_group("imported")
NAME = "xrv-densenet121-res224-chex"
TOKEN = "hf_test_write_token"


def invoke(*args: str):
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("imported")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CXRZOO_HOME", str(tmp / "home"))
        torch.manual_seed(0)
        file = tmp / "chex.pt"
        torch.save(xrv.models.DenseNet(weights=None), file)  # a whole pickled module
        invoke("import", "xrv:densenet121-res224-chex", "--file", str(file))
        yield tmp


def _write_dicom(path: Path, pixels: np.ndarray) -> None:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)


def test_predict_a_folder_with_png_and_dicom(imported, monkeypatch, tmp_path):
    monkeypatch.setenv("CXRZOO_HOME", str(imported / "home"))
    folder = tmp_path / "images"
    folder.mkdir()
    grey = (np.add.outer(np.arange(96), np.arange(80)) % 256).astype(np.uint8)
    cv2.imwrite(str(folder / "a.png"), grey)
    _write_dicom(folder / "b.dcm", grey.astype(np.uint16) * 16)
    data = json.loads(invoke("predict", NAME, str(folder), "--json").stdout)
    assert len(data["results"]) == 2
    model = cxrzoo.load(NAME)
    first = data["results"][0]
    assert set(first["probabilities"]) == set(model.labels)
    assert model.config.preprocessing[-1].startswith("rescale(")


def test_evaluate_on_nih_and_chexpert_layouts(imported, monkeypatch, make_kaggle_tree, tmp_path):
    monkeypatch.setenv("CXRZOO_HOME", str(imported / "home"))
    nih = make_kaggle_tree(bad=False)
    out = invoke("evaluate", NAME, "--data", str(nih.root), "--bootstrap", "0", "--json", "--no-progress")
    metrics = json.loads(out.stdout)
    assert metrics["data"]["dataset"] == "nih14" and metrics["n_images"] > 0
    chexpert = write_chexpert_layout(tmp_path / "CheXpert-v1.0-small", 24, size=64, seed=3)
    out = invoke("evaluate", NAME, "--data", str(chexpert), "--bootstrap", "0", "--json", "--no-progress")
    metrics = json.loads(out.stdout)
    assert metrics["data"]["dataset"] == "chexpert"
    # CheXpert's weights name Lung Opacity and Enlarged Cardiomediastinum: CheXpert scores them.
    assert "Lung Opacity" in metrics["labels"]


def test_explain_and_export(imported, monkeypatch, tmp_path):
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("CXRZOO_HOME", str(imported / "home"))
    image = tmp_path / "x.png"
    cv2.imwrite(str(image), (np.add.outer(np.arange(64), np.arange(64)) * 2 % 256).astype(np.uint8))
    invoke("explain", NAME, str(image), "--out", str(tmp_path / "cam"), "--top", "1")
    assert len(list((tmp_path / "cam").glob("*.png"))) == 1
    result = invoke("export", NAME, "--format", "onnx", "--out", str(tmp_path / "m.onnx"))
    assert "max |diff|" in result.output


def test_push_and_pull_through_a_loopback_hub(imported, monkeypatch, tmp_path):
    monkeypatch.setenv("CXRZOO_HOME", str(imported / "home"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with FakeHub(token=TOKEN) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        hub.push(NAME, "lab/xrv-chex")
        folder = hub.pull("lab/xrv-chex", name="pulled")
        from cxrzoo.weights import apply_init

        report = apply_init(cxrzoo.create_model("xrv_densenet"), "hf-hub:lab/xrv-chex")  # --init hf-hub:
        assert report.counts()["new"] == 0
    original, pulled = cxrzoo.load(NAME), cxrzoo.load(str(folder))
    x = torch.randn(1, 1, 224, 224) * 500
    assert torch.equal(original.probabilities(x), pulled.probabilities(x))
    assert pulled.config.thresholds == original.config.thresholds
    doc = json.loads((folder / "config.json").read_text())
    assert doc["origin"]["source"] == "xrv:densenet121-res224-chex"


@pytest.mark.parametrize(
    ("model", "options", "prefix"),
    [
        ("chest_xray_attention", {"backbone": "densenet121"}, "encoder."),
        ("advanced_resnet", {"backbone": "densenet121", "out_indices": (2, 3, 4)}, "backbone."),
        ("rare_disease", {"backbone": "densenet121"}, "backbone."),
        ("xrv_densenet", {"labels": ("Effusion", "Fracture", "Pneumothorax")}, "features."),
    ],
)
def test_report_models_start_from_the_imported_network(imported, monkeypatch, model, options, prefix):
    from cxrzoo.weights import apply_init

    monkeypatch.setenv("CXRZOO_HOME", str(imported / "home"))
    target = cxrzoo.create_model(model, image_size=64, **options)
    report = apply_init(target, NAME)
    backbone = [k for k in target.state_dict() if k.startswith(prefix)]
    # The whole DenseNet-121 feature extractor comes from the imported network (the stem
    # repeated to three channels for advanced_resnet, whose default input is RGB).
    assert backbone and set(backbone) <= report.initialised
    assert report.counts()["loaded"] >= 724
    if model == "xrv_densenet":  # same architecture: the head keeps the findings CheXpert's shares
        assert report.counts()["new"] == 0
        assert report.shared_labels == ["Effusion", "Fracture", "Pneumothorax"]


def test_config_weight_source_loads_and_is_cleared_in_the_store(imported, monkeypatch):
    from cxrzoo import store

    monkeypatch.setenv("CXRZOO_HOME", str(imported / "home"))
    model = cxrzoo.create_model("xrv_densenet", labels=("Effusion", "Pneumothorax"), pretrained=NAME)
    source = cxrzoo.load(NAME)
    assert torch.equal(model.features.conv0.weight, source.features.conv0.weight)
    store.save(model, "from-config")
    doc = json.loads((imported / "home" / "models" / "from-config" / "config.json").read_text())
    assert doc["config"]["pretrained"] == NAME  # recorded as trained from it
    again = cxrzoo.load("from-config")  # rebuilt with the source cleared: never read again
    assert torch.equal(again.classifier.weight, model.classifier.weight)
