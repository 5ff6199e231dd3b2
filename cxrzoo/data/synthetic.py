"""Procedural chest-radiograph phantoms with the 14 NIH findings drawn on purpose.

Every finding has its own visual signature, drawn at sizes that survive 64 px, so a model trained
on these images has to learn the findings: a broken pipeline shows up as a failing test instead of
an AUROC that quietly sits near 0.5. The phantoms are the embedded default data of the demo and
the test suite; :func:`write_kaggle_layout` writes them in the NIH Kaggle layout so that every
reader of NIH reads them too.

Coordinates inside the drawing code are fractions of the image side (``u`` rightwards, ``v``
downwards) so that the same phantom can be drawn at any size. Image-left is the patient's right,
as on a radiograph viewed in the usual way. Intensities are in ``[0, 1]``, bright meaning dense.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np

from cxrzoo.labels import CHEXPERT_LABELS, LABELS, NIH_PREVALENCE, NO_FINDING, NUM_LABELS, label_index

#: NIH's ranking of the findings, compressed so that every finding shows up in a few hundred images.
DEFAULT_PREVALENCE: dict[str, float] = {
    "Atelectasis": 0.13,
    "Cardiomegaly": 0.07,
    "Effusion": 0.15,
    "Infiltration": 0.20,
    "Mass": 0.09,
    "Nodule": 0.10,
    "Pneumonia": 0.05,
    "Pneumothorax": 0.09,
    "Consolidation": 0.08,
    "Edema": 0.06,
    "Emphysema": 0.06,
    "Fibrosis": 0.05,
    "Pleural_Thickening": 0.07,
    "Hernia": 0.03,
}

#: Smallest image side the drawing is designed for; below it the small findings vanish.
MIN_SIZE = 32

#: Column header of NIH's Data_Entry_2017.csv, bracketed commas included (they split the columns).
_NIH_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
)
#: Field of view of an adult PA chest film in mm, for a plausible pixel spacing.
_FIELD_OF_VIEW_MM = 350.0
#: Spawn keys that keep the per-patient random streams apart from the per-image ones.
_DEMOGRAPHICS_KEY = 1
_SPLIT_KEY = 2
_VIEW_KEY = 3
_CHEXPERT_KEY = 4

#: Folder name CheXpert's ``Path`` column starts with (the downsampled release's).
CHEXPERT_FOLDER = "CheXpert-v1.0-small"
#: How a drawn finding is written in the CheXpert layout's train.csv: the share of positives
#: written uncertain (-1) and of negatives written 0 (explicitly negative) or -1; the other
#: negatives are blank (not mentioned), as CheXpert's labeler leaves most findings.
CHEXPERT_UNCERTAIN_POSITIVE = 0.15
CHEXPERT_NEGATIVE_ZERO = 0.4
CHEXPERT_UNCERTAIN_NEGATIVE = 0.1
LAYOUTS: tuple[str, ...] = ("nih14", "chexpert")

_IDX = {name: i for i, name in enumerate(LABELS)}


# ----------------------------------------------------------------------------------------------
# Labels
# ----------------------------------------------------------------------------------------------


def resolve_prevalence(prevalence: str | Mapping[str, float] | None) -> dict[str, float]:
    """Per-finding prevalence from a name, a partial mapping or ``None``.

    ``None`` or ``"default"`` gives :data:`DEFAULT_PREVALENCE`; ``"nih"`` the shares of the full NIH
    release; ``"uniform:P"`` the same ``P`` for every finding; a mapping overrides some findings of
    the default. Unknown findings and values outside ``[0, 1]`` raise :class:`ValueError`.
    """
    if prevalence is None:
        return dict(DEFAULT_PREVALENCE)
    if isinstance(prevalence, str):
        key = prevalence.strip().lower()
        if key == "default":
            return dict(DEFAULT_PREVALENCE)
        if key == "nih":
            return {name: float(NIH_PREVALENCE[name]) for name in LABELS}
        if key.startswith("uniform:"):
            text = key.split(":", 1)[1]
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f"uniform prevalence must be a number in [0, 1], got {text!r}") from None
            _check_probability("every finding (uniform)", value)
            return dict.fromkeys(LABELS, value)
        raise ValueError(
            f"Unknown prevalence {prevalence!r}; use 'default', 'nih', 'uniform:P' or a mapping of "
            "finding to probability"
        )
    resolved = dict(DEFAULT_PREVALENCE)
    for name, raw in prevalence.items():
        try:
            label_index(name)
        except ValueError as exc:
            raise ValueError(f"prevalence given for {name!r} = {raw!r}: {exc}") from None
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise ValueError(f"prevalence of {name!r} must be a number in [0, 1], got {raw!r}") from None
        _check_probability(repr(name), value)
        resolved[name] = value
    return resolved


def _check_probability(what: str, value: float) -> None:
    if not (0.0 <= value <= 1.0):  # also rejects NaN
        raise ValueError(f"prevalence of {what} must be in [0, 1], got {value!r}")


def sample_labels(n: int, rng: np.random.Generator, prevalence: Mapping[str, float]) -> np.ndarray:
    """``uint8 [n, 14]`` label vectors in :data:`LABELS` order, each finding drawn independently.

    One uniform number per finding and image is drawn whatever the prevalence, so the random stream
    after this call does not depend on the prevalence.
    """
    p = np.array([float(prevalence[name]) for name in LABELS], dtype=np.float64)
    return (rng.random((n, NUM_LABELS)) < p).astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# Drawing helpers
# ----------------------------------------------------------------------------------------------

_WALL_POINTS = 16  # a lung outline starts with this many points from the apex down the lateral wall
_SHIFT = 4  # fractional bits of cv2 drawing coordinates: sub-pixel placement at any size
_ONE = 1 << _SHIFT


@functools.lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates as fractions: ``u`` of shape ``[1, size]``, ``v`` of ``[size, 1]``."""
    c = (np.arange(size, dtype=np.float32) + 0.5) / size
    c.flags.writeable = False
    return c[None, :], c[:, None]


