"""Decoding PNG, JPEG and TIFF: bit depths, the pixel limit, and paths that are not files."""

from __future__ import annotations

import os
import struct
import threading
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from cxrzoo.data import io as image_io
from cxrzoo.data.io import ImageReadError, read_image, set_max_image_pixels, to_grey_uint8
from cxrzoo.errors import DataError, UserError


@pytest.fixture(autouse=True)
def _default_limit(monkeypatch):
    monkeypatch.delenv(image_io.MAX_PIXELS_ENV, raising=False)
    previous = set_max_image_pixels(None)
    yield
    set_max_image_pixels(previous)


def write(path: Path, img: np.ndarray) -> Path:
    ok, buf = cv2.imencode(path.suffix, img)
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def twelve_bit(h: int = 20, w: int = 30) -> np.ndarray:
    """A shuffled 12-bit ramp from 0 to 4095, stored in uint16 (as 16-bit PNG/TIFF hold it)."""
    values = np.random.default_rng(0).permutation(np.linspace(0, 4095, h * w).round().astype(np.uint16))
    values[:4] = (0, 1000, 2048, 4095)  # the pixels checked by hand
    return values.reshape(h, w)


def test_image_read_error_is_a_data_error_and_an_os_error():
    exc = ImageReadError("a.png", "missing")
    assert isinstance(exc, DataError) and isinstance(exc, OSError)
    assert (exc.path, exc.reason, str(exc), exc.exit_code) == ("a.png", "missing", "a.png: missing", 3)


@pytest.mark.parametrize("suffix", [".png", ".tif", ".tiff"])
def test_sixteen_bit_image_with_twelve_bit_content_keeps_its_contrast(tmp_path, suffix):
    src = twelve_bit()
    out = read_image(write(tmp_path / f"x{suffix}", src))
    assert out.dtype == np.uint8 and out.shape == src.shape
    # A fixed shift by 8 would leave 4095 >> 8 + 1 = 16 grey levels; the real range gives 256.
    assert len(np.unique(out)) > 16
    assert (out.min(), out.max()) == (0, 255)
    # Order is preserved: sorting by the source sorts the output.
    order = np.argsort(src, axis=None, kind="stable")
    assert np.all(np.diff(out.ravel()[order].astype(int)) >= 0)
    # min..max onto 0..255, by hand for a few values: 4095 -> 255, 0 -> 0, v -> round(v * 255 / 4095).
    # 1000 * 255 / 4095 = 62.27 -> 62; 2048 * 255 / 4095 = 127.53 -> 128.
    np.testing.assert_array_equal(out.ravel()[:4], [0, 62, 128, 255])


def test_sixteen_bit_offset_range_is_stretched_from_its_minimum(tmp_path):
    src = (np.arange(100, dtype=np.uint16).reshape(10, 10) * 10 + 30000).astype(np.uint16)  # 30000..30990
    out = read_image(write(tmp_path / "x.png", src))
    expected = np.rint((src.astype(np.float64) - 30000) * 255 / 990).astype(np.uint8)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif"])
@pytest.mark.parametrize("colour", [False, True])
def test_eight_bit_images_decode_as_opencv_reads_them(tmp_path, suffix, colour):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (16, 12, 3) if colour else (16, 12), dtype=np.uint8)
    path = write(tmp_path / f"x{suffix}", img)
    out = read_image(path)
    reference = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if reference.ndim == 3:
        reference = cv2.cvtColor(reference, cv2.COLOR_BGR2GRAY)
    np.testing.assert_array_equal(out, reference)
    if suffix != ".jpg" and not colour:  # lossless grey: the very pixels written
        np.testing.assert_array_equal(out, img)


def test_eight_bit_arrays_are_returned_unchanged():
    img = np.random.default_rng(2).integers(0, 256, (5, 7), dtype=np.uint8)
    np.testing.assert_array_equal(to_grey_uint8(img), img)


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` 8-bit grey, with one tiny IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    )


def test_huge_png_header_is_refused_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(20000, 20000))

    def no_decode(*args, **kwargs):
        raise AssertionError("decoded an image over the pixel limit")

    monkeypatch.setattr(image_io.cv2, "imdecode", no_decode)
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path))
    assert "20000 x 20000 = 400,000,000 pixels" in message
    assert "limit of 100,000,000" in message
    assert "CXRZOO_MAX_IMAGE_PIXELS=400000000" in message


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif"])
def test_pixel_limit_comes_from_the_environment_or_the_setter(tmp_path, monkeypatch, suffix):
    path = write(tmp_path / f"x{suffix}", np.full((30, 40), 128, np.uint8))  # 1,200 pixels
    assert read_image(path).shape == (30, 40)
    monkeypatch.setenv(image_io.MAX_PIXELS_ENV, "1199")
    with pytest.raises(ImageReadError, match=r"40 x 30 = 1,200 pixels is over the limit of 1,199"):
        read_image(path)
    monkeypatch.setenv(image_io.MAX_PIXELS_ENV, "1200")
    assert read_image(path).shape == (30, 40)
    set_max_image_pixels(1000)  # the setter wins over the environment
    with pytest.raises(ImageReadError, match="limit of 1,000"):
        read_image(path)


@pytest.mark.parametrize("value", ["lots", "0", "-5"])
def test_a_bad_pixel_limit_is_a_user_error(tmp_path, monkeypatch, value):
    path = write(tmp_path / "x.png", np.zeros((4, 4), np.uint8))
    monkeypatch.setenv(image_io.MAX_PIXELS_ENV, value)
    with pytest.raises(UserError, match="CXRZOO_MAX_IMAGE_PIXELS"):
        read_image(path)
    with pytest.raises(UserError, match="positive whole number"):
        set_max_image_pixels(0)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")
def test_a_fifo_is_refused_at_once(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    outcome: list[BaseException | None] = []

    def attempt() -> None:
        try:
            read_image(fifo)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    start = time.monotonic()
    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout=5)
    if worker.is_alive():  # unblock the reader so the test run can finish
        with open(fifo, "wb"):
            pass
        pytest.fail("read_image blocked on a FIFO")
    assert time.monotonic() - start < 1.0
    assert isinstance(outcome[0], ImageReadError)
    assert outcome[0].reason.startswith("not a regular file")


def test_folders_and_devices_are_refused(tmp_path):
    with pytest.raises(ImageReadError, match="is a directory"):
        read_image(tmp_path)
    if Path("/dev/zero").exists():  # endless: reading it would never return
        with pytest.raises(ImageReadError, match="not a regular file"):
            read_image("/dev/zero")
    with pytest.raises(ImageReadError, match="missing"):
        read_image(tmp_path / "absent.png")


def test_content_that_is_no_known_format_is_undecodable(tmp_path):
    path = tmp_path / "notes.png"
    path.write_bytes(b"just some text, not an image at all\n" * 4)
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert info.value.reason.startswith("undecodable")
