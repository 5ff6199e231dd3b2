"""rare_disease: multi-resolution features, a memory bank of rare-finding examples replayed
during training, and two heads with their own attention - one for the rare findings, one
for the common ones."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cxrzoo import ModelConfig, ZooModel
from cxrzoo.config import ConfigError
from cxrzoo.labels import DEFAULT_RARE, RARE_PREVALENCE, rare_labels
from cxrzoo.nn import create_backbone, masked_bce


@dataclass(frozen=True)
class RareDiseaseConfig(ModelConfig):
    """Architecture of :class:`RareDiseaseModel`.

    ``rare_labels`` go to the rare head; with ``adapt_rare`` training adds every finding
    whose training prevalence is below ``rare_prevalence``. The memory bank keeps the
    rare head's input features of the last ``memory_size`` rare-positive examples and
    replays ``replay_size`` of them per step, weighted by ``replay_weight``.
    """

    backbone: str = "resnet34"
    pretrained: bool = False
    out_indices: tuple[int, ...] = (2, 3, 4)
    feature_dim: int = 128
    rare_labels: tuple[str, ...] = DEFAULT_RARE
    adapt_rare: bool = True
    rare_prevalence: float = RARE_PREVALENCE
    attention: bool = True
    memory_size: int = 512
    replay_size: int = 64
    replay_weight: float = 0.5
    dropout: float = 0.3

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = [r for r in self.rare_labels if r not in self.labels]
        if unknown:
            raise ConfigError(f"rare_labels {unknown} are not among the labels {list(self.labels)}")
        if not self.rare_labels or len(self.rare_labels) == len(self.labels):
            raise ConfigError("rare_labels must hold some, but not all, of the labels")
        if self.memory_size < 0 or self.replay_size < 0 or self.replay_weight < 0:
            raise ConfigError("memory_size, replay_size and replay_weight must be >= 0")

    def for_data(self, label_prevalence: dict[str, float]) -> RareDiseaseConfig:
        if not self.adapt_rare:
            return self
        rare = rare_labels(
            {k: v for k, v in label_prevalence.items() if k in self.labels},
            threshold=self.rare_prevalence,
            always=self.rare_labels,
        )
        if len(rare) >= len(self.labels):  # keep the common head non-empty
            rare = self.rare_labels
        return self.replace(rare_labels=rare)


class AttentionHead(nn.Module):
    """A classifier with its own attention: spatial attention pooling on every resolution,
    then a channel gate on the concatenated descriptor."""

    def __init__(self, dim: int, levels: int, num_out: int, *, attention: bool, dropout: float) -> None:
        super().__init__()
        self.use_attention = attention
        if attention:
            self.spatial = nn.ModuleList(nn.Conv2d(dim, 1, 3, padding=1) for _ in range(levels))
            hidden = max(dim * levels // 8, 8)
            self.gate = nn.Sequential(
                nn.Linear(dim * levels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, dim * levels)
            )
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(dim * levels, num_out)

    def pool(self, maps: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Descriptor ``[B, dim * levels]`` and the attention maps it pooled with."""
        if not self.use_attention:
            return torch.cat([m.mean((2, 3)) for m in maps], dim=1), []
        pooled, weights = [], []
        for conv, m in zip(self.spatial, maps, strict=True):
            a = torch.sigmoid(conv(m))
            pooled.append((m * a).sum((2, 3)) / a.sum((2, 3)).clamp_min(1e-6))
            weights.append(a)
        return torch.cat(pooled, dim=1), weights

    def classify(self, z: torch.Tensor) -> torch.Tensor:
        """Logits from a pooled descriptor (also used to replay the memory bank)."""
        if self.use_attention:
            z = z * torch.sigmoid(self.gate(z))
        return self.classifier(self.dropout(z))