def _pts(points: np.ndarray, size: int) -> np.ndarray:
    """Fractional ``(u, v)`` points to cv2's fixed-point pixel coordinates."""
    return np.round((np.asarray(points, np.float64) * size - 0.5) * _ONE).astype(np.int32)


def _fill_poly(size: int, points: np.ndarray) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [_pts(points, size)], 255, cv2.LINE_AA, _SHIFT)
    return mask


def _to_float(mask: np.ndarray) -> np.ndarray:
    return mask.astype(np.float32) * np.float32(1.0 / 255.0)


def _blur(img: np.ndarray, sigma_px: float) -> np.ndarray:
    if sigma_px < 0.3:
        return img
    return cv2.GaussianBlur(img, (0, 0), sigma_px, borderType=cv2.BORDER_REFLECT)


def _add_disc(layer: np.ndarray, cu: float, cv: float, r: float, value: float, edge_px: float = 0.7) -> None:
    """Add an anti-aliased disc of radius ``r`` (fraction) to ``layer`` in place, in its bounding box."""
    size = layer.shape[0]
    x0, x1 = max(0, int((cu - r) * size) - 2), min(size, int((cu + r) * size) + 3)
    y0, y1 = max(0, int((cv - r) * size) - 2), min(size, int((cv + r) * size) + 3)
    if x0 >= x1 or y0 >= y1:
        return
    u, v = _grid(size)
    d = np.sqrt((u[:, x0:x1] - cu) ** 2 + (v[y0:y1] - cv) ** 2) * size
    layer[y0:y1, x0:x1] += value * np.clip((r * size - d) / edge_px + 0.5, 0.0, 1.0)


def _composite(img: np.ndarray, mask: np.ndarray, value: float | np.ndarray) -> None:
    """Paint ``value`` over ``img`` where ``mask`` (0..1) says, in place."""
    img += mask * (value - img)


@dataclass
class _Lung:
    """One lung field: its outline, soft mask and the numbers the findings are placed by."""

    side: int  # -1 image-left (patient right), +1 image-right (patient left)
    outline: np.ndarray  # [k, 2] fractional (u, v) polygon
    mask: np.ndarray  # float [S, S] 0..1
    dist: np.ndarray  # distance to the lung edge in pixels, 0 outside
    lateral_u: float  # u of the lateral chest wall
    medial_u: float
    apex_v: float
    base_v: float  # v of the costophrenic angle
    hilum: tuple[float, float]


@dataclass
class _Choices:
    """Choices made while drawing the anatomy that the finding drawn later must agree with."""

    atelectasis_side: int = 0  # the side whose hemidiaphragm was raised
    collapsed_lung: int = -1  # index into _Chest.lungs of the lung collapsed by a pneumothorax
    collapsed_outline: np.ndarray | None = None


@dataclass
class _Chest:
    size: int
    cx: float
    half_width: float  # thorax half width: lateral lung edges at cx -/+ half_width
    lungs: tuple[_Lung, _Lung]
    heart_u: float
    heart_v: float
    heart_a: float  # horizontal semi-axis; cardiothoracic ratio = heart_a / half_width
    heart_b: float
    heart_mask: np.ndarray  # float [S, S] 0..1
    lung_value: float
    body_value: float


def _lung_outline(
    cx: float,
    side: int,
    medial: float,
    lateral: float,
    apex: float,
    base: float,
    medial_base: float,
    dome: float,
) -> np.ndarray:
    """Polygon of one lung: rounded apex, convex lateral wall, domed diaphragm, straight mediastinal side."""
    half = (lateral - medial) / 2
    centre = cx + side * (medial + lateral) / 2
    t = np.linspace(0.0, 1.0, _WALL_POINTS)
    lat_u = centre + side * half * np.sqrt(1 - (1 - t) ** 2)
    lat_v = apex + (base - apex) * t
    f = np.linspace(0.0, 1.0, 14)[1:-1]
    dome_u = (cx + side * lateral) + (side * (medial - lateral)) * f
    # Dome highest a little medial of the middle of the hemithorax, as on a radiograph.
    dome_v = base + (medial_base - base) * f - dome * np.sin(np.pi * f**0.8)
    med_u = centre - side * half * np.sqrt(1 - (1 - t) ** 4)
    med_v = apex + (medial_base - apex) * t
    u = np.concatenate([lat_u, dome_u, med_u[::-1]])
    v = np.concatenate([lat_v, dome_v, med_v[::-1]])
    return np.stack([u, v], axis=1)


def _make_lung(size: int, side: int, outline: np.ndarray, **geometry: Any) -> _Lung:
    hard = _fill_poly(size, outline)
    dist = cv2.distanceTransform((hard > 127).astype(np.uint8), cv2.DIST_L2, 3)
    return _Lung(side=side, outline=outline, mask=_to_float(hard), dist=dist, **geometry)


def _pick_point(
    lung: _Lung, rng: np.random.Generator, margin: float, zone: tuple[float, float] = (0.0, 1.0)
) -> tuple[float, float]:
    """A random point inside ``lung`` at least ``margin`` (fraction) from its edge.

    ``zone`` limits the height, as fractions of the way from the apex to the costophrenic angle.
    Falls back to the deepest point of the zone when nothing is that far from the edge.
    """
    size = lung.dist.shape[0]
    r0 = int((lung.apex_v + zone[0] * (lung.base_v - lung.apex_v)) * size)
    r1 = math.ceil((lung.apex_v + zone[1] * (lung.base_v - lung.apex_v)) * size)
    r0, r1 = max(0, r0), min(size, max(r1, r0 + 1))
    band = lung.dist[r0:r1]
    candidates = np.flatnonzero(band >= max(1.0, margin * size))
    flat = int(candidates[rng.integers(candidates.size)]) if candidates.size else int(np.argmax(band))
    row, col = divmod(flat, size)
    jitter = rng.random(2)
    return (col + jitter[0]) / size, (row + r0 + jitter[1]) / size


