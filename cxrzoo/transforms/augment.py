"""Batch augmentation on any device: one affine warp plus intensity jitter per image.

Random parameters are drawn on the CPU from the caller's generator, so a seeded run
augments identically on CPU and GPU and a resumed run repeats the same draws.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from cxrzoo.transforms.base import Transform, TransformError


class BatchAugment(Transform):
    """Horizontal flip, rotation, random resized crop, brightness and contrast jitter."""

    stage = "augment"

    def __init__(
        self,
        *,
        image_size: int,
        hflip: float = 0.5,
        rotate: float = 15.0,
        crop_scale: tuple[float, float] | list[float] = (0.8, 1.0),
        brightness: float = 0.1,
        contrast: float = 0.1,
        translate: float = 0.0,
    ) -> None:
        super().__init__(image_size=image_size)
        lo, hi = crop_scale
        if not (0 < lo <= hi <= 1) or not 0 <= hflip <= 1 or rotate < 0:
            raise TransformError(
                f"augment: need 0 < crop_scale low <= high <= 1, 0 <= hflip <= 1, rotate >= 0; "
                f"got crop_scale={crop_scale}, hflip={hflip}, rotate={rotate}"
            )
        self.hflip, self.rotate = float(hflip), float(rotate)
        self.crop_scale = (float(lo), float(hi))
        self.brightness, self.contrast = float(brightness), float(contrast)
        self.translate = float(translate)

    def __call__(
        self, x: torch.Tensor, *, generator: torch.Generator | None = None, **context: Any
    ) -> torch.Tensor:
        b = x.shape[0]

        def rand(*shape: int) -> torch.Tensor:
            return torch.rand(*shape, generator=generator)

        flip = torch.where(rand(b) < self.hflip, -1.0, 1.0)
        angle = (rand(b) * 2 - 1) * math.radians(self.rotate)
        lo, hi = self.crop_scale
        zoom = torch.sqrt(lo + rand(b) * (hi - lo))  # side length of the crop, as a fraction
        aspect = torch.exp((rand(b) * 2 - 1) * math.log(4 / 3) / 2) if lo < 1 else torch.ones(b)
        sx, sy = zoom * torch.sqrt(aspect), zoom / torch.sqrt(aspect)
        sx, sy = sx.clamp(max=1.0), sy.clamp(max=1.0)
        # The crop may sit anywhere inside the image, plus an optional extra shift.
        tx = (rand(b) * 2 - 1) * ((1 - sx) + self.translate)
        ty = (rand(b) * 2 - 1) * ((1 - sy) + self.translate)
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.stack(
            [
                torch.stack([cos * sx * flip, -sin * sy, tx], dim=1),
                torch.stack([sin * sx * flip, cos * sy, ty], dim=1),
            ],
            dim=1,
        )
        bright = (rand(b) * 2 - 1) * self.brightness
        contr = 1 + (rand(b) * 2 - 1) * self.contrast

        # One small host-to-device copy per batch, from pinned memory and asynchronous on a GPU:
        # a plain copy from pageable memory would wait for the GPU to finish its queued work.
        params = torch.cat([theta.flatten(1), bright[:, None], contr[:, None]], dim=1)
        if x.device.type == "cuda":
            params = params.pin_memory().to(x.device, non_blocking=True)
        params = params.to(device=x.device, dtype=x.dtype)
        theta = params[:, :6].view(-1, 2, 3)
        bright = params[:, 6].view(-1, 1, 1, 1)
        contr = params[:, 7].view(-1, 1, 1, 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        mean = out.mean(dim=(1, 2, 3), keepdim=True)
        return ((out - mean) * contr + mean + bright).clamp_(0.0, 1.0)


class AugmentLight(BatchAugment):
    """Flip and up to 7 degrees of rotation, nothing else."""

    def __init__(self, *, image_size: int, **overrides: Any) -> None:
        params = dict(hflip=0.5, rotate=7.0, crop_scale=(1.0, 1.0), brightness=0.0, contrast=0.0)
        super().__init__(image_size=image_size, **{**params, **overrides})


class AugmentReport(BatchAugment):
    """The founding report's augmentations: flip, rotation up to 15 degrees, brightness and
    contrast jitter, random resized crop."""

    def __init__(self, *, image_size: int, **overrides: Any) -> None:
        params = dict(hflip=0.5, rotate=15.0, crop_scale=(0.8, 1.0), brightness=0.1, contrast=0.1)
        super().__init__(image_size=image_size, **{**params, **overrides})


class AugmentStrong(BatchAugment):
    """Wider crops, shifts and intensity jitter for small data sets."""

    def __init__(self, *, image_size: int, **overrides: Any) -> None:
        params = dict(
            hflip=0.5, rotate=15.0, crop_scale=(0.6, 1.0), brightness=0.2, contrast=0.2, translate=0.05
        )
        super().__init__(image_size=image_size, **{**params, **overrides})


#: The ranges :func:`at_strength` scales: rotation, crop, shift and intensity jitter (the flip
#: probability stays as the preset has it).
_SCALED = ("rotate", "brightness", "contrast", "translate")


def at_strength(preset: str, strength: float) -> str:
    """The augmentation spec of ``preset`` (a registered preset name) with its ranges scaled by
    ``strength``: 1 is the preset itself, 0.5 half its rotation, shift, jitter and crop loss, 1.5
    half as much again. The crop keeps at least a tenth of the image's area.

    ``at_strength("augment_strong", 0.5)`` ->
    ``"augment_strong(rotate=7.5, brightness=0.1, contrast=0.1, translate=0.025, crop_scale=(0.8, 1.0))"``
    """
    from cxrzoo.transforms.base import build_transform

    if not 0 <= strength <= 10 or not math.isfinite(strength):
        raise TransformError(f"augmentation strength {strength!r}: expected a number in [0, 10]")
    base = build_transform(preset, image_size=32)
    if not isinstance(base, BatchAugment):
        raise TransformError(f"{preset!r} is not an augmentation preset with ranges to scale")
    if strength == 1:
        return preset
    values = {key: round(getattr(base, key) * strength, 6) for key in _SCALED}
    lo, hi = base.crop_scale
    values["crop_scale"] = (round(max(0.1, 1 - (1 - lo) * strength), 6), hi)
    return f"{preset}(" + ", ".join(f"{k}={v!r}" for k, v in values.items()) + ")"
