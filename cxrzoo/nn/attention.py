"""Channel and spatial attention (CBAM, Woo et al., ECCV 2018)."""

from __future__ import annotations

import torch
from torch import nn


class ChannelAttention(nn.Module):
    """Per-channel gate from average- and max-pooled descriptors through a shared MLP."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Weights ``[B, C, 1, 1]`` in (0, 1)."""
        c = x.shape[1]
        # One MLP pass over both descriptors, stacked on a leading axis of 2 (batch stays dynamic).
        pooled = torch.stack([x.mean((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)])
        out = self.mlp(pooled.flatten(0, 1)).view(2, -1, c, 1, 1)
        return torch.sigmoid(out.sum(0))


class SpatialAttention(nn.Module):
    """Per-position gate from channel-wise mean and max through one convolution."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Weights ``[B, 1, H, W]`` in (0, 1)."""
        desc = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(desc))


class CBAM(nn.Module):
    """Channel attention then spatial attention; either can be switched off."""

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        kernel_size: int = 7,
        *,
        channel: bool = True,
        spatial: bool = True,
    ) -> None:
        super().__init__()
        self.channel = ChannelAttention(channels, reduction) if channel else None
        self.spatial = SpatialAttention(kernel_size) if spatial else None

    def forward_with_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        maps: dict[str, torch.Tensor] = {}
        if self.channel is not None:
            weights = self.channel(x)
            x = x * weights
            maps["channel"] = weights
        if self.spatial is not None:
            weights = self.spatial(x)
            x = x * weights
            maps["spatial"] = weights
        return x, maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_maps(x)[0]
