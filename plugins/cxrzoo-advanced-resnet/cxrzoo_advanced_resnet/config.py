"""The config of ``advanced_resnet``: plain data, no torch, so that ``cxrzoo info advanced_resnet`` and
config checks stay fast."""

from __future__ import annotations

from dataclasses import dataclass

from cxrzoo.config import ConfigError, ModelConfig, weight_source


@dataclass(frozen=True)
class AdvancedResNetConfig(ModelConfig):
    """Architecture of :class:`AdvancedResNet`.

    ``attention`` and ``fpn`` switch the CBAM blocks and the feature pyramid off for the
    founding report's ablations; ``backbone`` is any timm model with ``features_only``.
    """

    in_chans: int = 3
    backbone: str = "resnet50"
    #: Initial backbone weights: False (random), True (timm's own, downloaded) or a weight
    #: source such as timm:resnet50.a1_in1k, torchvision:resnet50 or a checkpoint file.
    pretrained: bool | str = weight_source(False)
    out_indices: tuple[int, ...] = (1, 2, 3, 4)
    attention: bool = True
    reduction: int = 16
    fpn: bool = True
    fpn_channels: int = 256
    hidden: int = 512
    dropout: float = 0.3

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.out_indices:
            raise ConfigError("out_indices must name at least one backbone stage")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
