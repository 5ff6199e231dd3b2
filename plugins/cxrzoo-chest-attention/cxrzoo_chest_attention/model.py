"""chest_xray_attention: a lightweight ResNet-like encoder with dual (channel + spatial)
attention on its last stage and no feature pyramid; the fast baseline for weak hardware."""

from __future__ import annotations

import torch
from torch import nn

from cxrzoo import ZooModel
from cxrzoo.nn import CBAM, create_backbone
from cxrzoo_chest_attention.config import ChestAttentionConfig


class ChestXrayAttention(ZooModel):
    """Encoder -> dual attention -> global average pool -> linear classifier."""

    config_class = ChestAttentionConfig
    config: ChestAttentionConfig

    def __init__(self, config: ChestAttentionConfig | None = None, **overrides: object) -> None:
        super().__init__(config, **overrides)
        cfg = self.config
        self.encoder = create_backbone(
            cfg.backbone, in_chans=cfg.in_chans, out_indices=(-1,), pretrained=cfg.pretrained
        )
        channels = self.encoder.feature_info.channels()[-1]
        self.attention = CBAM(channels, cfg.reduction) if cfg.attention else nn.Identity()
        self.dropout = nn.Dropout(cfg.dropout)
        self.classifier = nn.Linear(channels, cfg.num_labels)

    @classmethod
    def tiny_config(cls) -> ChestAttentionConfig:
        return ChestAttentionConfig(backbone="test_resnet", image_size=32, reduction=4)

    def _features(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        f = self.encoder(x)[-1]
        maps = {"encoder": f}
        if isinstance(self.attention, CBAM):
            f, attn = self.attention.forward_with_maps(f)
            maps.update(attn)
        else:
            f = self.attention(f)
        maps["features"] = f
        return f, maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The attention module is called as a module (not through forward_with_maps), so that
        # hooks on it fire: Grad-CAM hooks the layer gradcam_layers() names.
        f = self.attention(self.encoder(x)[-1])
        return self.classifier(self.dropout(f.mean((2, 3))))

    def feature_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self._features(x)[1]

    def gradcam_layers(self) -> list[nn.Module]:
        return [self.attention]
