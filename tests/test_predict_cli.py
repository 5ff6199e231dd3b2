"""cxrzoo predict / explain / export on tiny saved models: folders and globs, --out tables,
--resume, unreadable files, --device, the onnxruntime backend and Grad-CAM for every model."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

import cxrzoo
from cxrzoo import inference, store
from cxrzoo.cli import main
from cxrzoo.data.io import read_image
from cxrzoo.testing import check_gradcam, tiny_model

MODELS = ("advanced_resnet", "chest_xray_attention", "rare_disease", "ensemble")
FORMATS = ("csv", "json", "jsonl", "parquet")
#: Thresholds that split the untrained models' probabilities (all near 0.5) both ways.
THRESHOLDS = [0.3, 0.7] * 7


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """The four models in their tiny configs, calibrated, in a private store."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CXRZOO_HOME", str(home))
        for i, name in enumerate(MODELS):
            model = tiny_model(name, seed=i)
            model.set_thresholds(THRESHOLDS)
            store.save(model, name)
        yield home


@pytest.fixture
def images(tmp_path) -> Path:
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    for i in range(5):
        img = np.random.default_rng(i).integers(0, 255, (48, 40), dtype=np.uint8)
        cv2.rectangle(img, (5 + i, 8), (20, 30), 220, -1)
        assert cv2.imwrite(str(folder / ("sub" if i >= 3 else "") / f"img{i}.png"), img)
    return folder


def run(*args: str, code: int = 0):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


def read_table(path: Path) -> pd.DataFrame:
    fmt = path.suffix[1:]
    if fmt == "csv":
        return pd.read_csv(path, keep_default_na=False, na_values=[""])
    if fmt == "jsonl":
        return pd.read_json(path, lines=True)
    if fmt == "json":
        return pd.DataFrame(json.loads(path.read_text()))
    return pd.read_parquet(path)


def positives_of(frame: pd.DataFrame, fmt: str) -> list[list[str]]:
    if fmt == "csv":
        return [[] if not isinstance(v, str) or not v else v.split("|") for v in frame["positives"]]
    return [list(v) for v in frame["positives"]]


@pytest.mark.parametrize("fmt", FORMATS)
def test_out_writes_one_row_per_image_with_probabilities_positives_and_errors(zoo, images, tmp_path, fmt):
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    (images / "sub" / "broken.png").write_bytes(b"not an image at all")
    out = tmp_path / f"pred.{fmt}"
    result = run("predict", "chest_xray_attention", images, "--out", out, "--batch-size", "2", code=1)
    # The unreadable file is named in one summary line on stderr, the others are predicted.
    summary = [line for line in result.stderr.splitlines() if "could not be predicted" in line]
    assert len(summary) == 1 and "broken.png" in summary[0] and "1 of 6" in summary[0]
    frame = read_table(out)
    labels = list(cxrzoo.LABELS)
    assert list(frame.columns) == ["path", *labels, "positives", "error"]
    assert sorted(Path(p).name for p in frame["path"]) == sorted(
        ["img0.png", "img1.png", "img2.png", "img3.png", "img4.png", "broken.png"]
    )
    errors = frame["error"].fillna("").astype(str)
    bad = frame["path"].str.endswith("broken.png").to_numpy()
    assert errors[bad].iloc[0] and (errors[~bad] == "").all()
    assert frame.loc[bad, labels].isna().all(axis=None)
    model = cxrzoo.load("chest_xray_attention")
    good = frame[~bad]
    expected = model.predict_proba(good["path"].tolist())
    np.testing.assert_allclose(good[labels].to_numpy(dtype=float), expected, atol=1e-6)
    calls = [[lab for lab, p, t in zip(labels, row, THRESHOLDS) if p >= t] for row in expected]
    assert positives_of(good, fmt) == calls
    assert not list(tmp_path.glob(".pred*"))  # no temporary left behind