# ----------------------------------------------------------------------------------------------
# Anatomy
# ----------------------------------------------------------------------------------------------


def _draw_anatomy(
    labels: np.ndarray, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, _Chest, _Choices]:
    """Normal anatomy, with the geometric findings (sizes, diaphragm, collapse) already applied.

    Returns the image, the layer of lung markings (ribs and vessels, added by the caller), the chest
    geometry and the choices the findings drawn later must agree with.
    """
    S = size
    u, v = _grid(S)
    has = {name: bool(labels[i]) for name, i in _IDX.items()}
    choices = _Choices()

    cx = 0.5 + rng.normal(0.0, 0.012)
    half_width = rng.uniform(0.35, 0.40)
    medial = rng.uniform(0.04, 0.06)
    apex = rng.uniform(0.09, 0.14)
    base = rng.uniform(0.70, 0.77)
    dome = rng.uniform(0.06, 0.09)
    lung_value = rng.uniform(0.16, 0.26)
    body_value = rng.uniform(0.45, 0.55)
    if has["Emphysema"]:
        # Hyperinflation: big, hyperlucent lungs over a low, flat diaphragm.
        half_width = min(0.44, half_width * 1.07)
        apex -= 0.03
        base = rng.uniform(0.81, 0.85)
        dome = rng.uniform(0.012, 0.025)
        lung_value -= 0.08
    # The patient's right hemidiaphragm (image-left) sits a little higher, over the liver.
    bases = {-1: base - rng.uniform(0.0, 0.025), +1: base}
    domes = {-1: dome, +1: dome * rng.uniform(0.85, 1.0)}
    if has["Atelectasis"]:
        side = int(rng.choice((-1, 1)))
        choices.atelectasis_side = side
        bases[side] -= rng.uniform(0.07, 0.10)  # volume loss pulls the hemidiaphragm up

    # Body: a boxy superellipse so the shoulders fill the top corners.
    body_half = half_width + rng.uniform(0.06, 0.10)
    body = (np.abs((u - cx) / body_half) ** 3.5 + np.abs((v - 0.56) / 0.64) ** 3.5 <= 1.0).astype(np.float32)
    body = _blur(body, 0.6 * S / 128 + 0.3)
    img = np.full((S, S), rng.uniform(0.04, 0.12), np.float32)
    _composite(img, body, body_value + 0.06 * (v - 0.5))

    lungs = []
    for side in (-1, 1):
        medial_base = bases[side] - rng.uniform(0.0, 0.03)
        outline = _lung_outline(cx, side, medial, half_width, apex, bases[side], medial_base, domes[side])
        lungs.append(
            _make_lung(
                S,
                side,
                outline,
                lateral_u=cx + side * half_width,
                medial_u=cx + side * medial,
                apex_v=apex,
                base_v=bases[side],
                hilum=(cx + side * (medial + 0.05), 0.40 + 0.05 * (bases[side] - 0.7)),
            )
        )

    # Pneumothorax: the lung collapses towards the hilum, leaving a dark rim without markings.
    markings_mask = [lung.mask for lung in lungs]
    pleural_space = None
    if has["Pneumothorax"]:
        k = 0 if rng.random() < 0.5 else 1
        lung = lungs[k]
        pivot = np.array([lung.medial_u, lung.base_v - 0.05])
        scale = np.array([rng.uniform(0.6, 0.78), rng.uniform(0.8, 0.9)])
        collapsed = (lung.outline - pivot) * scale + pivot
        inner = _to_float(_fill_poly(S, collapsed))
        pleural_space = lung.mask * (1.0 - inner)
        choices.collapsed_lung, choices.collapsed_outline = k, collapsed
        markings_mask[k] = lung.mask * inner

    lung_mask = lungs[0].mask + lungs[1].mask
    shade = lung_value + 0.05 * (v - 0.45) + 0.03 * np.abs(u - cx)  # denser towards the bases
    _composite(img, _blur(lung_mask, 0.5 * S / 128 + 0.3), shade)
    if pleural_space is not None:
        img -= np.float32(rng.uniform(0.07, 0.10)) * pleural_space

    # Markings: posterior ribs as arcs falling away from the spine, vessels fanning from the hila.
    marks = np.zeros((S, S), np.uint8)
    rib_px = max(1, round(0.016 * S))
    n_ribs = int(rng.integers(8, 11))
    for j in range(n_ribs):
        top = apex - 0.02 + j * (base - apex) / n_ribs + rng.normal(0.0, 0.006)
        height = rng.uniform(0.17, 0.25)
        centre = _pts(np.array([[cx, top + height]]), S)[0]
        axes = (round(half_width * 1.08 * S * _ONE), round(height * S * _ONE))
        cv2.ellipse(marks, tuple(centre), axes, 0, 180, 360, 255, rib_px, cv2.LINE_AA, _SHIFT)
    rib_layer = _to_float(marks) * np.float32(rng.uniform(0.06, 0.09))
    marks[:] = 0
    n_vessels = 4 if has["Emphysema"] else 7
    for lung in lungs:
        hu, hv = lung.hilum
        for _ in range(n_vessels):
            angle = rng.uniform(-0.55 * np.pi, 0.55 * np.pi)  # fanning up, out and down
            length = rng.uniform(0.12, 0.24)
            end = (hu + lung.side * length * math.cos(angle), hv + length * math.sin(angle))
            a, b = _pts(np.array([[hu, hv], end]), S)
            cv2.line(marks, tuple(a), tuple(b), 255, 1, cv2.LINE_AA, _SHIFT)
    vessel_layer = _to_float(marks) * np.float32(0.05 if has["Emphysema"] else 0.07)
    markings = (rib_layer + vessel_layer) * (markings_mask[0] + markings_mask[1])
    markings += rib_layer * 0.25 * body * (1.0 - lung_mask)  # ribs fade over soft tissue

    # Mediastinum with trachea, aortic knob and heart; the spine shows faintly through.
    med_half = rng.uniform(0.055, 0.075)
    ctr = rng.uniform(0.57, 0.66) if has["Cardiomegaly"] else rng.uniform(0.36, 0.45)
    heart_a = ctr * half_width
    heart_b = heart_a * rng.uniform(0.85, 1.0)
    heart_u = cx + heart_a * rng.uniform(0.12, 0.28)  # the heart lies mostly to the patient's left
    floor = (bases[-1] + bases[1]) / 2
    heart_v = floor - heart_b * 0.6
    heart_value = body_value + rng.uniform(0.10, 0.16)
    upper = ((np.abs(u - cx) <= med_half) & (v <= heart_v)).astype(np.float32)
    _composite(img, _blur(upper, 0.8 * S / 128 + 0.3), heart_value - 0.03)
    knob = np.zeros((S, S), np.float32)
    _add_disc(knob, cx + med_half * 0.9, rng.uniform(0.27, 0.32), rng.uniform(0.03, 0.04), 1.0, 1.5)
    _composite(img, knob, heart_value)
    heart = ((u - heart_u) / heart_a) ** 2 + ((v - heart_v) / heart_b) ** 2
    heart_mask = np.clip((1.0 - heart) * (heart_a * S) / 2.0, 0.0, 1.0)
    heart_mask *= np.clip((floor + 0.02 - v) * S / 2.0, 0.0, 1.0)
    _composite(img, heart_mask, heart_value)
    # The heart and mediastinum hide the ribs and vessels behind them.
    markings *= 1.0 - np.maximum(heart_mask, upper) * 0.85
    trachea = ((np.abs(u - cx) <= 0.016) & (v <= 0.30)).astype(np.float32)
    img -= _blur(trachea, 0.7 * S / 128 + 0.3) * np.float32(0.12)
    img += (np.abs(u - cx) <= 0.035).astype(np.float32) * np.float32(0.04) * body

    # Clavicles.
    marks[:] = 0
    for side in (-1, 1):
        ends = np.array(
            [[cx + side * 0.05, 0.14], [cx + side * (half_width + 0.04), 0.07 + rng.normal(0, 0.01)]]
        )
        a, b = _pts(ends, S)
        cv2.line(marks, tuple(a), tuple(b), 255, max(1, round(0.022 * S)), cv2.LINE_AA, _SHIFT)
    img += _to_float(marks) * np.float32(0.10) * body

    chest = _Chest(
        size=S,
        cx=cx,
        half_width=half_width,
        lungs=(lungs[0], lungs[1]),
        heart_u=heart_u,
        heart_v=heart_v,
        heart_a=heart_a,
        heart_b=heart_b,
        heart_mask=heart_mask,
        lung_value=lung_value,
        body_value=body_value,
    )
    return img, markings, chest, choices


