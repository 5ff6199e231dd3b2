"""Decoding radiographs into 8-bit grey, whatever format and mode they were saved in.

:func:`read_image` reads PNG, JPEG and TIFF through OpenCV and DICOM through pydicom, and
returns grey ``uint8`` ``[H, W]``:

- 8-bit images are returned as they are (grey, or RGB/RGBA converted to grey);
- 16-bit (and other wide integer) PNG and TIFF are stretched from their own minimum to their
  maximum, so a 12-bit radiograph in a 16-bit file keeps all its grey levels;
- DICOM follows the standard's display pipeline as pydicom implements it: Modality LUT or
  Rescale Slope/Intercept, then the VOI LUT or Window Center/Width (the pixel range when the
  file has neither, or a window of width 0), MONOCHROME1 inverted so that bone is bright.

A DICOM file is refused by name, not guessed at, when it holds more than one frame (a
multi-frame object is a series or a tomosynthesis, not one radiograph: extract the frame to
predict), when its Rescale Slope is 0 or not finite, when its VOI LUT does not parse, or when
its pixel values are constant or not finite after the Modality LUT or the VOI transformation
(nothing would be left to see).
Whatever pydicom or a decoder plugin raises on a damaged file becomes an
:class:`ImageReadError` with the reason, so one bad file never stops a folder.

Before anything is decoded the image's size is read from its header and compared with a
pixel limit (:func:`max_image_pixels`), so a small file that would decode to gigabytes (a
decompression bomb, or simply a huge scan) is refused instead of exhausting memory.
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from cxrzoo.errors import CxrzooError, DataError, UserError, one_line

if TYPE_CHECKING:  # pragma: no cover
    from pydicom.dataset import Dataset

# OpenCV logs a warning for every file it cannot decode; the exception we raise says it better.
try:
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
except AttributeError:  # pragma: no cover - older OpenCV builds
    pass

#: Environment variable that sets the largest image (width x height, in pixels) to decode.
MAX_PIXELS_ENV = "CXRZOO_MAX_IMAGE_PIXELS"
#: Default limit: 10,000 x 10,000. The largest detector plates give about 4,300 x 4,300.
DEFAULT_MAX_IMAGE_PIXELS = 10_000 * 10_000
#: Suffixes read as DICOM even when the file has no 128-byte preamble and 'DICM' magic.
DICOM_SUFFIXES = (".dcm", ".dicom")
#: The optional dependency that adds pydicom's decoders for compressed transfer syntaxes.
DICOM_CODECS_HINT = "pip install 'cxrzoo[dicom-codecs]'"

_max_pixels_override: int | None = None


class ImageReadError(DataError, OSError):
    """An image that cannot be used, with the file (``path``) and the reason (``reason``)."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def set_max_image_pixels(limit: int | None) -> int | None:
    """Set the pixel limit for this process (``None``: back to the environment or default).

    Takes precedence over ``CXRZOO_MAX_IMAGE_PIXELS``; returns the previous setting so that a
    caller can restore it.
    """
    global _max_pixels_override
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise UserError(f"max image pixels must be a positive whole number, got {limit!r}")
    previous, _max_pixels_override = _max_pixels_override, limit
    return previous


def max_image_pixels() -> int:
    """The largest number of pixels (width x height) :func:`read_image` will decode.

    :func:`set_max_image_pixels` if called, else ``CXRZOO_MAX_IMAGE_PIXELS``, else
    :data:`DEFAULT_MAX_IMAGE_PIXELS`. OpenCV has its own ceiling of 2**30 pixels
    (``CV_IO_MAX_IMAGE_PIXELS``), which applies to PNG, JPEG and TIFF beyond this one.
    """
    if _max_pixels_override is not None:
        return _max_pixels_override
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        limit = int(text)
    except ValueError:
        limit = 0
    if limit < 1:
        raise UserError(f"{MAX_PIXELS_ENV}={text!r}: expected a positive whole number of pixels")
    return limit


def _check_pixels(path: Path, width: int, height: int) -> None:
    limit = max_image_pixels()
    if width * height > limit:
        raise ImageReadError(
            path,
            f"image of {width} x {height} = {width * height:,} pixels is over the limit of {limit:,}; "
            f"to decode it set {MAX_PIXELS_ENV}={width * height} "
            "(or call cxrzoo.data.io.set_max_image_pixels)",
        )


