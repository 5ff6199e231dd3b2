"""Tensor steps: float batches ``[B, C, H, W]`` on any device."""

from __future__ import annotations

from typing import Any

import torch

from cxrzoo.transforms.base import Transform, TransformError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Scale(Transform):
    """uint8 0-255 to float 0-1."""

    stage = "tensor"

    def __call__(self, x: torch.Tensor, **context: Any) -> torch.Tensor:
        if x.dtype == torch.uint8:
            return x.float().div_(255.0)
        if not torch.is_floating_point(x):
            raise TransformError(f"scale expects uint8 or float input, got {x.dtype}")
        return x


class Rescale(Transform):
    """Map the 0-1 range linearly onto [low, high].

    It follows ``scale``. ``rescale(low=-1024, high=1024)`` is torchxrayvision's input range: its ``normalize(img,
    255)`` is ``(2 * img / 255 - 1) * 1024``, which is this step after ``scale``.
    """

    stage = "tensor"

    def __init__(self, *, image_size: int, low: float = -1024.0, high: float = 1024.0) -> None:
        super().__init__(image_size=image_size)
        self.low, self.high = float(low), float(high)
        if not self.high > self.low:
            raise TransformError(f"rescale: high must be above low, got low={low}, high={high}")

    def __call__(self, x: torch.Tensor, **context: Any) -> torch.Tensor:
        return x * (self.high - self.low) + self.low


class Normalize(Transform):
    """Subtract a mean and divide by a standard deviation, per channel."""

    stage = "tensor"
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.25,)

    def __init__(self, *, image_size: int, mean: Any = None, std: Any = None) -> None:
        super().__init__(image_size=image_size)
        if mean is not None:
            self.mean = tuple(mean) if isinstance(mean, list | tuple) else (float(mean),)
        if std is not None:
            self.std = tuple(std) if isinstance(std, list | tuple) else (float(std),)
        if any(s <= 0 for s in self.std):
            raise TransformError(f"normalize: std must be positive, got {self.std}")

    def __call__(self, x: torch.Tensor, **context: Any) -> torch.Tensor:
        channels = x.shape[1]
        mean, std = self.mean, self.std
        if len(mean) != channels:
            # A 1-channel model with a 3-channel statistic uses its average (and vice versa).
            mean = (sum(mean) / len(mean),) * channels
            std = (sum(std) / len(std),) * channels
        m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return (x - m) / s


class NormalizeGrey(Normalize):
    """Grey-level normalisation: (x - 0.5) / 0.25."""


class NormalizeImagenet(Normalize):
    """ImageNet mean and standard deviation (for ImageNet-pretrained backbones)."""

    mean = IMAGENET_MEAN
    std = IMAGENET_STD


class Standardize(Transform):
    """Per-image contrast normalisation: zero mean, unit variance."""

    stage = "tensor"

    def __call__(self, x: torch.Tensor, **context: Any) -> torch.Tensor:
        dims = tuple(range(1, x.ndim))
        mean = x.mean(dim=dims, keepdim=True)
        std = x.std(dim=dims, keepdim=True).clamp_min(1e-6)
        return (x - mean) / std