# ----------------------------------------------------------------------------------------------
# Findings
# ----------------------------------------------------------------------------------------------


def _lung_by_side(chest: _Chest, side: int) -> _Lung:
    return chest.lungs[0] if side < 0 else chest.lungs[1]


def _random_lung(chest: _Chest, rng: np.random.Generator) -> _Lung:
    return chest.lungs[int(rng.integers(2))]


def _filled(lung: _Lung) -> np.ndarray:
    """The lung mask a little widened, so that filling it leaves no dark seam of its soft edge."""
    return np.minimum(_blur(lung.mask, 1.0) * 1.5, 1.0)


def _sides(chest: _Chest, rng: np.random.Generator, both_p: float) -> tuple[_Lung, ...]:
    """One lung, or both with probability ``both_p``."""
    if rng.random() < both_p:
        return chest.lungs
    return (_random_lung(chest, rng),)


def _effusion(img: np.ndarray, chest: _Chest, rng: np.random.Generator) -> None:
    """Fluid fills the base of a hemithorax under a meniscus that climbs the lateral wall."""
    u, v = _grid(chest.size)
    for lung in _sides(chest, rng, both_p=0.25):
        level = lung.base_v - rng.uniform(0.13, 0.22)
        across = np.clip((u - lung.medial_u) / (lung.lateral_u - lung.medial_u), 0.0, 1.0)
        meniscus = level - rng.uniform(0.04, 0.07) * across**2
        below = np.clip((v - meniscus) * chest.size / 1.5, 0.0, 1.0)
        _composite(img, _filled(lung) * below * np.float32(0.95), chest.body_value + 0.04)


def _consolidation(img: np.ndarray, chest: _Chest, rng: np.random.Generator) -> None:
    """An upper lobe filled with homogeneous density down to a straight fissure."""
    u, v = _grid(chest.size)
    lung = _random_lung(chest, rng)
    level = lung.apex_v + rng.uniform(0.36, 0.48) * (lung.base_v - lung.apex_v)
    slope = rng.uniform(-0.15, 0.25) * lung.side  # fissure drops towards the lateral wall
    fissure = level + slope * (u - lung.medial_u)
    above = np.clip((fissure - v) * chest.size / 0.8, 0.0, 1.0)
    _composite(img, above * _filled(lung), chest.body_value - rng.uniform(0.0, 0.05))


def _pneumothorax(img: np.ndarray, chest: _Chest, choices: _Choices) -> None:
    """The thin bright visceral pleural line at the edge of the collapsed lung."""
    assert choices.collapsed_outline is not None
    lung = chest.lungs[choices.collapsed_lung]
    line = np.zeros_like(img, dtype=np.uint8)
    cv2.polylines(line, [_pts(choices.collapsed_outline, chest.size)], True, 255, 1, cv2.LINE_AA, _SHIFT)
    inside = (lung.dist >= 1.5).astype(np.float32)  # not where it runs along the mediastinum
    img += _to_float(line) * inside * (1.0 - chest.heart_mask) * np.float32(0.22)