def _stretch(values: np.ndarray, lo: float, hi: float, *, invert: bool = False) -> np.ndarray:
    """``values`` from ``[lo, hi]`` onto ``0..255`` (``255..0`` with ``invert``), clipped and
    rounded; all 0 when ``hi <= lo``."""
    if not hi > lo:
        return np.zeros(values.shape, np.uint8)
    dtype = np.float64 if values.dtype == np.float64 else np.float32
    if invert:
        out = (dtype(hi) - values.astype(dtype)) * dtype(255.0 / (hi - lo))
    else:
        out = (values.astype(dtype) - dtype(lo)) * dtype(255.0 / (hi - lo))
    return np.clip(np.rint(out, out=out), 0, 255, out=out).astype(np.uint8)


def _stretch_range(img: np.ndarray) -> np.ndarray:
    # The image's own minimum and maximum, not percentiles: min..max keeps the order of every
    # value and clips nothing (bright bone, metal, burned-in markers keep their detail), and
    # does not depend on how much of the field is collimated background. Any further contrast
    # shaping belongs to a named preprocessing step (contrast_normalize, clahe, standardize),
    # which is recorded with the model's weights.
    return _stretch(img, float(img.min()), float(img.max()))


def to_grey_uint8(img: np.ndarray, *, source: str = "image") -> np.ndarray:
    """Grey ``uint8`` ``[H, W]`` from grey, BGR, BGRA, 16-bit or float arrays.

    ``uint8`` values are kept as they are; other integer types (16-bit PNG and TIFF) are
    stretched from their minimum to their maximum; floats in ``[0, 1]`` are scaled by 255 and
    other floats stretched like integers.
    """
    if img.ndim == 3:
        channels = img.shape[2]
        if channels == 1:
            img = img[:, :, 0]
        elif channels in (3, 4) and img.dtype not in (np.uint8, np.uint16, np.float32):
            # cvtColor takes only these depths; the weights are the same for any type.
            img = img[:, :, :3].astype(np.float32) @ np.array([0.114, 0.587, 0.299], np.float32)
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
    if np.issubdtype(img.dtype, np.floating):
        lo, hi = float(np.nanmin(img)), float(np.nanmax(img))
        if lo >= 0.0 and hi <= 1.0:
            return np.round(img * 255).astype(np.uint8)
        if hi > lo:
            return np.round((img - lo) * (255.0 / (hi - lo))).astype(np.uint8)
        return np.zeros(img.shape, np.uint8)
    if np.issubdtype(img.dtype, np.integer):
        return _stretch_range(img)
    raise ImageReadError(source, f"unsupported pixel type {img.dtype}")


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode ``path`` to grey ``uint8``; :class:`ImageReadError` names the file and why.

    PNG, JPEG and TIFF are told apart by their content, DICOM by the ``DICM`` magic, by a
    ``.dcm``/``.dicom`` suffix or by a data set starting at byte 0 (files without preamble).
    Images larger than :func:`max_image_pixels` are refused before they are decoded; so are
    folders, FIFOs, sockets and devices. Whatever a decoding library raises on a damaged file
    becomes an :class:`ImageReadError` too.
    """
    path = Path(path)
    try:
        return _decode(path)
    except CxrzooError:
        raise
    except Exception as exc:
        raise ImageReadError(path, f"undecodable ({type(exc).__name__}: {one_line(exc, 300)})") from None


def read_image_bytes(data: bytes, name: str = "upload") -> np.ndarray:
    """:func:`read_image` for an image already in memory (an upload): the same decoding, checks
    and errors, with ``name`` standing for the file in messages (and its suffix, as a file's,
    marking DICOM written without preamble)."""
    path = Path(name)
    try:
        return _decode_data(path, bytes(data))
    except CxrzooError:
        raise
    except Exception as exc:
        raise ImageReadError(path, f"undecodable ({type(exc).__name__}: {one_line(exc, 300)})") from None


def _decode(path: Path) -> np.ndarray:
    return _decode_data(path, _read_regular_file(path))


def _decode_data(path: Path, data: bytes) -> np.ndarray:
    if not data:
        raise ImageReadError(path, "empty file")
    kind = _sniff(data, path)
    if kind == "dicom":
        return _read_dicom(path, data)
    if kind is None:
        raise ImageReadError(path, "undecodable (not a PNG, JPEG, TIFF or DICOM file)")
    size = _header_size(kind, data)
    if size is None:
        raise ImageReadError(path, _why_undecodable(np.frombuffer(data, np.uint8)))
    _check_pixels(path, *size)
    buf = np.frombuffer(data, np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageReadError(path, _why_undecodable(buf))
    return to_grey_uint8(img, source=str(path))


def _read_regular_file(path: Path) -> bytes:
    """The bytes of ``path``, refusing at once what is not a regular file (no blocking open)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ImageReadError(path, "missing") from None
    except IsADirectoryError:
        raise ImageReadError(path, "is a directory") from None
    except OSError as exc:
        if path.is_dir():  # Windows refuses to open folders with a permission error
            raise ImageReadError(path, "is a directory") from None
        raise ImageReadError(path, f"unreadable ({exc.strerror or exc})") from None
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        os.close(fd)
        raise
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise ImageReadError(path, "is a directory")
        raise ImageReadError(path, "not a regular file (a FIFO, socket or device)")
    with os.fdopen(fd, "rb") as fh:
        try:
            return fh.read()
        except OSError as exc:
            raise ImageReadError(path, f"unreadable ({exc.strerror or exc})") from None


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"IEND\xaeB`\x82"
# Bit depths PNG allows per colour type (0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA).
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
_TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF
# Start-of-frame markers, which carry the frame size: every SOFn but DHT (C4), JPG (C8), DAC (CC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field: TEM, RST0-7, SOI, EOI.
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xDA)})


