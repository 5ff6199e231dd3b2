"""Decoding radiographs into 8-bit grey, whatever mode they were saved in."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

# libpng reports truncated files on stderr as well as failing; the failure is what we use.
cv2.setLogLevel(0) if hasattr(cv2, "setLogLevel") else None


class ImageReadError(OSError):
    """An image that cannot be used, with the file and the reason."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def to_grey_uint8(img: np.ndarray, *, source: str = "image") -> np.ndarray:
    """Grey ``uint8`` ``[H, W]`` from grey, RGB, RGBA, 16-bit or float arrays."""
    if img.ndim == 3:
        channels = img.shape[2]
        if channels == 1:
            img = img[:, :, 0]
        elif channels == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        elif channels == 4:
            # NIH's RGBA files carry grey content; alpha is not transparency worth honouring.
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY)
        elif channels == 2:  # grey + alpha
            img = img[:, :, 0]
        else:
            raise ImageReadError(source, f"unsupported number of channels {channels}")
    elif img.ndim != 2:
        raise ImageReadError(source, f"unsupported image shape {img.shape}")
    if img.dtype == np.uint8:
        return np.ascontiguousarray(img)
    if img.dtype == np.uint16:
        # Full 16-bit range to 8 bits; NIH's 16-bit PNGs use the whole range.
        return (img >> 8).astype(np.uint8) if img.max() > 255 else img.astype(np.uint8)
    if np.issubdtype(img.dtype, np.floating):
        lo, hi = float(np.nanmin(img)), float(np.nanmax(img))
        if 0.0 <= lo and hi <= 1.0:
            return np.round(img * 255).astype(np.uint8)
        if hi > lo:
            return np.round((img - lo) * (255.0 / (hi - lo))).astype(np.uint8)
        return np.zeros(img.shape, np.uint8)
    if np.issubdtype(img.dtype, np.integer):
        return np.clip(img, 0, 255).astype(np.uint8)
    raise ImageReadError(source, f"unsupported pixel type {img.dtype}")


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode ``path`` to grey ``uint8``; :class:`ImageReadError` names the file and why."""
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise ImageReadError(path, "missing") from None
    except OSError as exc:
        raise ImageReadError(path, f"unreadable ({exc.strerror or exc})") from None
    if data.size == 0:
        raise ImageReadError(path, "empty file")
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        kind = "truncated" if data[:8].tobytes() == b"\x89PNG\r\n\x1a\n" else "not a decodable image"
        raise ImageReadError(path, kind)
    return to_grey_uint8(img, source=str(path))