def _atelectasis(img: np.ndarray, chest: _Chest, rng: np.random.Generator, side: int) -> None:
    """A plate-like band of collapsed lung in the lower zone (the hemidiaphragm is already raised)."""
    lung = _lung_by_side(chest, side)
    cu, cv = _pick_point(lung, rng, 0.05, zone=(0.62, 0.85))
    length = rng.uniform(0.15, 0.22)
    tilt = rng.uniform(-0.35, 0.2) * lung.side
    dx, dy = 0.5 * length * math.cos(tilt), 0.5 * length * math.sin(tilt)
    band = np.zeros_like(img, dtype=np.uint8)
    ends = _pts(np.array([[cu - dx, cv - dy], [cu + dx, cv + dy]]), chest.size)
    cv2.line(
        band, tuple(ends[0]), tuple(ends[1]), 255, max(2, round(0.032 * chest.size)), cv2.LINE_AA, _SHIFT
    )
    behind_heart = 1.0 - 0.7 * chest.heart_mask
    img += _to_float(band) * lung.mask * behind_heart * np.float32(rng.uniform(0.24, 0.30))


def _infiltration(img: np.ndarray, chest: _Chest, rng: np.random.Generator) -> None:
    """Several faint, patchy, ill-defined opacities scattered through both lungs."""
    layer = np.zeros_like(img)
    for _ in range(int(rng.integers(6, 10))):
        lung = _random_lung(chest, rng)
        cu, cv = _pick_point(lung, rng, 0.04)
        for _ in range(int(rng.integers(2, 5))):
            _add_disc(
                layer, cu + rng.normal(0, 0.025), cv + rng.normal(0, 0.025), rng.uniform(0.025, 0.045), 1.0
            )
    layer = np.minimum(layer, 1.0)
    layer = _blur(layer, 0.018 * chest.size)
    img += layer * (chest.lungs[0].mask + chest.lungs[1].mask) * np.float32(rng.uniform(0.16, 0.20))


def _mass(img: np.ndarray, chest: _Chest, rng: np.random.Generator) -> None:
    """One large, round, sharply outlined dense opacity."""
    lung = _random_lung(chest, rng)
    r = rng.uniform(0.085, 0.12)
    cu, cv = _pick_point(lung, rng, r * 0.8, zone=(0.15, 0.9))
    _add_disc(img, cu, cv, r, rng.uniform(0.34, 0.40), edge_px=0.8)


def _nodule(img: np.ndarray, chest: _Chest, rng: np.random.Generator) -> None:
    """One to three small, round, dense opacities, never under 2 px at 64 px."""
    for _ in range(int(rng.integers(1, 4))):
        lung = _random_lung(chest, rng)
        r = max(rng.uniform(0.024, 0.035), 2.0 / 64)
        cu, cv = _pick_point(lung, rng, r * 1.5, zone=(0.1, 0.9))
        _add_disc(img, cu, cv, r, rng.uniform(0.30, 0.38), edge_px=0.6)


def _pneumonia(img: np.ndarray, chest: _Chest, rng: np.random.Generator) -> None:
    """A fluffy, irregular, lobar opacity in the middle zone of one lung."""
    lung = _random_lung(chest, rng)
    cu, cv = _pick_point(lung, rng, 0.09, zone=(0.4, 0.6))
    layer = np.zeros_like(img)
    for _ in range(int(rng.integers(7, 11))):
        _add_disc(layer, cu + rng.normal(0, 0.05), cv + rng.normal(0, 0.04), rng.uniform(0.04, 0.065), 1.0)
    layer = _blur(np.minimum(layer, 1.0), 0.02 * chest.size)
    img += layer * lung.mask * np.float32(rng.uniform(0.26, 0.30))


def _edema(img: np.ndarray, chest: _Chest, rng: np.random.Generator) -> None:
    """Bat-wing perihilar haze in both lungs and short horizontal septal lines at the bases."""
    u, v = _grid(chest.size)
    haze = np.zeros_like(img)
    for lung in chest.lungs:
        hu, hv = lung.hilum
        du = (u - hu - lung.side * 0.03) / 0.11
        dv = (v - hv - 0.02) / 0.16
        haze += np.exp(-(du**2 + dv**2) * 1.5)
    lung_mask = chest.lungs[0].mask + chest.lungs[1].mask
    img += haze * lung_mask * np.float32(rng.uniform(0.17, 0.21))
    lines = np.zeros_like(img, dtype=np.uint8)
    for lung in chest.lungs:
        for j in range(int(rng.integers(3, 6))):
            lv = lung.base_v - 0.04 - j * rng.uniform(0.028, 0.035)
            outer = lung.lateral_u - lung.side * 0.005
            ends = np.array([[outer, lv], [outer - lung.side * rng.uniform(0.05, 0.07), lv]])
            a, b = _pts(ends, chest.size)
            cv2.line(lines, tuple(a), tuple(b), 255, 1, cv2.LINE_AA, _SHIFT)
    img += _to_float(lines) * lung_mask * np.float32(0.2)