@pytest.mark.parametrize("fmt", FORMATS)
def test_resume_predicts_only_the_images_not_yet_in_out(zoo, images, tmp_path, monkeypatch, fmt):
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    out = tmp_path / f"pred.{fmt}"
    decoded: list[str] = []

    def counting(path):
        decoded.append(Path(path).name)
        return read_image(path)

    monkeypatch.setattr(inference, "read_image", counting)
    run("predict", "rare_disease", images / "*.png", "--out", out)
    assert sorted(decoded) == ["img0.png", "img1.png", "img2.png"]
    first = read_table(out)
    decoded.clear()
    result = run("predict", "rare_disease", images, "--out", out, "--resume")
    assert sorted(decoded) == ["img3.png", "img4.png"]  # only the new ones are decoded
    assert "3 already in" in result.output
    frame = read_table(out)
    assert len(frame) == 5 and frame["path"].is_unique
    pd.testing.assert_frame_equal(frame.iloc[:3].reset_index(drop=True), first, check_dtype=False)
    decoded.clear()
    run("predict", "rare_disease", images, "--out", out, "--resume")
    assert decoded == []
    # Without --resume the table is replaced (atomically) by a new one.
    run("predict", "rare_disease", images / "img0.png", "--out", out)
    assert len(read_table(out)) == 1


def test_resume_refuses_a_table_of_another_model(zoo, images, tmp_path):
    out = tmp_path / "pred.csv"
    out.write_text("path,Pneumonia,positives,error\nx.png,0.5,,\n")
    before = out.read_bytes()
    result = run("predict", "rare_disease", images, "--out", out, "--resume", code=3)
    assert out.read_bytes() == before
    assert "other columns" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_an_interrupted_run_keeps_the_old_table(zoo, images, tmp_path, monkeypatch):
    out = tmp_path / "pred.csv"
    old = "path,Atelectasis,positives,error\nold.png,0.5,,\n"
    out.write_text(old)
    calls = []

    def failing(path):
        calls.append(path)
        if len(calls) > 2:
            raise RuntimeError("disk gone")
        return read_image(path)

    monkeypatch.setattr(inference, "read_image", failing)
    result = CliRunner().invoke(
        main, ["predict", "rare_disease", str(images), "--out", str(out), "--workers", "0"]
    )
    assert result.exit_code != 0 and "left as it was" in result.stderr
    assert out.read_text() == old
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_parquet_without_pyarrow_is_a_clear_error(zoo, images, tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "pyarrow", None)
    result = run("predict", "rare_disease", images, "--out", tmp_path / "p.parquet", code=3)
    assert 'pip install "cxrzoo[parquet]"' in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--out", "x.xlsx"], "unknown table format"),
        (["--resume"], "--resume needs --out"),
    ],
)
def test_bad_output_options(zoo, images, args, message):
    result = run("predict", "rare_disease", images, *args, code=2)
    assert message in result.stderr


def test_without_out_predict_prints_as_before(zoo, images):
    data = json.loads(run("predict", "ensemble", images / "img*.png", "--json").stdout)
    assert data["calibrated"] is True and len(data["results"]) == 3 and data["failed"] == []
    for r in data["results"]:
        assert list(r["probabilities"]) == list(cxrzoo.LABELS)
        assert r["positive"] == [lab for lab, p in r["probabilities"].items() if p >= r["thresholds"][lab]]
    assert "positive:" in run("predict", "ensemble", images / "img0.png").output


@pytest.mark.skipif(torch.cuda.device_count() > 7, reason="this machine has a cuda:7")
@pytest.mark.parametrize(
    "command",
    [
        ["predict", "rare_disease", "IMAGES"],
        ["explain", "rare_disease", "IMAGES"],
        ["evaluate", "rare_disease"],
        ["train", "rare_disease"],
        ["crossval", "rare_disease"],
    ],
)
def test_a_device_the_machine_lacks_is_a_one_line_error(zoo, images, command):
    args = [str(images) if a == "IMAGES" else a for a in command]
    result = run(*args, "--device", "cuda:7", code=2)
    assert result.stderr.strip().count("\n") == 0 and "cuda:7" in result.stderr
    result = run(*args, "--device", "gpu-please", code=2)
    assert "not a device name" in result.stderr and result.stderr.strip().count("\n") == 0


def test_cpu_device_strings_are_accepted(zoo, images):
    data = json.loads(
        run("predict", "rare_disease", images / "img0.png", "--device", "cpu:0", "--json").stdout
    )
    assert len(data["results"]) == 1


