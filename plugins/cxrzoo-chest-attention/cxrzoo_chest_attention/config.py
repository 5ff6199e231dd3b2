"""The config of ``chest_xray_attention``: plain data, no torch, so that ``cxrzoo info chest_xray_attention`` and
config checks stay fast."""

from __future__ import annotations

from dataclasses import dataclass

from cxrzoo.config import ConfigError, ModelConfig, weight_source


@dataclass(frozen=True)
class ChestAttentionConfig(ModelConfig):
    """Architecture of :class:`ChestXrayAttention`; ``attention=False`` for the ablation."""

    backbone: str = "resnet18"
    #: Initial backbone weights: False (random), True (timm's own, downloaded) or a weight
    #: source such as timm:resnet50.a1_in1k, torchvision:resnet50 or a checkpoint file.
    pretrained: bool | str = weight_source(False)
    attention: bool = True
    reduction: int = 16
    dropout: float = 0.2

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