def _fibrosis(img: np.ndarray, chest: _Chest, rng: np.random.Generator) -> None:
    """A reticular net of fine bright lines in the peripheral and lower lungs."""
    S = chest.size
    u, v = _grid(S)
    net = np.zeros_like(img, dtype=np.uint8)
    step = 0.055
    offset = rng.uniform(0, step, 2)
    ticks = np.arange(0.0, 1.0 + step, step)
    for along in ticks + offset[0]:  # wavy near-vertical lines
        pts = np.stack([along + rng.normal(0, 0.012, ticks.size), ticks], axis=1)
        cv2.polylines(net, [_pts(pts, S)], False, 255, 1, cv2.LINE_AA, _SHIFT)
    for along in ticks + offset[1]:  # and wavy near-horizontal ones
        pts = np.stack([ticks, along + rng.normal(0, 0.012, ticks.size)], axis=1)
        cv2.polylines(net, [_pts(pts, S)], False, 255, 1, cv2.LINE_AA, _SHIFT)
    zone = np.zeros_like(img)
    for lung in chest.lungs:
        lower = np.clip((v - (lung.apex_v + 0.35 * (lung.base_v - lung.apex_v))) * 8.0, 0.0, 1.0)
        outer = np.clip(
            lung.side * (u - lung.medial_u) / (lung.lateral_u - lung.medial_u) * 2.0 - 0.3, 0.0, 1.0
        )
        zone += lung.mask * np.maximum(lower, outer) * np.maximum(lower * 0.5, outer)
    zone = np.minimum(zone, 1.0) * (1.0 - chest.heart_mask)
    img += _to_float(net) * zone * np.float32(rng.uniform(0.16, 0.20))


def _pleural_thickening(img: np.ndarray, chest: _Chest, rng: np.random.Generator) -> None:
    """A smooth bright band along the lateral (or apical) chest wall, just inside the lung."""
    lung = _random_lung(chest, rng)
    thick = rng.uniform(0.028, 0.042)
    lateral = lung.outline[:_WALL_POINTS]  # apex to costophrenic angle along the lateral wall
    start = int(rng.integers(0, 6))
    stop = int(rng.integers(start + 7, _WALL_POINTS))
    pts = lateral[start:stop].copy()
    pts[:, 0] -= lung.side * thick * 0.5  # keep the band on the inner side of the wall
    pts[:, 1] += thick * 0.3
    band = np.zeros_like(img, dtype=np.uint8)
    px = max(2, round(thick * chest.size))
    cv2.polylines(band, [_pts(pts, chest.size)], False, 255, px, cv2.LINE_AA, _SHIFT)
    img += _to_float(band) * lung.mask * np.float32(rng.uniform(0.26, 0.32))


def _hernia(img: np.ndarray, chest: _Chest, rng: np.random.Generator) -> None:
    """A retrocardiac gas bubble with an air-fluid level, seen through the heart shadow."""
    S = chest.size
    v = _grid(S)[1]
    r = rng.uniform(0.055, 0.075)
    cu = chest.heart_u - chest.heart_a * rng.uniform(0.0, 0.35)
    cv = chest.heart_v + chest.heart_b * rng.uniform(-0.1, 0.2)
    bubble = np.zeros_like(img)
    _add_disc(bubble, cu, cv, r, 1.0, edge_px=0.8)
    level = cv + r * rng.uniform(0.05, 0.35)
    air = bubble * np.clip((level - v) * S / 0.7, 0.0, 1.0)
    rim = np.zeros_like(img)
    _add_disc(rim, cu, cv, r + 1.2 / S, 1.0, edge_px=0.8)
    img += (rim - bubble) * np.float32(0.10)
    _composite(img, air, chest.lung_value - 0.02)


# ----------------------------------------------------------------------------------------------
# Public drawing API
# ----------------------------------------------------------------------------------------------


def draw_phantom(labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """One ``uint8 [size, size]`` frontal chest phantom showing every finding set in ``labels``.

    ``labels`` is a length-14 0/1 vector in :data:`LABELS` order. Anatomy (lung size and position,
    heart size within normal, exposure, noise) varies with ``rng`` so that only the findings tell
    the labels apart.
    """
    labels = np.asarray(labels).reshape(-1)
    if labels.shape != (NUM_LABELS,):
        raise ValueError(f"labels must have {NUM_LABELS} entries (one per finding), got shape {labels.shape}")
    _check_size(size)
    has = {name: bool(labels[i]) for name, i in _IDX.items()}
    img, markings, chest, choices = _draw_anatomy(labels, size, rng)

    img += markings
    # Fluid and airless lobes are homogeneous: painted over the markings, they hide them.
    if has["Effusion"]:
        _effusion(img, chest, rng)
    if has["Consolidation"]:
        _consolidation(img, chest, rng)
    if has["Pneumothorax"]:
        _pneumothorax(img, chest, choices)
    if has["Atelectasis"]:
        _atelectasis(img, chest, rng, choices.atelectasis_side)
    if has["Infiltration"]:
        _infiltration(img, chest, rng)
    if has["Mass"]:
        _mass(img, chest, rng)
    if has["Nodule"]:
        _nodule(img, chest, rng)
    if has["Pneumonia"]:
        _pneumonia(img, chest, rng)
    if has["Edema"]:
        _edema(img, chest, rng)
    if has["Fibrosis"]:
        _fibrosis(img, chest, rng)
    if has["Pleural_Thickening"]:
        _pleural_thickening(img, chest, rng)
    if has["Hernia"]:
        _hernia(img, chest, rng)

    # Acquisition: exposure and contrast, detector blur, quantum noise.
    np.clip(img, 0.0, 1.0, out=img)
    img = np.power(img, np.float32(rng.uniform(0.8, 1.25)))
    img = img * np.float32(rng.uniform(0.85, 1.10)) + np.float32(rng.uniform(-0.04, 0.06))
    img = _blur(img, rng.uniform(0.3, 0.6) * size / 128 + 0.25)
    img += rng.standard_normal((size, size), dtype=np.float32) * np.float32(rng.uniform(0.008, 0.022))
    return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _check_size(size: int) -> None:
    if size < MIN_SIZE:
        raise ValueError(f"size must be at least {MIN_SIZE} px, got {size}")


def _image_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, index])


