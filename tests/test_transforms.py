import numpy as np
import pytest
import torch

from cxrzoo.transforms import Preprocessing, TransformError, parse_spec
from cxrzoo.transforms.image import estimate_lung_mask


def _image(size=96, seed=0):
    rng = np.random.default_rng(seed)
    img = np.full((size, size), 10, np.uint8)  # air around the body
    img[size // 8 : 7 * size // 8, size // 16 : 15 * size // 16] = 120  # body
    img[size // 4 : 3 * size // 4, size // 8 : size // 2 - 4] = 40  # "lungs"
    img[size // 4 : 3 * size // 4, size // 2 + 4 : 7 * size // 8] = 40
    return np.clip(img + rng.normal(0, 5, img.shape), 0, 255).astype(np.uint8)


def test_specs_parse_with_options():
    spec = parse_spec("clahe(clip_limit=3.0, tile=4)")
    assert spec.name == "clahe" and dict(spec.kwargs) == {"clip_limit": 3.0, "tile": 4}
    with pytest.raises(TransformError, match="expected NAME"):
        parse_spec("clahe(3.0")


def test_pipeline_shapes_channels_and_normalisation():
    prep = Preprocessing(
        ["denoise", "clahe(clip_limit=2.0)", "resize", "scale", "normalize_imagenet"],
        image_size=32,
        in_chans=3,
    )
    x = prep(_image())
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    # ImageNet statistics are per channel, so the repeated grey channels differ after normalising.
    assert not torch.allclose(x[0], x[1])
    grey = Preprocessing(["resize", "scale", "normalize_grey"], image_size=32)(_image())
    assert grey.shape == (1, 32, 32)
    assert abs(float(grey.mean()) - (float(_image().mean()) / 255 - 0.5) / 0.25) < 0.1


def test_pipeline_mistakes_are_explained():
    with pytest.raises(TransformError, match="no 'resize' step"):
        Preprocessing(["clahe", "scale"], image_size=32)
    with pytest.raises(TransformError, match="comes after a tensor step"):
        Preprocessing(["resize", "scale", "clahe"], image_size=32)
    with pytest.raises(TransformError, match="start its tensor steps with 'scale'"):
        Preprocessing(["resize", "normalize_grey"], image_size=32)
    with pytest.raises(Exception, match="Did you mean 'clahe'"):
        Preprocessing(["resize", "clahee", "scale"], image_size=32)
    with pytest.raises(TransformError, match="takes no option"):
        Preprocessing(["resize(colour=1)", "scale"], image_size=32)


def test_cache_key_follows_image_steps_only():
    a = Preprocessing(["resize", "clahe", "scale", "normalize_grey"], image_size=32)
    b = Preprocessing(["resize", "clahe", "scale", "normalize_imagenet"], image_size=32)
    c = Preprocessing(["resize", "scale", "normalize_grey"], image_size=32)
    d = Preprocessing(["resize", "clahe", "scale"], image_size=64)
    assert a.cache_key == b.cache_key
    assert len({a.cache_key, c.cache_key, d.cache_key}) == 3


def test_clahe_and_histeq_raise_contrast():
    yy, xx = np.mgrid[0:64, 0:64]
    low = (120 + 6 * np.sin(xx / 3) * np.cos(yy / 5)).astype(np.uint8)  # faint texture
    for step in ("clahe", "histeq", "contrast_normalize"):
        out = Preprocessing(["resize", step, "scale"], image_size=64).image(low)
        assert out.std() > 2 * low.std(), step


def test_augmentation_is_seeded_and_only_in_training():
    prep = Preprocessing(["resize", "scale", "normalize_grey"], image_size=32, augment="augment_report")
    batch = torch.from_numpy(np.stack([_image(32, s) for s in range(4)]))
    plain = prep.tensor(batch)
    assert torch.equal(plain, prep.tensor(batch))  # inference: no augmentation
    a = prep.tensor(batch, train=True, generator=torch.Generator().manual_seed(1))
    b = prep.tensor(batch, train=True, generator=torch.Generator().manual_seed(1))
    c = prep.tensor(batch, train=True, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, plain)
    assert a.shape == plain.shape


def test_flip_only_augmentation_mirrors():
    prep = Preprocessing(
        ["resize", "scale"],
        image_size=16,
        augment="augment(hflip=1.0, rotate=0, crop_scale=(1.0, 1.0), brightness=0, contrast=0)",
    )
    img = np.zeros((16, 16), np.uint8)
    img[:, :4] = 255
    out = prep.tensor(torch.from_numpy(img)[None], train=True, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out[0, 0], torch.from_numpy(img[:, ::-1].copy()).float() / 255, atol=1e-5)


def test_lung_mask_from_files_and_estimated(tmp_path):
    import cv2

    img = _image(64)
    mask = np.zeros((64, 64), np.uint8)
    mask[10:50, 5:30] = 255
    cv2.imwrite(str(tmp_path / "a.png"), mask)
    prep = Preprocessing([f"lung_mask(dir={str(tmp_path)!r})", "resize", "scale"], image_size=64)
    out = prep.image(img, name="a.png")
    assert (out[mask == 0] == 0).all() and (out[mask > 0] == img[mask > 0]).all()
    with pytest.raises(TransformError, match="no readable mask"):
        prep.image(img, name="b.png")
    estimated = estimate_lung_mask(img)
    assert estimated[32, 20] and estimated[32, 44] and not estimated[2, 2]
