"""Image steps: one decoded 8-bit grey image in, one out (OpenCV)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cxrzoo.transforms.base import Transform, TransformError


def _check(img: np.ndarray, step: str) -> np.ndarray:
    if img.dtype != np.uint8 or img.ndim != 2:
        raise TransformError(f"{step} expects a 2-D uint8 grey image, got {img.dtype} of shape {img.shape}")
    return img


class Resize(Transform):
    """Resize to image_size x image_size (area interpolation when shrinking)."""

    def __call__(self, img: np.ndarray, **context: Any) -> np.ndarray:
        _check(img, "resize")
        size = self.image_size
        if img.shape == (size, size):
            return img
        shrinking = img.shape[0] > size or img.shape[1] > size
        interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        return cv2.resize(img, (size, size), interpolation=interp)


class CenterCrop(Transform):
    """Crop the largest centred square (a no-op on square images)."""

    def __call__(self, img: np.ndarray, **context: Any) -> np.ndarray:
        h, w = _check(img, "center_crop").shape
        if h == w:
            return img
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        return np.ascontiguousarray(img[top : top + side, left : left + side])


class Letterbox(Transform):
    """Pad to a square, centred, with the median grey of the image's border (or 0, or a level).

    ``fill`` is ``"median"`` (the median of the outermost rows and columns, so the padding
    matches the background), ``"zero"`` or a grey level 0-255.
    """

    def __init__(self, *, image_size: int, fill: str | int = "median") -> None:
        super().__init__(image_size=image_size)
        ok = fill in ("median", "zero") or (
            isinstance(fill, int) and not isinstance(fill, bool) and 0 <= fill <= 255
        )
        if not ok:
            raise TransformError(
                f"letterbox: fill must be 'median', 'zero' or a grey level 0-255, got {fill!r}"
            )
        self.fill = fill

    def __call__(self, img: np.ndarray, **context: Any) -> np.ndarray:
        h, w = _check(img, "letterbox").shape
        if h == w:
            return img
        if self.fill == "median":
            border = np.concatenate([img[0], img[-1], img[1:-1, 0], img[1:-1, -1]])
            value = int(np.median(border))
        else:
            value = 0 if self.fill == "zero" else int(self.fill)
        side = max(h, w)
        top, left = (side - h) // 2, (side - w) // 2
        return cv2.copyMakeBorder(
            img, top, side - h - top, left, side - w - left, cv2.BORDER_CONSTANT, value=value
        )


class Clahe(Transform):
    """Contrast-limited adaptive histogram equalisation."""

    def __init__(self, *, image_size: int, clip_limit: float = 2.0, tile: int = 8) -> None:
        super().__init__(image_size=image_size)
        if clip_limit <= 0 or tile < 1:
            raise TransformError(f"clahe: clip_limit must be > 0 and tile >= 1, got {clip_limit}, {tile}")
        self.clip_limit = float(clip_limit)
        self.tile = int(tile)

    def __call__(self, img: np.ndarray, **context: Any) -> np.ndarray:
        # cv2.CLAHE objects are not safe to share between threads: make one per call.
        clahe = cv2.createCLAHE(clipLimit=self.clip_limit, tileGridSize=(self.tile, self.tile))
        return clahe.apply(_check(img, "clahe"))


class HistEq(Transform):
    """Global histogram equalisation."""

    def __call__(self, img: np.ndarray, **context: Any) -> np.ndarray:
        return cv2.equalizeHist(_check(img, "histeq"))


class Denoise(Transform):
    """Edge-preserving bilateral filter (sigma in grey levels and pixels)."""

    def __init__(
        self, *, image_size: int, diameter: int = 5, sigma_color: float = 25.0, sigma_space: float = 5.0
    ) -> None:
        super().__init__(image_size=image_size)
        self.diameter, self.sigma_color, self.sigma_space = (
            int(diameter),
            float(sigma_color),
            float(sigma_space),
        )

    def __call__(self, img: np.ndarray, **context: Any) -> np.ndarray:
        return cv2.bilateralFilter(_check(img, "denoise"), self.diameter, self.sigma_color, self.sigma_space)


class ContrastNormalize(Transform):
    """Stretch the [low, high] percentiles of the image to the full 0-255 range."""

    def __init__(self, *, image_size: int, low: float = 1.0, high: float = 99.0) -> None:
        super().__init__(image_size=image_size)
        if not 0 <= low < high <= 100:
            raise TransformError(f"contrast_normalize: need 0 <= low < high <= 100, got {low}, {high}")
        self.low, self.high = float(low), float(high)

    def __call__(self, img: np.ndarray, **context: Any) -> np.ndarray:
        lo, hi = np.percentile(_check(img, "contrast_normalize"), (self.low, self.high))
        if hi <= lo:
            return img
        out = (img.astype(np.float32) - lo) * (255.0 / (hi - lo))
        return np.clip(out, 0, 255).astype(np.uint8)


class LungMask(Transform):
    """Keep the lungs, blank the rest.

    With ``dir`` the mask of ``name.png`` is read from that folder (non-zero = lung). Without
    it an approximate mask is estimated: the two largest dark regions inside the body,
    closed and dilated so that lung borders and opacities stay in.
    """

    def __init__(self, *, image_size: int, dir: str | None = None, fill: int = 0) -> None:
        super().__init__(image_size=image_size)
        self.dir = Path(dir).expanduser() if dir else None
        self.fill = int(fill)
        if self.dir is not None and not self.dir.is_dir():
            raise TransformError(f"lung_mask: mask folder {self.dir} does not exist")

    def mask_for(self, img: np.ndarray, name: str | None) -> np.ndarray:
        if self.dir is not None:
            if name is None:
                raise TransformError("lung_mask(dir=...) needs the image's file name")
            path = self.dir / name
            mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            if mask is None:
                raise TransformError(f"lung_mask: no readable mask {path} for image {name}")
            if mask.shape != img.shape:
                mask = cv2.resize(mask, img.shape[::-1], interpolation=cv2.INTER_NEAREST)
            return mask > 0
        return estimate_lung_mask(img)

    def __call__(self, img: np.ndarray, *, name: str | None = None, **context: Any) -> np.ndarray:
        mask = self.mask_for(_check(img, "lung_mask"), name)
        out = img.copy()
        out[~mask] = self.fill
        return out


def estimate_lung_mask(img: np.ndarray) -> np.ndarray:
    """Approximate lungs: the large dark regions enclosed by the brighter body.

    Otsu separates bright tissue from dark air; dark regions that do not touch the image
    border are air inside the chest. The two largest are kept, closed and slightly dilated so
    lung borders and opacities stay in. Falls back to the whole image when nothing fits.
    """
    h, w = img.shape
    blur = cv2.GaussianBlur(img, (0, 0), max(1.0, min(h, w) / 128))
    _, bright = cv2.threshold(blur, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    dark = (bright == 0).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(dark)
    candidates = []
    for i in range(1, count):
        x, y, bw, bh, area = stats[i]
        if x == 0 or y == 0 or x + bw >= w or y + bh >= h:
            continue  # air outside the body
        candidates.append((area, i))
    keep = [i for area, i in sorted(candidates, reverse=True)[:2] if area >= 0.01 * h * w]
    if not keep:
        return np.ones_like(img, dtype=bool)
    mask = np.isin(labels, keep).astype(np.uint8)
    k = max(3, (min(h, w) // 32) | 1)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((k, k), np.uint8))
    mask = cv2.dilate(mask, np.ones((k, k), np.uint8))
    return mask > 0
