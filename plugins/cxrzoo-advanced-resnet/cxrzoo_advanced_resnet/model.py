"""advanced_resnet: ResNet-50 with channel and spatial attention (CBAM) on every stage and
a Feature Pyramid Network fusing the stages into multi-scale features."""

from __future__ import annotations

import torch
from torch import nn

from cxrzoo import ZooModel
from cxrzoo.nn import CBAM, FPN, create_backbone
from cxrzoo_advanced_resnet.config import AdvancedResNetConfig


class AdvancedResNet(ZooModel):
    """ResNet-50 + CBAM attention + FPN, pooled over every pyramid level."""

    config_class = AdvancedResNetConfig
    config: AdvancedResNetConfig

    def __init__(self, config: AdvancedResNetConfig | None = None, **overrides: object) -> None:
        super().__init__(config, **overrides)
        cfg = self.config
        self.backbone = create_backbone(
            cfg.backbone, in_chans=cfg.in_chans, out_indices=cfg.out_indices, pretrained=cfg.pretrained
        )
        channels = self.backbone.feature_info.channels()
        # One tap per stage: CBAM, or an identity so Grad-CAM always has a layer to hook.
        self.attention = nn.ModuleList(
            CBAM(c, cfg.reduction) if cfg.attention else nn.Identity() for c in channels
        )
        self.fpn = FPN(channels, cfg.fpn_channels) if cfg.fpn else None
        pooled = cfg.fpn_channels * len(channels) if cfg.fpn else sum(channels)
        self.head = nn.Sequential(
            nn.Linear(pooled, cfg.hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden, cfg.num_labels),
        )

    @classmethod
    def tiny_config(cls) -> AdvancedResNetConfig:
        return AdvancedResNetConfig(
            backbone="test_resnet",
            in_chans=1,
            image_size=32,
            fpn_channels=32,
            hidden=64,
            reduction=4,
            dropout=0.1,
        )

    def _pyramid(self, x: torch.Tensor) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        maps: dict[str, torch.Tensor] = {}
        feats = []
        for i, (f, attn) in enumerate(zip(self.backbone(x), self.attention, strict=True)):
            if isinstance(attn, CBAM):
                f, stage_maps = attn.forward_with_maps(f)
                maps.update({f"stage{i}.{k}": v for k, v in stage_maps.items()})
            else:
                f = attn(f)
            feats.append(f)
            maps[f"stage{i}.features"] = f
        if self.fpn is not None:
            feats = self.fpn(feats)
            maps.update({f"fpn{i}": f for i, f in enumerate(feats)})
        return feats, maps

    def _stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [attn(f) for f, attn in zip(self.backbone(x), self.attention, strict=True)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self._stages(x)
        # The head only needs each pyramid level's mean: FPN.pooled gets it exactly, cheaply.
        pooled = self.fpn.pooled(feats) if self.fpn is not None else [f.mean((2, 3)) for f in feats]
        return self.head(torch.cat(pooled, dim=1))

    def feature_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self._pyramid(x)[1]

    def gradcam_layers(self) -> list[nn.Module]:
        return [self.attention[-1]]