class RareDiseaseModel(ZooModel):
    """Backbone stages -> per-resolution projections -> rare head + common head."""

    config_class = RareDiseaseConfig
    config: RareDiseaseConfig

    def __init__(self, config: RareDiseaseConfig | None = None, **overrides: object) -> None:
        super().__init__(config, **overrides)
        cfg = self.config
        self.backbone = create_backbone(
            cfg.backbone, in_chans=cfg.in_chans, out_indices=cfg.out_indices, pretrained=cfg.pretrained
        )
        channels = self.backbone.feature_info.channels()
        d = cfg.feature_dim
        self.project = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, d, 1, bias=False), nn.BatchNorm2d(d), nn.ReLU(inplace=True))
            for c in channels
        )
        rare_idx = [cfg.labels.index(r) for r in cfg.rare_labels]
        common_idx = [i for i in range(cfg.num_labels) if i not in rare_idx]
        levels = len(channels)
        self.rare_head = AttentionHead(d, levels, len(rare_idx), attention=cfg.attention, dropout=cfg.dropout)
        self.common_head = AttentionHead(
            d, levels, len(common_idx), attention=cfg.attention, dropout=cfg.dropout
        )
        self.register_buffer("rare_index", torch.tensor(rare_idx), persistent=False)
        # Head outputs are concatenated [rare, common]; this permutation restores label order.
        order = torch.tensor(rare_idx + common_idx)
        self.register_buffer("output_order", torch.argsort(order), persistent=False)
        # The memory bank is part of the saved state, so a resumed run replays the same memories.
        self.register_buffer("bank_features", torch.zeros(cfg.memory_size, d * levels))
        self.register_buffer("bank_targets", torch.zeros(cfg.memory_size, len(rare_idx)))
        self.register_buffer("bank_count", torch.zeros((), dtype=torch.long))
        self.register_buffer("bank_next", torch.zeros((), dtype=torch.long))
        self._last_rare_descriptor: torch.Tensor | None = None

    @classmethod
    def tiny_config(cls) -> RareDiseaseConfig:
        return RareDiseaseConfig(
            backbone="test_resnet", image_size=32, feature_dim=16, memory_size=32, replay_size=8
        )

    def _maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [proj(f) for proj, f in zip(self.project, self.backbone(x), strict=True)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self._maps(x)
        z_rare, _ = self.rare_head.pool(maps)
        z_common, _ = self.common_head.pool(maps)
        if self.training:
            self._last_rare_descriptor = z_rare
        logits = torch.cat([self.rare_head.classify(z_rare), self.common_head.classify(z_common)], dim=1)
        return logits.index_select(1, self.output_order)

    def auxiliary_loss(self, targets: torch.Tensor) -> torch.Tensor | None:
        """Replay remembered rare examples through the rare head, then remember this batch's.

        Call after ``forward`` in training with that batch's targets ``[B, labels]``.
        """
        z = self._last_rare_descriptor
        self._last_rare_descriptor = None
        cfg = self.config
        if z is None or cfg.memory_size == 0:
            return None
        loss = None
        count = int(self.bank_count)
        if count and cfg.replay_size and cfg.replay_weight:
            pick = torch.randint(count, (min(cfg.replay_size, count),), device=z.device)
            logits = self.rare_head.classify(self.bank_features[pick])
            remembered = self.bank_targets[pick]
            # Unknown labels are remembered as -1 (the bank is saved with the weights, which
            # must be finite) and left out of the replay loss.
            remembered = torch.where(remembered < 0, torch.full_like(remembered, float("nan")), remembered)
            loss = cfg.replay_weight * masked_bce(logits.float(), remembered)
        rare_targets = targets.index_select(1, self.rare_index).float()
        keep = (torch.nan_to_num(rare_targets, nan=0.0) > 0).any(1)
        if keep.any():
            self._remember(z[keep].detach().float(), torch.nan_to_num(rare_targets[keep], nan=-1.0))
        return loss

    @torch.no_grad()
    def _remember(self, features: torch.Tensor, targets: torch.Tensor) -> None:
        size = self.config.memory_size
        n = min(len(features), size)
        features, targets = features[-n:], targets[-n:]
        slots = (self.bank_next + torch.arange(n, device=features.device)) % size
        self.bank_features[slots] = features.to(self.bank_features.dtype)
        self.bank_targets[slots] = targets.to(self.bank_targets.dtype)
        self.bank_next.copy_((self.bank_next + n) % size)
        self.bank_count.copy_(torch.clamp(self.bank_count + n, max=size))

    def feature_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        maps = self._maps(x)
        out = {f"level{i}": m for i, m in enumerate(maps)}
        for head_name, head in (("rare", self.rare_head), ("common", self.common_head)):
            _, weights = head.pool(maps)
            out.update({f"{head_name}_attention{i}": w for i, w in enumerate(weights)})
        return out

    def gradcam_layers(self) -> list[nn.Module]:
        return [self.project[-1]]
