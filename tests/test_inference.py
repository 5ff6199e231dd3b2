"""The inference layer: inputs from files, folders and globs, the streaming decoder, composite
models, predict_arrays, and the thread settings."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

import cxrzoo
from cxrzoo import inference
from cxrzoo.data.io import ImageReadError, read_image
from cxrzoo.errors import UserError
from cxrzoo.inference import decode_stream, expand_inputs, predict_arrays, predict_stream
from cxrzoo.testing import tiny_model

DX_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"


def write_png(path: Path, seed: int, shape: tuple[int, int] = (40, 36)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.random.default_rng(seed).integers(0, 255, shape, dtype=np.uint8)
    assert cv2.imwrite(str(path), img)
    return path


def write_dicom(path: Path, seed: int, *, preamble: bool = True) -> Path:
    """A 12-bit DX image written with pydicom."""
    pixels = np.random.default_rng(seed).integers(0, 4096, (48, 40), dtype=np.uint16)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = DX_STORAGE
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = DX_STORAGE
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.astype("<u2").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=preamble)
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """PNG, JPEG, TIFF, DICOM (.dcm, no suffix, UID-named) in nested folders, plus non-images."""
    root = tmp_path / "scans"
    write_png(root / "a.png", 0)
    write_png(root / "nested" / "b.PNG", 1)
    assert cv2.imwrite(str(root / "nested" / "c.jpg"), np.full((30, 30), 90, np.uint8))
    (root / "nested" / "deeper").mkdir()
    assert cv2.imwrite(str(root / "nested" / "deeper" / "d.tif"), np.full((30, 30), 40, np.uint8))
    write_dicom(root / "e.dcm", 2)
    write_dicom(root / "dicom" / "IM000001", 3)
    write_dicom(root / "dicom" / "1.2.826.0.1.3680043.2", 4)
    (root / "notes.txt").write_text("not an image")
    (root / "dicom" / "README").write_text("no magic here")
    write_png(root / ".hidden" / "x.png", 5)
    (root / ".DS_Store").write_bytes(b"\x00" * 200)
    return root


def test_a_folder_is_searched_recursively_for_every_image_format(tree):
    found = [p.relative_to(tree).as_posix() for p in expand_inputs([tree])]
    assert found == sorted(found)
    assert set(found) == {
        "a.png",
        "nested/b.PNG",
        "nested/c.jpg",
        "nested/deeper/d.tif",
        "e.dcm",
        "dicom/IM000001",
        "dicom/1.2.826.0.1.3680043.2",
    }


def test_globs_files_and_duplicates(tree):
    found = expand_inputs([str(tree / "**" / "*.png"), str(tree / "a.png"), f"{tree}/./a.png"])
    # The shell's rules: a glob is expanded as written (case matters, hidden folders are not
    # matched by **), and the same file named three ways is taken once.
    assert [p.name for p in found] == ["a.png"]
    found = expand_inputs([str(tree / "nested" / "*"), str(tree / "notes.txt")])
    # A folder matched by the glob is searched; a file named explicitly is taken as it is.
    assert {p.name for p in found} == {"b.PNG", "c.jpg", "d.tif", "notes.txt"}


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("missing.png", "no such file or folder"),
        ("nothing-*.png", "matches no image file"),
        ("empty", "holds no PNG, JPEG, TIFF or DICOM image"),
    ],
)
def test_a_path_that_matches_nothing_is_a_user_error(tmp_path, arg, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "list.csv").write_text("a,b\n")
    with pytest.raises(UserError, match=message) as info:
        expand_inputs([str(tmp_path / arg)])
    assert arg in str(info.value)


def test_dicom_files_are_predicted_like_their_decoded_pixels(tree):
    model = tiny_model("chest_xray_attention")
    paths = [tree / "e.dcm", tree / "dicom" / "IM000001"]
    preds = list(predict_stream(model, paths, batch_size=2, workers=2))
    assert [p.error for p in preds] == [None, None]
    expected = model.predict_proba([read_image(p) for p in paths], workers=0)
    np.testing.assert_allclose(np.stack([p.probabilities for p in preds]), expected, atol=1e-6)


def test_unreadable_images_get_their_error_and_the_rest_are_predicted(tmp_path):
    good = [write_png(tmp_path / f"{i}.png", i) for i in range(3)]
    bad = tmp_path / "1b.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    model = tiny_model("rare_disease")
    preds = list(predict_stream(model, [good[0], good[1], bad, good[2]], batch_size=2, workers=2))
    assert [p.path for p in preds] == [str(good[0]), str(good[1]), str(bad), str(good[2])]
    assert [p.ok for p in preds] == [True, True, False, True]
    assert preds[2].probabilities is None and preds[2].error
    alone = model.predict_proba(good)
    np.testing.assert_allclose(np.stack([p.probabilities for p in preds if p.ok]), alone, atol=1e-6)
    with pytest.raises(ImageReadError, match="1b.png"):
        model.predict_proba([good[0], bad])


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_the_decoder_stays_a_bounded_distance_ahead(workers):
    """Memory does not grow with the number of images: the decoder never pulls more than
    2 * batch + workers inputs ahead of what it has handed over."""
    model = tiny_model("chest_xray_attention")
    pulled = 0
    lock = threading.Lock()

    def images():
        nonlocal pulled
        for i in range(60):
            with lock:
                pulled += 1
            yield np.random.default_rng(i).integers(0, 255, (50, 50), dtype=np.uint8)

    batch = 4
    handed = 0
    most_ahead = 0
    for decoded in decode_stream(images(), [model.preprocessing()], batch_size=batch, workers=workers):
        handed += len(decoded)
        most_ahead = max(most_ahead, pulled - handed)
        assert all(d.inputs[0].shape == (32, 32) for d in decoded)  # downscaled right away
    assert handed == 60
    assert most_ahead <= 2 * batch + workers


def test_a_composite_decodes_each_image_once_and_predicts_each_member_on_its_own_input(tmp_path, monkeypatch):
    a = tiny_model("chest_xray_attention", seed=1)
    b = tiny_model("rare_disease", seed=2, image_size=48, in_chans=3)
    ens = cxrzoo.create_model("ensemble", members=[a, b], weights=[3, 1])
    paths = [write_png(tmp_path / f"{i}.png", i, (70, 60)) for i in range(5)]
    calls = []

    def counting(path):
        calls.append(Path(path).name)
        return read_image(path)

    monkeypatch.setattr(inference, "read_image", counting)
    got = ens.predict_proba(paths, batch_size=2)
    assert sorted(calls) == sorted(p.name for p in paths)  # once per image, not once per member
    monkeypatch.undo()
    expected = 0.75 * a.predict_proba(paths) + 0.25 * b.predict_proba(paths)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_predict_arrays_matches_predicting_files(tmp_path):
    model = tiny_model("advanced_resnet")
    paths = [write_png(tmp_path / f"{i}.png", i, (64, 64)) for i in range(5)]
    prep = model.preprocessing()
    cache = np.stack([prep.image(read_image(p)) for p in paths])
    expected = model.predict_proba(paths)
    np.testing.assert_allclose(predict_arrays(model, cache, batch_size=2), expected, atol=1e-6)
    rows = np.array([4, 0, 2])
    np.testing.assert_allclose(predict_arrays(model, cache, rows=rows), expected[rows], atol=1e-6)
    assert predict_arrays(model, cache[:0]).shape == (0, len(model.labels))
    with pytest.raises(UserError, match="uint8 images"):
        predict_arrays(model, cache.astype(np.float32))


def test_predict_arrays_of_a_composite_takes_one_array_per_member(tmp_path):
    a = tiny_model("chest_xray_attention", seed=1)
    b = tiny_model("rare_disease", seed=2)
    paths = [write_png(tmp_path / f"{i}.png", i) for i in range(3)]
    same = cxrzoo.create_model("ensemble", members=[a, b])
    cache = np.stack([a.preprocessing().image(read_image(p)) for p in paths])
    # Members with the same image steps and size share one array.
    np.testing.assert_allclose(predict_arrays(same, cache), same.predict_proba(paths), atol=1e-6)
    c = tiny_model("rare_disease", seed=2, image_size=40)
    mixed = cxrzoo.create_model("ensemble", members=[a, c])
    with pytest.raises(UserError, match="one array per member"):
        predict_arrays(mixed, cache)
    per_member = [np.stack([m.preprocessing().image(read_image(p)) for p in paths]) for m in (a, c)]
    np.testing.assert_allclose(predict_arrays(mixed, per_member), mixed.predict_proba(paths), atol=1e-6)


def test_predict_keeps_the_training_flag_and_takes_tensors():
    model = tiny_model("chest_xray_attention").train()
    x = torch.randn(3, 1, 32, 32)
    probs = model.predict_proba(x, batch_size=2)
    assert model.training and probs.shape == (3, len(model.labels))
    with torch.no_grad():
        np.testing.assert_allclose(probs, torch.sigmoid(model.eval()(x)).numpy(), atol=1e-6)
    with pytest.raises(TypeError, match="ambiguous"):
        model.predict_proba([np.zeros((8, 8), np.uint8), x])


def test_thread_settings_respect_the_user_and_never_need_torch(tmp_path):
    """In a fresh interpreter: importing cxrzoo sets OMP_WAIT_POLICY=PASSIVE before PyTorch loads,
    keeps a value the user set, CXRZOO_THREADS sets the thread count, 'off' changes nothing."""
    script = (
        "import importlib.util, os, sys\n"
        f"spec = importlib.util.spec_from_file_location('threads_alone', {str(Path(cxrzoo.threads.__file__))!r})\n"
        "alone = sys.modules['threads_alone'] = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(alone)\n"
        "print('torch' in sys.modules)\n"
        "import cxrzoo, torch\n"
        "s = cxrzoo.threads.configure_threads()\n"
        "print(os.environ.get('OMP_WAIT_POLICY'), s.torch_threads, torch.get_num_threads())\n"
    )
    env = {
        k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "KMP_BLOCKTIME", "CXRZOO_THREADS")
    }

    def run(**extra: str) -> list[str]:
        out = subprocess.run(
            [sys.executable, "-c", script], env={**env, **extra}, capture_output=True, text=True, check=True
        )
        return out.stdout.split()

    assert run(CXRZOO_THREADS="1") == ["False", "PASSIVE", "1", "1"]
    assert run(OMP_WAIT_POLICY="ACTIVE", CXRZOO_THREADS="1")[1] == "ACTIVE"
    off = run(CXRZOO_THREADS="off", OMP_NUM_THREADS="1")
    assert off[1:3] == ["None", "None"]
