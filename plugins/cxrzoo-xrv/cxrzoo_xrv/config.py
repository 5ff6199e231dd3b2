"""Configs of the torchxrayvision architectures: plain data, no torch."""

from __future__ import annotations

from dataclasses import dataclass

from cxrzoo.config import ConfigError, ModelConfig, weight_source
from cxrzoo_xrv.published import PREPROCESSING


class _XrvConfig(ModelConfig):
    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pretrained is True:
            raise ConfigError(
                "pretrained=true does not say which weights; name them, e.g. "
                "pretrained=xrv:densenet121-res224-all (or a checkpoint file, a store name)"
            )


@dataclass(frozen=True)
class XrvDenseNetConfig(_XrvConfig):
    """torchxrayvision's DenseNet-121 (one input channel, 224 px, inputs in [-1024, 1024])."""

    image_size: int = 224
    preprocessing: tuple[str, ...] = PREPROCESSING
    #: Initial weights: False (random) or a weight source (xrv:NAME, a store name, a file).
    pretrained: bool | str = weight_source(False)
    growth_rate: int = 32
    block_config: tuple[int, ...] = (6, 12, 24, 16)
    num_init_features: int = 64
    bn_size: int = 4
    drop_rate: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.block_config or min(self.block_config) < 1:
            raise ConfigError(f"block_config needs at least one block of one layer, got {self.block_config}")
        if not 0 <= self.drop_rate < 1:
            raise ConfigError(f"drop_rate must be in [0, 1), got {self.drop_rate}")


@dataclass(frozen=True)
class XrvResNetConfig(_XrvConfig):
    """torchxrayvision's ResNet-50 (one input channel, 512 px, inputs in [-1024, 1024])."""

    image_size: int = 512
    preprocessing: tuple[str, ...] = PREPROCESSING
    #: Initial weights: False (random) or a weight source (xrv:NAME, a store name, a file).
    pretrained: bool | str = weight_source(False)
    block: str = "bottleneck"
    layers: tuple[int, ...] = (3, 4, 6, 3)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.block not in ("bottleneck", "basic"):
            raise ConfigError(f"block must be 'bottleneck' or 'basic', got {self.block!r}")
        if len(self.layers) != 4 or min(self.layers) < 1:
            raise ConfigError(f"layers must be four positive block counts, got {self.layers}")