def _sniff(data: bytes, path: Path) -> str | None:
    """``"png"``, ``"jpeg"``, ``"tiff"``, ``"dicom"`` or ``None``, from the content first."""
    if data[128:132] == b"DICM":
        return "dicom"
    if data.startswith(_PNG_SIGNATURE):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(_TIFF_SIGNATURES):
        return "tiff"
    if path.suffix.lower() in DICOM_SUFFIXES or _looks_like_bare_dicom(data):
        return "dicom"
    return None


def _looks_like_bare_dicom(data: bytes) -> bool:
    """A DICOM data set written without preamble starts with a little-endian tag of the file
    meta group (0002) or, with no meta at all, usually of the identifying group (0008)."""
    if len(data) < 8:
        return False
    group = int.from_bytes(data[0:2], "little")
    return group in (0x0002, 0x0008) and int.from_bytes(data[2:4], "little") < 0x0100


def _header_size(kind: str, data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from the header of a PNG, JPEG or TIFF, ``None`` if unreadable."""
    if kind == "png":
        if len(data) < 24 or data[12:16] != b"IHDR":
            return None
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if kind == "jpeg":
        return _jpeg_size(data)
    return _tiff_size(data)


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Walk the marker segments to the first start-of-frame."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        if marker in _JPEG_SOF:
            if pos + 9 > len(data):
                return None
            height = int.from_bytes(data[pos + 5 : pos + 7], "big")
            width = int.from_bytes(data[pos + 7 : pos + 9], "big")
            return width, height
        if marker == 0xDA:  # start of scan with no frame header before it
            return None
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return None


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` of the first directory, read by Pillow without decoding pixels."""
    from PIL import TiffImagePlugin

    # The plugin's class reads the header only; Image.open would also apply Pillow's own
    # decompression-bomb limit, which is not ours.
    try:
        return TiffImagePlugin.TiffImageFile(io.BytesIO(data)).size
    except Exception:  # any parse failure means the header cannot be trusted
        return None


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


# --- DICOM -------------------------------------------------------------------------------


def _read_dicom(path: Path, data: bytes) -> np.ndarray:
    """A single-frame DICOM image as display-ready grey ``uint8``."""
    try:
        return _read_dicom_unchecked(path, data)
    except ImageReadError:
        raise
    except Exception as exc:  # any other failure of pydicom or a decoder on a damaged file
        raise ImageReadError(path, f"unreadable DICOM ({type(exc).__name__}: {one_line(exc, 300)})") from None


def _read_dicom_unchecked(path: Path, data: bytes) -> np.ndarray:
    import pydicom

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception as exc:  # arbitrary bytes read with force fail in many ways
        raise ImageReadError(path, f"unreadable DICOM ({one_line(exc, 200)})") from None
    if "PixelData" not in ds:
        if path.suffix.lower() in DICOM_SUFFIXES or data[128:132] == b"DICM":
            raise ImageReadError(path, "DICOM file without pixel data (not an image)")
        raise ImageReadError(path, "undecodable (not a PNG, JPEG, TIFF or DICOM file)")
    rows, cols = ds.get("Rows"), ds.get("Columns")
    if not rows or not cols:
        raise ImageReadError(path, "DICOM image without Rows and Columns")
    _check_pixels(path, int(cols), int(rows))
    frames = _number_of_frames(path, ds)
    if frames != 1:
        raise ImageReadError(
            path,
            f"multi-frame DICOM ({frames} frames): not one radiograph; save the frame to predict "
            f"as its own file",
        )
    _check_rescale(path, ds)
    syntax = _transfer_syntax(path, ds)
    arr = _decode_dicom_pixels(path, ds, syntax)
    try:
        return _dicom_to_grey(path, arr, ds)
    except ImageReadError:
        raise
    except Exception as exc:
        # A malformed Modality LUT, palette or attribute that pydicom cannot apply.
        raise ImageReadError(path, f"DICOM pixel values cannot be shown ({one_line(exc, 300)})") from None


def _number_of_frames(path: Path, ds: Dataset) -> int:
    value = ds.get("NumberOfFrames", 1)
    try:
        frames = int(value) if value not in (None, "") else 1
    except (TypeError, ValueError):
        raise ImageReadError(path, f"DICOM Number of Frames {str(value)!r} is not a whole number") from None
    if frames < 1:
        raise ImageReadError(path, f"DICOM Number of Frames is {frames}: no image")
    return frames


def _check_rescale(path: Path, ds: Dataset) -> None:
    """A Rescale Slope of 0 maps every pixel to the intercept; NaN or infinity to nothing."""
    if "ModalityLUTSequence" in ds:
        return  # the LUT, not the slope, is applied
    for keyword in ("RescaleSlope", "RescaleIntercept"):
        value = ds.get(keyword)
        if value is None or value == "":
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ImageReadError(path, f"DICOM {keyword} {str(value)!r} is not a number") from None
        if not np.isfinite(number):
            raise ImageReadError(path, f"DICOM {keyword} is {number}: every pixel value would be lost")
        if keyword == "RescaleSlope" and number == 0:
            raise ImageReadError(path, "DICOM RescaleSlope is 0: every pixel would become the intercept")


def _check_shown(path: Path, values: np.ndarray, step: str) -> None:
    """Refuse pixel values that show nothing: not finite, or one value everywhere."""
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise ImageReadError(path, f"DICOM pixel values are not finite after {step}")
    if values.size and values.min() == values.max():
        raise ImageReadError(
            path, f"DICOM pixel values are constant ({values.flat[0]:g}) after {step}: nothing to show"
        )


def _transfer_syntax(path: Path, ds: Dataset) -> str:
    """The data set's transfer syntax; for a file without meta header, the encoding it was read
    with (which pydicom needs set to decode native pixel data)."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    syntax = meta.get("TransferSyntaxUID")
    if syntax:
        return syntax
    implicit, little = ds.original_encoding
    if implicit is None or ds["PixelData"].is_undefined_length:
        raise ImageReadError(path, "DICOM file without a Transfer Syntax UID in its meta header")
    syntax = (
        ImplicitVRLittleEndian if implicit else (ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    )
    meta.TransferSyntaxUID = syntax
    return syntax


def _syntax_label(syntax: str) -> str:
    from pydicom.uid import UID

    uid = UID(syntax)
    name = uid.name if uid.is_valid and uid.name != str(uid) else "unknown"
    return f"'{name}' ({uid})"


def _decode_dicom_pixels(path: Path, ds: Dataset, syntax: str) -> np.ndarray:
    from pydicom.pixels import get_decoder, pixel_array

    label = _syntax_label(syntax)
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise ImageReadError(
            path, f"DICOM transfer syntax {label} has no pixel data decoder in pydicom"
        ) from None
    if not decoder.is_available:
        raise ImageReadError(
            path, f"DICOM transfer syntax {label} needs a decoder that is not installed: {DICOM_CODECS_HINT}"
        )
    try:
        # Only the first frame is decoded: a multi-frame file shows one projection per frame.
        return pixel_array(ds, index=0)
    except Exception as exc:  # pydicom and its plugins raise many types for bad pixel data
        hint = f"; other decoders: {DICOM_CODECS_HINT}" if decoder.is_encapsulated else ""
        raise ImageReadError(
            path, f"undecodable DICOM pixel data in {label} ({one_line(exc, 300)}){hint}"
        ) from None


def _dicom_to_grey(path: Path, arr: np.ndarray, ds: Dataset) -> np.ndarray:
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if photometric == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
    if arr.ndim == 3:
        # Colour (pydicom gives RGB, YBR already converted): luminance; no LUTs apply.
        if arr.shape[2] not in (3, 4):
            raise ImageReadError(path, f"DICOM image with {arr.shape[2]} samples per pixel")
        rgb = arr[:, :, :3]
        if rgb.dtype not in (np.uint8, np.uint16):
            rgb = rgb.astype(np.float32)
        grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
        return grey if grey.dtype == np.uint8 else _stretch_range(grey)
    if arr.ndim != 2:
        raise ImageReadError(path, f"unsupported DICOM pixel array shape {arr.shape}")
    # PS3.3 C.11: stored values -> modality values (e.g. Rescale Slope/Intercept) -> VOI.
    values = apply_modality_lut(arr, ds)
    _check_shown(path, values, "the Modality LUT" if "ModalityLUTSequence" in ds else "the rescale")
    lo = hi = None
    has_table = bool(ds.get("VOILUTSequence"))  # an empty sequence is no table
    if has_table or ("WindowCenter" in ds and "WindowWidth" in ds):
        try:
            with np.errstate(invalid="ignore", over="ignore"):
                shown = apply_voi_lut(values, ds, index=0)
                lo, hi = _voi_output_range(ds, values.dtype)
            if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
                raise ValueError("the VOI output range is empty or not finite")
            _check_shown(path, np.asarray(shown), "the VOI LUT or window")
            values = shown
        except ImageReadError:
            raise
        except Exception as exc:
            if has_table:
                # A table that does not parse: which grey levels were meant cannot be known.
                raise ImageReadError(
                    path, f"malformed DICOM VOI LUT ({type(exc).__name__}: {one_line(exc, 200)})"
                ) from None
            # A window of width 0 or NaN: viewers fall back to the full range of the data,
            # and so do we rather than refuse the radiograph.
            lo = hi = None
    if lo is None or hi is None:
        lo, hi = float(values.min()), float(values.max())
    # MONOCHROME1 shows its minimum as white; invert so bone is bright as in MONOCHROME2.
    return _stretch(values, lo, hi, invert=photometric == "MONOCHROME1")


def _voi_output_range(ds: Dataset, dtype: np.dtype) -> tuple[float, float]:
    """The range the VOI transformation outputs, to map onto 0..255.

    pydicom's windowing outputs values from y_min to y_max of PS3.3 C.11.2.1.2 (which depend
    on Bits Stored, Pixel Representation and the rescale); a VOI LUT outputs its table's
    entries. Passing probes through the same function gives exactly that range: for a window,
    two values far outside it, whatever the VOI LUT Function (LINEAR, LINEAR_EXACT, SIGMOID);
    for a table, every input it maps.
    """
    from pydicom.pixels import apply_voi_lut

    if "VOILUTSequence" in ds:
        entries, first = ds.VOILUTSequence[0].LUTDescriptor[:2]
        probe = np.arange(first, first + (entries or 65536)).astype(dtype)
    else:
        probe = np.array([-1e300, 1e300], np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.asarray(apply_voi_lut(probe, ds, index=0), np.float64)
    return float(out.min()), float(out.max())


__all__ = [
    "DEFAULT_MAX_IMAGE_PIXELS",
    "MAX_PIXELS_ENV",
    "ImageReadError",
    "max_image_pixels",
    "read_image",
    "read_image_bytes",
    "set_max_image_pixels",
    "to_grey_uint8",
]
