"""center_crop and letterbox: non-square radiographs to squares without stretching them."""

from __future__ import annotations

import numpy as np
import pytest

from cxrzoo.config import DEFAULT_PREPROCESSING, ModelConfig
from cxrzoo.transforms import Preprocessing, TransformError
from cxrzoo.transforms.base import build_transform


def ramp(h: int, w: int) -> np.ndarray:
    """Pixel (r, c) holds (r * w + c) % 256: every position recognisable."""
    return (np.arange(h * w) % 256).astype(np.uint8).reshape(h, w)


@pytest.mark.parametrize(("h", "w"), [(6, 10), (10, 6), (7, 10), (10, 7), (8, 8)])
def test_center_crop_keeps_the_largest_centred_square(h, w):
    img = ramp(h, w)
    out = build_transform("center_crop", image_size=4)(img)
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    assert out.shape == (side, side) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, img[top : top + side, left : left + side])
    if (h, w) == (6, 10):  # by hand: columns 2..7 of every row
        assert out[0, 0] == 2 and out[5, 5] == 5 * 10 + 7


@pytest.mark.parametrize(("h", "w"), [(6, 10), (10, 6), (7, 10)])
@pytest.mark.parametrize("fill", ["median", "zero", 200])
def test_letterbox_pads_to_a_centred_square(h, w, fill):
    img = np.full((h, w), 90, np.uint8)
    img[1:-1, 1:-1] = 250  # bright inside, a border of 90
    out = build_transform(f"letterbox(fill={fill!r})", image_size=4)(img)
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    assert out.shape == (side, side) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[top : top + h, left : left + w], img)
    pad = np.ones(out.shape, bool)
    pad[top : top + h, left : left + w] = False
    expected = {"median": 90, "zero": 0, 200: 200}[fill]
    assert pad.any() and np.all(out[pad] == expected)


def test_letterbox_refuses_a_bad_fill():
    with pytest.raises(TransformError, match="letterbox: fill"):
        build_transform("letterbox(fill='mean')", image_size=4)


def test_default_preprocessing_crops_before_resizing():
    assert DEFAULT_PREPROCESSING.index("center_crop") < DEFAULT_PREPROCESSING.index("resize")
    assert ModelConfig().preprocessing == DEFAULT_PREPROCESSING
    prep = Preprocessing(DEFAULT_PREPROCESSING, image_size=16)
    wide = np.random.default_rng(0).integers(0, 256, (32, 48), dtype=np.uint8)
    without_crop = Preprocessing([s for s in DEFAULT_PREPROCESSING if s != "center_crop"], image_size=16)
    # A wide image: the centre square, not the whole image squeezed.
    np.testing.assert_array_equal(prep.image(wide), without_crop.image(wide[:, 8:40]))
    # A square image (NIH): exactly what the pipeline gave before center_crop was added.
    square = wide[:, :32]
    np.testing.assert_array_equal(prep.image(square), without_crop.image(square))
