"""DICOM decoding: the standard's display pipeline, file layouts, compression, and the CLI.

Every file is written here with pydicom; the expected grey levels are worked out by hand
from the DICOM formulas (PS3.3 C.11.1 rescale, C.11.2.1.2 linear window).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from cxrzoo.data import io as image_io
from cxrzoo.data.io import ImageReadError, read_image, set_max_image_pixels

DX_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation


@pytest.fixture(autouse=True)
def _default_limit(monkeypatch):
    monkeypatch.delenv(image_io.MAX_PIXELS_ENV, raising=False)
    previous = set_max_image_pixels(None)
    yield
    set_max_image_pixels(previous)


def dicom(
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits_allocated: int = 16,
    bits_stored: int = 12,
    syntax: str = ExplicitVRLittleEndian,
    meta: bool = True,
    **elements,
) -> Dataset:
    """A DX data set holding ``pixels`` ([H, W], [F, H, W] or RGB [H, W, 3]) as stored values."""
    ds = Dataset()
    if meta:
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = syntax
        ds.file_meta.MediaStorageSOPClassUID = DX_STORAGE
        ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = DX_STORAGE
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "DX"
    rgb = photometric == "RGB"
    frames = pixels.shape[0] if pixels.ndim == 3 and not rgb else None
    ds.Rows, ds.Columns = pixels.shape[-3:-1] if rgb else pixels.shape[-2:]
    if frames:
        ds.NumberOfFrames = frames
    ds.SamplesPerPixel = 3 if rgb else 1
    if rgb:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits_allocated, bits_stored, bits_stored - 1
    ds.PixelRepresentation = 0
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    dtype = "<u2" if bits_allocated == 16 else "u1"
    ds.PixelData = np.ascontiguousarray(pixels).astype(dtype).tobytes()
    return ds


def save(ds: Dataset, path: Path, *, preamble: bool = True, implicit: bool = False) -> Path:
    if preamble:
        ds.save_as(path, enforce_file_format=True)
    else:
        # No 128-byte preamble and no 'DICM': the data set (and meta group, if any) from byte 0.
        ds.save_as(path, enforce_file_format=False, implicit_vr=implicit, little_endian=True)
        assert path.read_bytes()[128:132] != b"DICM"
    return path


# Stored 12-bit values, with junk in the 4 unused high bits (bits 12-15) that Bits Stored
# says to ignore; rescale and window below turn them into these modality values v = 2 s - 1024:
STORED = np.array([[100, 512, 762, 1262], [1512, 2000, 3000, 4095]], np.uint16)
#   s:    100   512  762  1262  1512  2000  3000  4095
#   v:   -824     0  500  1500  2000  2976  4976  7166
JUNK = np.uint16(0xA000)
RESCALE = dict(RescaleSlope=2, RescaleIntercept=-1024)
# Window Center 1000.5 / Width 2001 (LINEAR, PS3.3 C.11.2.1.2.1): with c' = c - 0.5 = 1000 and
# w' = w - 1 = 2000, v <= c' - w'/2 = 0 is black, v > c' + w'/2 = 2000 is white, and between
# y = ((v - c') / w' + 0.5) * 255:
#   v = 500  -> ((500 - 1000) / 2000 + 0.5) * 255 = 0.25 * 255 = 63.75  -> 64
#   v = 1500 -> 0.75 * 255 = 191.25 -> 191
#   v = 2000 -> 1.00 * 255 = 255 (the top of the window is still inside it)
WINDOW = dict(WindowCenter=1000.5, WindowWidth=2001)
WINDOWED = np.array([[0, 0, 64, 191], [255, 255, 255, 255]], np.uint8)


@pytest.mark.parametrize(
    ("photometric", "expected"),
    [
        ("MONOCHROME2", WINDOWED),
        # MONOCHROME1: the minimum is white, so 255 - y: 255 - 63.75 = 191.25 -> 191, 63.75 -> 64.
        ("MONOCHROME1", 255 - WINDOWED),
    ],
)
def test_rescale_and_window_follow_the_standard(tmp_path, photometric, expected):
    ds = dicom(STORED | JUNK, photometric=photometric, **RESCALE, **WINDOW)
    out = read_image(save(ds, tmp_path / "x.dcm"))
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)


def test_without_a_window_the_pixel_range_is_used(tmp_path):
    # v = 2 s - 1024 spans -824 .. 7166 here; y = (v - (-824)) / (7166 - (-824)) * 255:
    #   s = 512  -> v = 0    -> 824 / 7990 * 255 = 26.30 -> 26
    #   s = 2000 -> v = 2976 -> 3800 / 7990 * 255 = 121.28 -> 121
    ds = dicom(STORED | JUNK, **RESCALE)
    out = read_image(save(ds, tmp_path / "x.dcm"))
    assert (out[0, 0], out[1, 3]) == (0, 255)
    assert (out[0, 1], out[1, 1]) == (26, 121)
    # The same for MONOCHROME1, reversed: 255 - 26.30 = 228.70 -> 229.
    ds = dicom(STORED | JUNK, photometric="MONOCHROME1", **RESCALE)
    out = read_image(save(ds, tmp_path / "m1.dcm"))
    assert (out[0, 0], out[1, 3], out[0, 1]) == (255, 0, 229)


def test_bits_stored_masks_the_unused_high_bits(tmp_path):
    clean = read_image(save(dicom(STORED), tmp_path / "clean.dcm"))
    junk = read_image(save(dicom(STORED | JUNK), tmp_path / "junk.dcm"))
    np.testing.assert_array_equal(junk, clean)
    # Stored 0..4095 span the whole output: 4095 -> 255, 100 -> 0, 2000 -> (1900 / 3995) * 255 = 121.28.
    assert (clean[1, 3], clean[0, 0], clean[1, 1]) == (255, 0, 121)


def test_voi_lut_sequence_is_applied(tmp_path):
    # A 4096-entry table mapping stored value s to (s // 16) ** 2 // 64, i.e. 0 .. 1016; the
    # output range is the table's 0 .. 1016, so s = 2000 -> 125 ** 2 // 64 = 244 -> 244 / 1016 * 255.
    table = ((np.arange(4096) // 16) ** 2 // 64).astype(np.uint16)
    item = Dataset()
    item.add_new(0x00283002, "US", [4096, 0, 16])  # LUT Descriptor: entries, first input, bits
    item.add_new(0x00283006, "US", table.tolist())  # LUT Data
    ds = dicom(STORED)
    ds.VOILUTSequence = [item]
    out = read_image(save(ds, tmp_path / "lut.dcm"))
    expected = np.rint(table[STORED.astype(int)] / 1016 * 255).astype(np.uint8)
    assert expected[1, 1] == round(244 / 1016 * 255)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize(
    "layout",
    ["standard.dcm", "standard-named.png", "no-preamble.dcm", "no-preamble.bin", "implicit-no-meta.dcm"],
)
def test_file_layouts_decode_alike(tmp_path, layout):
    expected = read_image(save(dicom(STORED, **WINDOW), tmp_path / "reference.dcm"))
    kind, _, suffix = layout.partition(".")
    path = tmp_path / f"x.{suffix}"
    if kind.startswith("standard"):
        save(dicom(STORED, **WINDOW), path)  # found by its 'DICM' magic whatever the name
    elif kind == "no-preamble":
        save(dicom(STORED, **WINDOW), path, preamble=False)  # meta group at byte 0
    else:
        save(dicom(STORED, meta=False, **WINDOW), path, preamble=False, implicit=True)
    np.testing.assert_array_equal(read_image(path), expected)


def test_rle_lossless_decodes_without_plugins(tmp_path):
    plain = read_image(save(dicom(STORED, **WINDOW), tmp_path / "plain.dcm"))
    ds = dicom(STORED, **WINDOW)
    ds.compress(RLELossless, encoding_plugin="pydicom")
    assert ds.file_meta.TransferSyntaxUID == RLELossless
    np.testing.assert_array_equal(read_image(save(ds, tmp_path / "rle.dcm")), plain)


def test_jpeg_2000_decodes_with_the_codecs_extra(tmp_path):
    pytest.importorskip("openjpeg", reason="the dicom-codecs extra is not installed")
    stored = np.random.default_rng(5).integers(0, 4096, (64, 80)).astype(np.uint16)
    plain = read_image(save(dicom(stored, **WINDOW), tmp_path / "plain.dcm"))
    ds = dicom(stored, **WINDOW)
    ds.compress(JPEG2000Lossless)
    np.testing.assert_array_equal(read_image(save(ds, tmp_path / "j2k.dcm")), plain)


def test_multi_frame_is_refused_by_name(tmp_path):
    frames = np.stack([STORED, 4095 - STORED, np.zeros_like(STORED)])
    with pytest.raises(ImageReadError, match=r"multi-frame DICOM \(3 frames\)"):
        read_image(save(dicom(frames), tmp_path / "frames.dcm"))
    # One frame declared as such is an ordinary radiograph.
    single = dicom(STORED)
    single.NumberOfFrames = 1
    np.testing.assert_array_equal(
        read_image(save(single, tmp_path / "one.dcm")),
        read_image(save(dicom(STORED), tmp_path / "plain.dcm")),
    )


def test_rgb_dicom_becomes_grey(tmp_path):
    rgb = np.random.default_rng(3).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    ds = dicom(rgb, photometric="RGB", bits_allocated=8, bits_stored=8)
    out = read_image(save(ds, tmp_path / "rgb.dcm"))
    np.testing.assert_array_equal(out, cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))


def _undecodable_syntax() -> UID:
    from pydicom.pixels import get_decoder

    if get_decoder(JPEGLSLossless).is_available:
        pytest.skip("a JPEG-LS decoder is installed here")
    return JPEGLSLossless


@pytest.mark.parametrize(
    ("syntax", "needs"),
    [
        (_undecodable_syntax, "cxrzoo[dicom-codecs]"),
        (lambda: UID("1.2.826.0.1.3680043.9.9999.1"), "no pixel data decoder in pydicom"),
    ],
)
def test_a_transfer_syntax_without_decoder_names_file_syntax_and_remedy(tmp_path, syntax, needs):
    uid = syntax()
    ds = dicom(STORED, syntax=uid)
    ds.PixelData = encapsulate([b"\xff\xd8 not really compressed \xff\xd9"])
    ds["PixelData"].VR = "OB"
    path = tmp_path / "compressed.dcm"
    ds.save_as(path, enforce_file_format=True, implicit_vr=False, little_endian=True)
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path))
    assert str(uid) in message and needs in message
    if uid.name != str(uid):
        assert uid.name in message


@pytest.mark.parametrize("damage", ["truncated", "bad-rle"])
def test_damaged_pixel_data_is_an_image_read_error(tmp_path, damage):
    path = tmp_path / "damaged.dcm"
    if damage == "truncated":
        whole = save(dicom(STORED.repeat(20, axis=1)), path).read_bytes()
        path.write_bytes(whole[: len(whole) - 100])
    else:
        ds = dicom(STORED, syntax=RLELossless)
        ds.PixelData = encapsulate([b"\x01" + bytes(63) + b"not run-length data"])  # 1 segment of 2
        ds["PixelData"].VR = "OB"
        ds.save_as(path, enforce_file_format=True)
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert info.value.reason.startswith("undecodable DICOM pixel data in '")
    assert "\n" not in str(info.value)


def test_dicom_without_pixels_and_over_the_limit(tmp_path):
    ds = dicom(STORED)
    del ds.PixelData
    with pytest.raises(ImageReadError, match="without pixel data"):
        read_image(save(ds, tmp_path / "report.dcm"))
    big = dicom(STORED)
    big.Rows = big.Columns = 20000  # the header alone decides; the pixels are never decoded
    with pytest.raises(ImageReadError, match=r"20000 x 20000 = 400,000,000 pixels is over the limit"):
        read_image(save(big, tmp_path / "big.dcm"))


def test_dicom_suffixes_are_images():
    from cxrzoo.data.base import IMAGE_SUFFIXES

    assert {".dcm", ".dicom", ".tif", ".tiff"} <= set(IMAGE_SUFFIXES)


@pytest.fixture(scope="module")
def trained_home(tmp_path_factory):
    from cxrzoo.cli import main

    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CXRZOO_HOME", str(home))
        args = ["train", "chest_xray_attention", "--synthetic-n", "48", "--recipe", "quick"]
        args += ["--epochs", "1", "--image-size", "32", "--no-progress"]
        args += ["--set", "backbone=test_resnet", "--set", "reduction=4"]
        result = CliRunner().invoke(main, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
    return home


def test_cli_predict_reads_dicom_like_the_same_png(trained_home, tmp_path, monkeypatch):
    from cxrzoo.cli import main

    monkeypatch.setenv("CXRZOO_HOME", str(trained_home))
    # A wide 8-bit MONOCHROME2 radiograph and the PNG of the same pixels.
    grey = np.random.default_rng(4).integers(0, 256, (40, 56), dtype=np.uint8)
    dcm = save(dicom(grey, bits_allocated=8, bits_stored=8), tmp_path / "chest.dcm")
    png = tmp_path / "chest.png"
    png.write_bytes(cv2.imencode(".png", grey)[1].tobytes())
    np.testing.assert_array_equal(read_image(dcm), grey)
    result = CliRunner().invoke(main, ["predict", "chest_xray_attention", str(dcm), str(png), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["failed"] == []
    by_image = {Path(r["image"]).name: r["probabilities"] for r in doc["results"]}
    assert set(by_image) == {"chest.dcm", "chest.png"}
    assert by_image["chest.dcm"] == pytest.approx(by_image["chest.png"], abs=1e-6)
    # The Python API and the catalog's check take the same path.
    import cxrzoo
    from cxrzoo.data.catalog import check_image

    (probs,) = cxrzoo.load("chest_xray_attention").predict([dcm])
    assert probs == pytest.approx(by_image["chest.dcm"], abs=1e-6)
    assert check_image(str(dcm)) is None
