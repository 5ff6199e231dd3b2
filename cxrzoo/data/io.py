"""Decoding radiographs into 8-bit grey, whatever mode they were saved in."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

# OpenCV logs a warning for every file it cannot decode; the exception we raise says it better.
try:
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
except AttributeError:  # pragma: no cover - older OpenCV builds
    pass


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
        if lo >= 0.0 and hi <= 1.0:
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
        raise ImageReadError(path, _why_undecodable(data))
    return to_grey_uint8(img, source=str(path))


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"IEND\xaeB`\x82"
# Bit depths PNG allows per colour type (0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA).
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}


def _why_undecodable(data: np.ndarray) -> str:
    """``truncated``, ``unsupported PNG mode …`` or ``undecodable``, from the file's bytes."""
    head = data[:33].tobytes()
    if not head.startswith(_PNG_SIGNATURE):
        return "undecodable"
    if len(head) >= 26 and head[12:16] == b"IHDR":
        depth, colour = head[24], head[25]
        if depth not in _PNG_DEPTHS.get(colour, ()):
            return f"unsupported PNG mode (colour type {colour}, bit depth {depth})"
    # A PNG without its closing IEND chunk was cut off (an interrupted download or copy).
    return "undecodable" if data[-len(_PNG_END) :].tobytes() == _PNG_END else "truncated"