@pytest.mark.parametrize("name", ["chest_xray_attention", "ensemble"])
def test_onnx_predictions_equal_pytorch(zoo, images, tmp_path, name):
    pytest.importorskip("onnxruntime")
    onnx_file = tmp_path / f"{name}.onnx"
    run("export", name, "--out", onnx_file)
    import onnx

    props = {p.key: json.loads(p.value) for p in onnx.load(str(onnx_file)).metadata_props}
    model = cxrzoo.load(name)
    assert props["cxrzoo.labels"] == list(model.labels)
    assert props["cxrzoo.thresholds"] == THRESHOLDS and props["cxrzoo.calibrated"] is True
    assert props["cxrzoo.architecture"] == name and props["cxrzoo.version"] == cxrzoo.__version__
    assert props["cxrzoo.preprocessing"] == list(model.config.preprocessing)
    parts = model.member_models() or [model]
    assert [i["preprocessing"] for i in props["cxrzoo.inputs"]] == [
        list(p.config.preprocessing) for p in parts
    ]
    # From the exported file alone, in a store that no longer has the model:
    store.remove(name)
    try:
        run("predict", onnx_file, images, "--out", tmp_path / "onnx.csv", "--backend", "onnxruntime")
    finally:
        store.save(model, name)
    run("predict", name, images, "--out", tmp_path / "torch.csv")
    got, expected = read_table(tmp_path / "onnx.csv"), read_table(tmp_path / "torch.csv")
    assert got["path"].tolist() == expected["path"].tolist()
    labels = list(cxrzoo.LABELS)
    np.testing.assert_allclose(got[labels].to_numpy(), expected[labels].to_numpy(), atol=1e-4)
    # A store name with --backend onnxruntime is exported on the fly.
    json_out = json.loads(
        run("predict", name, images / "img0.png", "--backend", "onnxruntime", "--json").stdout
    )
    first = np.array(list(json_out["results"][0]["probabilities"].values()))
    np.testing.assert_allclose(first, expected[labels].to_numpy()[0], atol=1e-4)


def test_an_onnx_file_with_the_torch_backend_is_refused(zoo, images, tmp_path):
    result = run("predict", tmp_path / "m.onnx", images, "--backend", "torch", code=2)
    assert "--backend onnxruntime" in result.stderr


@pytest.mark.parametrize("name", MODELS)
def test_explain_writes_overlays_for_every_model(zoo, images, tmp_path, name):
    out = tmp_path / "cams"
    result = run("explain", name, images, images / "sub" / "*.png", "--out", out, "--top", "2")
    written = sorted(out.glob("*.png"))
    assert len(written) == 5 * 2, result.output
    assert {p.name.split("_", 1)[0] for p in written} == {f"img{i}" for i in range(5)}
    for path in written[:2]:
        overlay = cv2.imread(str(path))
        assert overlay is not None and overlay.shape == (256, 256, 3)  # 32 px input, drawn 8x
        # A colour map was drawn: the channels differ somewhere.
        assert np.abs(overlay[..., 0].astype(int) - overlay[..., 2].astype(int)).max() > 10


@pytest.mark.parametrize("name", MODELS)
def test_gradcam_maps_are_not_empty_and_of_the_input_size(name):
    from cxrzoo.reports.gradcam import gradcam_maps

    if name == "ensemble":  # its members at 64 px, so that their last stage is 2 x 2
        members = [tiny_model(m, seed=i, image_size=64) for i, m in enumerate(MODELS[:3])]
        model = cxrzoo.create_model("ensemble", members=members, weights=[1, 2, 1])
    else:
        model = tiny_model(name, image_size=64)
    image = np.random.default_rng(0).integers(0, 255, (90, 80), dtype=np.uint8)
    result = gradcam_maps(model, image, list(range(len(model.labels))))
    size = max(m.config.image_size for m in model.member_models() or [model])
    assert result.image.shape == (size, size) and result.maps.shape == (len(model.labels), size, size)
    assert np.isfinite(result.maps).all() and result.maps.max() > 0
    if name == "ensemble":  # the members' maps, averaged with the members' weights
        parts = [gradcam_maps(m, image, list(range(len(model.labels)))).maps for m in model.member_models()]
        np.testing.assert_allclose(result.maps, (parts[0] + 2 * parts[1] + parts[2]) / 4, atol=1e-5)


def test_the_conformance_suite_fails_a_model_whose_gradcam_layer_never_runs():
    from cxrzoo.reports.gradcam import GradCamError

    model = tiny_model("chest_xray_attention", image_size=64)

    def bypass(x):  # the old forward: the attention module's forward_with_maps, not the module
        f, _ = model._features(x)
        return model.classifier(model.dropout(f.mean((2, 3))))

    model.forward = bypass
    with pytest.raises(GradCamError, match="never ran in forward"):
        check_gradcam(model)
