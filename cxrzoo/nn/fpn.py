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

    def _top_down(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        laterals = [conv(f) for conv, f in zip(self.lateral, features, strict=True)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], size=laterals[i - 1].shape[-2:], mode="nearest"
            )
        return laterals

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Fine-to-coarse backbone features in, fine-to-coarse fused features out."""
        return [conv(x) for conv, x in zip(self.smooth, self._top_down(features), strict=True)]

    def pooled(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """``[f.mean((2, 3)) for f in self(features)]``, without running the 3x3 convolutions.

        The mean of a zero-padded convolution's output is the kernel applied to nine sums of
        the input (the whole map minus the border row and column each tap never reaches), so
        a head that global-average-pools the pyramid skips the smoothing convolutions' full
        cost: on a ResNet-50 at 224 px they are about 2.4 GFLOPs, more than half the backbone.
        """
        return [
            _pooled_conv3x3(conv, x) for conv, x in zip(self.smooth, self._top_down(features), strict=True)
        ]


def _pooled_conv3x3(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """Exact spatial mean of ``conv(x)`` for a 3x3, stride-1, padding-1 convolution."""
    h, w = x.shape[-2:]
    total = x.sum((2, 3))
    rows = (x[:, :, -1, :].sum(-1), x[:, :, 0, :].sum(-1))  # excluded for kernel row 0 / row 2
    cols = (x[:, :, :, -1].sum(-1), x[:, :, :, 0].sum(-1))  # excluded for kernel col 0 / col 2
    corner = {(0, 0): x[:, :, -1, -1], (0, 2): x[:, :, -1, 0], (2, 0): x[:, :, 0, -1], (2, 2): x[:, :, 0, 0]}
    sums = []
    for ky in range(3):
        for kx in range(3):
            s = total
            if ky != 1:
                s = s - rows[ky // 2]
            if kx != 1:
                s = s - cols[kx // 2]
            if ky != 1 and kx != 1:
                s = s + corner[(ky, kx)]
            sums.append(s)
    taps = torch.stack(sums, dim=-1)  # [B, C, 9]
    weight = conv.weight.flatten(2)  # [O, C, 9]
    out = torch.einsum("bck,ock->bo", taps, weight) / (h * w)
    return out + conv.bias if conv.bias is not None else out
