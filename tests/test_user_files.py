"""What a user's files look like before and after a command that refuses or half-fails.

Each test is written from the command line: the files on disk byte for byte before and after,
the exit code and the one line on stderr.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from cxrzoo import store
from cxrzoo.cli import main
from cxrzoo.testing import tiny_model

pytestmark = pytest.mark.xdist_group("outputs")


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CXRZOO_HOME", str(home))
        model = tiny_model("chest_xray_attention", seed=0)
        model.set_thresholds([0.5] * len(model.labels))
        store.save(model, "cxa")
        yield home


@pytest.fixture
def images(tmp_path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        img = np.random.default_rng(i).integers(0, 255, (40, 40), dtype=np.uint8)
        assert cv2.imwrite(str(folder / f"img{i}.png"), img)
    return folder


def run(*args: object, code: int):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


def one_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# -- --out and --resume on a file that is not a cxrzoo table ---------------------------------
@pytest.mark.parametrize(
    "content",
    [
        b"id,name\n1,important\n2,last line without newline",
        b"id,name\n1,caf\xe9 \xff\xfe not UTF-8\n",
    ],
    ids=["no-trailing-newline", "not-utf8"],
)
def test_resume_into_a_foreign_file_refuses_and_keeps_every_byte(zoo, images, tmp_path, content):
    out = tmp_path / "important.csv"
    out.write_bytes(content)
    result = run("predict", "cxa", images, "--out", out, "--resume", code=3)
    assert "not a cxrzoo prediction table" in one_line(result)
    assert out.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "important.csv"]


@pytest.mark.parametrize(
    ("name", "content"),
    [("important.csv", b"id,name\n1,mine\n"), ("keep.json", b'{"mine": true}\n'), ("notes.jsonl", b"x\n")],
)
def test_out_never_replaces_a_foreign_file_without_overwrite(zoo, images, tmp_path, name, content):
    out = tmp_path / name
    out.write_bytes(content)
    result = run("predict", "cxa", images, "--out", out, code=3)
    line = one_line(result)
    assert str(out) in line and "--overwrite" in line
    assert out.read_bytes() == content
    run("predict", "cxa", images, "--out", out, "--overwrite", code=0)
    assert out.read_bytes() != content


def test_out_replaces_an_earlier_table_and_resume_continues_it(zoo, images, tmp_path):
    out = tmp_path / "preds.csv"
    run("predict", "cxa", images / "img0.png", "--out", out, code=0)
    run("predict", "cxa", images, "--out", out, "--resume", code=0)
    assert len(pd.read_csv(out)) == 3
    # An interrupted run left a partial last line: resume drops it and predicts that image again.
    text = out.read_text()
    out.write_text(text[: text.rindex("\n", 0, len(text) - 1) + 10])
    run("predict", "cxa", images, "--out", out, "--resume", code=0)
    table = pd.read_csv(out)
    assert len(table) == 3 and table["path"].is_unique


# -- DICOM files a folder may hold -----------------------------------------------------------
def _dicom(path: Path, **attributes) -> Path:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPClassUID, generate_uid()
    frames = attributes.pop("frames", 1)
    ds.Rows = ds.Columns = 16
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    pixels = np.stack([(np.arange(256, dtype=np.uint16).reshape(16, 16) * 10 + k) for k in range(frames)])
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = pixels.tobytes()
    lut = attributes.pop("voi_lut", None)
    if lut is not None:
        item = Dataset()
        item.add_new(0x00283002, "US", lut[0])
        item.add_new(0x00283006, "OW", np.asarray(lut[1], np.uint16).tobytes())
        ds.VOILUTSequence = [item]
    for key, value in attributes.items():
        setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize(
    ("attributes", "reason"),
    [
        ({"voi_lut": ([256, 0, 16], [1, 2, 3])}, "malformed DICOM VOI LUT"),
        ({"voi_lut": ([256, 0, 7], list(range(256)))}, "malformed DICOM VOI LUT"),
        ({"RescaleSlope": 0, "RescaleIntercept": 0}, "RescaleSlope is 0"),
        ({"RescaleSlope": "NaN", "RescaleIntercept": 0}, "RescaleSlope is nan"),
        (
            {"RescaleSlope": 1, "RescaleIntercept": 0, "voi_lut": ([256, 60000, 16], list(range(256)))},
            "constant",
        ),
        ({"frames": 3}, "multi-frame DICOM (3 frames)"),
    ],
    ids=["voi-lut-short", "voi-lut-bits", "slope-0", "slope-nan", "constant", "multi-frame"],
)
@pytest.mark.filterwarnings("ignore:Invalid value for VR DS")  # pydicom on writing "NaN"
def test_a_bad_dicom_in_a_folder_is_a_named_row_and_the_rest_is_predicted(
    zoo, images, tmp_path, attributes, reason
):
    bad = _dicom(images / "bad.dcm", **attributes)
    out = tmp_path / "preds.csv"
    result = run("predict", "cxa", images, "--out", out, code=1)
    assert "bad.dcm" in result.stderr
    table = pd.read_csv(out, keep_default_na=False)
    assert len(table) == 4
    row = table[table["path"] == str(bad)].iloc[0]
    assert reason in row["error"]
    assert (table[table["path"] != str(bad)]["error"] == "").all()


def test_predict_follows_linked_folders_and_skips_loops_and_hidden_files(zoo, images, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cv2.imwrite(str(elsewhere / "linked.png"), np.full((40, 40), 120, np.uint8))
    (images / "more").symlink_to(elsewhere, target_is_directory=True)
    (images / "loop").symlink_to(images, target_is_directory=True)
    (images / "._img0.png").write_bytes(b"\x00\x05\x16\x07 resource fork")  # macOS AppleDouble
    out = tmp_path / "preds.csv"
    run("predict", "cxa", images, "--out", out, code=0)
    names = sorted(Path(p).name for p in pd.read_csv(out)["path"])
    assert names == ["img0.png", "img1.png", "img2.png", "linked.png"]


# -- optional packages -----------------------------------------------------------------------
def test_export_without_onnx_is_the_install_hint(zoo, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    result = run("export", "cxa", "--format", "onnx", "--out", tmp_path / "m.onnx", code=3)
    assert 'pip install "cxrzoo[onnx]"' in one_line(result)
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("missing", ["onnxruntime", "onnx"])
def test_onnxruntime_backend_without_its_packages_is_the_install_hint(zoo, images, monkeypatch, missing):
    monkeypatch.setitem(sys.modules, missing, None)
    result = run("predict", "cxa", images, "--backend", "onnxruntime", code=3)
    line = one_line(result)
    assert 'pip install "cxrzoo[onnx]"' in line and missing in line


# -- numbers in messages ---------------------------------------------------------------------
def test_messages_print_numbers_as_numbers(zoo, tmp_path):
    from cxrzoo.data.synthetic import write_kaggle_layout

    data = write_kaggle_layout(tmp_path / "nih", 6, size=32)
    names = pd.read_csv(data / "Data_Entry_2017.csv")["Image Index"]
    preds = tmp_path / "preds.csv"
    pd.DataFrame({"Image Index": names, "Effusion": [0.5] * (len(names) - 1) + [1.5]}).to_csv(
        preds, index=False
    )
    result = run("evaluate", "--predictions", preds, "--data", data, code=3)
    line = one_line(result)
    assert "1.5 is not a probability" in line and "np.float64" not in line


def test_report_json_is_what_was_printed(zoo, tmp_path):
    # --json output and metrics.json are one document: the report adds nothing the JSON lacks.
    report = tmp_path / "r"
    result = run(
        "evaluate", "cxa", "--synthetic-n", "40", "--bootstrap", "0", "--json", "--report", report, code=0
    )
    printed = json.loads(result.stdout)
    assert json.loads((report / "metrics.json").read_text())["macro_auroc"] == printed["macro_auroc"]