def _iter_phantoms(
    n: int, size: int, seed: int, prevalence: dict[str, float]
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for i in range(n):
        rng = _image_rng(seed, i)
        labels = sample_labels(1, rng, prevalence)[0]
        yield draw_phantom(labels, size, rng), labels


def generate(
    n: int, *, size: int = 128, seed: int = 0, prevalence: str | Mapping[str, float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` phantoms: images ``uint8 [n, size, size]`` and labels ``uint8 [n, 14]``.

    Image ``i`` and its labels depend only on ``(seed, i)``, size and prevalence, so the same seed
    gives the same bytes and ``generate(10)`` is the first ten of ``generate(20)``.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    _check_size(size)
    prev = resolve_prevalence(prevalence)
    images = np.empty((n, size, size), np.uint8)
    labels = np.empty((n, NUM_LABELS), np.uint8)
    for i, (image, label) in enumerate(_iter_phantoms(n, size, seed, prev)):
        images[i] = image
        labels[i] = label
    return images, labels


# ----------------------------------------------------------------------------------------------
# NIH Kaggle layout
# ----------------------------------------------------------------------------------------------


def write_kaggle_layout(
    out: str | os.PathLike[str],
    n: int,
    *,
    size: int = 128,
    seed: int = 0,
    prevalence: str | Mapping[str, float] | None = None,
    test_fraction: float = 0.2,
    images_per_patient: int = 2,
    progress: bool = False,
) -> Path:
    """Write ``n`` phantoms as the NIH ChestX-ray14 Kaggle release and return the folder.

    Layout: ``Data_Entry_2017.csv`` with NIH's columns, ``images_001/images/PPPPPPPP_FFF.png``
    (patient id, follow-up number), and ``train_val_list.txt`` / ``test_list.txt`` split by
    patient, about ``test_fraction`` of the patients in test. Consecutive images belong to the same
    patient, ``images_per_patient`` each. The folder is built next to ``out`` and renamed into
    place, so a reader never sees half a dataset; an existing non-empty ``out`` is refused.
    """
    out = Path(out)
    _check_layout_args(out, n, size, images_per_patient, test_fraction)
    prev = resolve_prevalence(prevalence)
    test_patients = _test_patients(n, seed, test_fraction, images_per_patient)

    with _partial_folder(out) as tmp:
        image_dir = tmp / "images_001" / "images"
        image_dir.mkdir(parents=True)
        spacing = f"{_FIELD_OF_VIEW_MM / size:.3f}"
        rows = [_NIH_HEADER]
        train_names: list[str] = []
        test_names: list[str] = []
        for p in _patient_phantoms(n, size, seed, prev, images_per_patient, progress):
            view = _view_position(seed, p.index)
            name = f"{p.patient:08d}_{p.follow_up:03d}.png"
            if not cv2.imwrite(str(image_dir / name), p.image):
                raise OSError(f"could not write {image_dir / name}")
            findings = "|".join(LABELS[k] for k in np.flatnonzero(p.labels)) or NO_FINDING
            rows.append(
                f"{name},{findings},{p.follow_up},{p.patient},{p.age},{p.sex},{view},{size},{size},"
                f"{spacing},{spacing}"
            )
            (test_names if p.patient in test_patients else train_names).append(name)
        (tmp / "Data_Entry_2017.csv").write_text("\n".join(rows) + "\n", newline="\n")
        (tmp / "train_val_list.txt").write_text("".join(f"{x}\n" for x in train_names), newline="\n")
        (tmp / "test_list.txt").write_text("".join(f"{x}\n" for x in test_names), newline="\n")
    return out


class _Phantom(NamedTuple):
    index: int
    image: np.ndarray
    labels: np.ndarray
    patient: int
    follow_up: int
    age: int
    sex: str


def _patient_phantoms(
    n: int, size: int, seed: int, prev: dict[str, float], images_per_patient: int, progress: bool
) -> Iterator[_Phantom]:
    """The phantoms in order, with their patient (``images_per_patient`` consecutive images
    each), follow-up number and the patient's age and sex: the same for every layout."""
    phantoms: Iterable[tuple[np.ndarray, np.ndarray]] = _iter_phantoms(n, size, seed, prev)
    if progress:
        from tqdm import tqdm

        phantoms = tqdm(phantoms, total=n, desc="phantoms", unit="img")
    demographics: tuple[int, str] = (0, "")
    for i, (image, labels) in enumerate(phantoms):
        patient, follow_up = i // images_per_patient + 1, i % images_per_patient
        if follow_up == 0:
            demographics = _patient_demographics(seed, patient)
        yield _Phantom(i, image, labels, patient, follow_up, *demographics)


#: What :mod:`cxrzoo.outputs` records a folder written by these writers as.
LAYOUT_KIND = "synthetic data set"


@contextmanager
def _partial_folder(out: Path) -> Iterator[Path]:
    """A folder built next to ``out`` and swapped into place when complete, so a reader never
    sees half a data set; removed on error. ``out`` must be absent, empty or an earlier
    synthetic data set (checked before), which is replaced whole."""
    from cxrzoo.fsio import atomic_folder
    from cxrzoo.outputs import mark_folder

    with atomic_folder(out) as tmp:
        yield tmp
        mark_folder(tmp, LAYOUT_KIND)


def write_chexpert_layout(
    out: str | os.PathLike[str],
    n: int,
    *,
    size: int = 128,
    seed: int = 0,
    prevalence: str | Mapping[str, float] | None = None,
    test_fraction: float = 0.2,
    images_per_patient: int = 2,
    progress: bool = False,
) -> Path:
    """Write ``n`` phantoms as CheXpert-v1.0-small is published and return the folder.

    The images and their findings are those of :func:`write_kaggle_layout` with the same
    arguments (stored as JPEG, as CheXpert's are). Layout: ``train.csv`` and ``valid.csv`` with
    CheXpert's header (``Path,Sex,Age,Frontal/Lateral,AP/PA`` and its 14 labels) and
    ``train/patientNNNNN/studyK/view1_frontal.jpg`` (``valid/…`` for about ``test_fraction`` of the
    patients, CheXpert's official validation set). A drawn finding fills the CheXpert column the
    vocabulary says is the same finding (Effusion -> "Pleural Effusion" …): in train.csv positives
    are 1.0 or, for some, uncertain -1.0; negatives are 0.0, blank or, for some, -1.0; valid.csv
    holds 0.0 / 1.0 as CheXpert's radiologist-labelled validation set does. CheXpert findings the
    phantoms never draw (Lung Opacity, Fracture …) are blank everywhere; "No Finding" is 1.0 on
    phantoms without any finding (0.0 on the others in valid.csv, blank in train.csv).
    The answers are known: the NIH-layout labels of the same seed.
    """
    from cxrzoo.labels import canonical

    out = Path(out)
    _check_layout_args(out, n, size, images_per_patient, test_fraction)
    prev = resolve_prevalence(prevalence)
    source_of = {
        j: _IDX[canonical(name)] for j, name in enumerate(CHEXPERT_LABELS) if canonical(name) in _IDX
    }
    test_patients = _test_patients(n, seed, test_fraction, images_per_patient)
    header = "Path,Sex,Age,Frontal/Lateral,AP/PA," + ",".join(CHEXPERT_LABELS)
    with _partial_folder(out) as tmp:
        lines = {"train": [header], "valid": [header]}
        for p in _patient_phantoms(n, size, seed, prev, images_per_patient, progress):
            split = "valid" if p.patient in test_patients else "train"
            rel = f"{split}/patient{p.patient:05d}/study{p.follow_up + 1}/view1_frontal.jpg"
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if not cv2.imwrite(str(path), p.image, [cv2.IMWRITE_JPEG_QUALITY, 95]):
                raise OSError(f"could not write {path}")
            codes = _chexpert_codes(p.labels, source_of, seed, p.index, official=split == "valid")
            sex_text = "Male" if p.sex == "M" else "Female"
            lines[split].append(
                f"{CHEXPERT_FOLDER}/{rel},{sex_text},{p.age},Frontal,{_view_position(seed, p.index)},"
                f"{','.join(codes)}"
            )
        (tmp / "train.csv").write_text("\n".join(lines["train"]) + "\n", newline="\n")
        (tmp / "valid.csv").write_text("\n".join(lines["valid"]) + "\n", newline="\n")
    return out


def _chexpert_codes(
    labels: np.ndarray, source_of: dict[int, int], seed: int, index: int, *, official: bool
) -> list[str]:
    """CheXpert's cell texts for one phantom: "1.0", "0.0", "-1.0" or "" (blank)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_CHEXPERT_KEY, index)))
    draws = rng.random(len(CHEXPERT_LABELS))  # one per column whatever the labels: a stable stream
    codes = [""] * len(CHEXPERT_LABELS)
    normal = not labels.any()
    for j, name in enumerate(CHEXPERT_LABELS):
        if name == NO_FINDING:
            codes[j] = "1.0" if normal else ("0.0" if official else "")
        elif j in source_of:
            positive = bool(labels[source_of[j]])
            if official:
                codes[j] = "1.0" if positive else "0.0"
            elif positive:
                codes[j] = "-1.0" if draws[j] < CHEXPERT_UNCERTAIN_POSITIVE else "1.0"
            elif draws[j] < CHEXPERT_UNCERTAIN_NEGATIVE:
                codes[j] = "-1.0"
            elif draws[j] < CHEXPERT_UNCERTAIN_NEGATIVE + CHEXPERT_NEGATIVE_ZERO:
                codes[j] = "0.0"
    return codes


def write_layout(out: str | os.PathLike[str], n: int, *, layout: str = "nih14", **kwargs: Any) -> Path:
    """Write phantoms in ``layout`` (``nih14`` or ``chexpert``); see the two writers."""
    if layout == "nih14":
        return write_kaggle_layout(out, n, **kwargs)
    if layout == "chexpert":
        return write_chexpert_layout(out, n, **kwargs)
    raise ValueError(f"Unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")


def _check_layout_args(out: Path, n: int, size: int, images_per_patient: int, test_fraction: float) -> None:
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    _check_size(size)
    if images_per_patient < 1:
        raise ValueError(f"images_per_patient must be >= 1, got {images_per_patient}")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    check_layout_target(out)


def check_layout_target(out: str | os.PathLike[str]) -> Path:
    """``out`` may receive a synthetic data set: absent, an empty folder, or an earlier synthetic
    data set (replaced whole). Any other folder is refused (exit 3) and never touched: a data
    set's folder is not replaced on a flag, since it may be a real download."""
    from cxrzoo.errors import DataError
    from cxrzoo.outputs import folder_kind

    out = Path(out)
    if out.exists() or out.is_symlink():
        if not out.is_dir() or out.is_symlink():
            raise DataError(f"{out}: exists and is not a folder; refusing to write a data set there")
        if any(out.iterdir()) and folder_kind(out) != LAYOUT_KIND:
            raise DataError(
                f"{out}: a folder with files that 'cxrzoo data synth' did not write; refusing to "
                f"replace it (give an empty or new folder)"
            )
    return out


def _test_patients(n: int, seed: int, test_fraction: float, images_per_patient: int) -> set[int]:
    n_patients = -(-n // images_per_patient)
    n_test = round(test_fraction * n_patients)
    if test_fraction > 0 and n_patients >= 2:
        n_test = min(max(n_test, 1), n_patients - 1)
    split_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_SPLIT_KEY, n_patients)))
    return set((split_rng.permutation(n_patients)[:n_test] + 1).tolist())


def _patient_demographics(seed: int, patient: int) -> tuple[int, str]:
    """Age (20-85) and sex of one patient, the same for all of the patient's images."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_DEMOGRAPHICS_KEY, patient)))
    return int(rng.integers(20, 86)), "M" if rng.random() < 0.55 else "F"


def _view_position(seed: int, index: int) -> str:
    """PA for most images, AP (bedside films) for about a third, independent of the findings."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_VIEW_KEY, index)))
    return "AP" if rng.random() < 0.3 else "PA"
