"""Feature Pyramid Network (Lin et al., CVPR 2017): top-down fusion of backbone stages."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class FPN(nn.Module):
    """Lateral 1x1 projections, nearest-neighbour top-down pathway, 3x3 smoothing."""

    def __init__(self, in_channels: Sequence[int], out_channels: int = 256) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.smooth = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in in_channels)
        self.out_channels = out_channels

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Fine-to-coarse backbone features in, fine-to-coarse fused features out."""
        laterals = [conv(f) for conv, f in zip(self.lateral, features, strict=True)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], size=laterals[i - 1].shape[-2:], mode="nearest"
            )
        return [conv(x) for conv, x in zip(self.smooth, laterals, strict=True)]
