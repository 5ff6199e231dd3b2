"""torchxrayvision's classifiers rebuilt from torchvision layers, with the same tensor names.

``XrvDenseNet`` holds ``features`` and ``classifier`` exactly as torchxrayvision's (and
torchvision's) DenseNet do; ``XrvResNet`` holds torchvision's ResNet modules at the top level,
as the ``state.pt`` torchxrayvision publishes names them. The heads have one row per named
output: unnamed outputs are dropped on import.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import densenet as tv_densenet
from torchvision.models import resnet as tv_resnet

from cxrzoo import ZooModel
from cxrzoo_xrv.config import XrvDenseNetConfig, XrvResNetConfig


def _start_from(model: ZooModel) -> None:
    """Load the config's weight source, if any, with the core loader (heads by label)."""
    source = model.config.pretrained
    if isinstance(source, str) and source:
        from cxrzoo.weights import apply_init

        apply_init(model, source)


class XrvDenseNet(ZooModel):
    """DenseNet-121 with a one-channel stem: features -> ReLU -> average pool -> linear."""

    config_class = XrvDenseNetConfig
    config: XrvDenseNetConfig

    def __init__(self, config: XrvDenseNetConfig | None = None, **overrides: object) -> None:
        super().__init__(config, **overrides)
        cfg = self.config
        net = tv_densenet.DenseNet(
            growth_rate=cfg.growth_rate,
            block_config=cfg.block_config,
            num_init_features=cfg.num_init_features,
            bn_size=cfg.bn_size,
            drop_rate=cfg.drop_rate,
            num_classes=cfg.num_labels,
        )
        net.features.conv0 = nn.Conv2d(
            cfg.in_chans, cfg.num_init_features, kernel_size=7, stride=2, padding=3, bias=False
        )
        nn.init.kaiming_normal_(net.features.conv0.weight)
        self.features = net.features
        # Not in place (torchxrayvision's F.relu(..., inplace=True) is the same function): Grad-CAM
        # hooks this module's output.
        self.relu = nn.ReLU()
        self.classifier = net.classifier
        _start_from(self)

    @classmethod
    def tiny_config(cls) -> XrvDenseNetConfig:
        return XrvDenseNetConfig(image_size=32, growth_rate=8, block_config=(2, 2), num_init_features=16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.relu(self.features(x))
        return self.classifier(F.adaptive_avg_pool2d(f, 1).flatten(1))

    def feature_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"features": self.relu(self.features(x))}

    def gradcam_layers(self) -> list[nn.Module]:
        return [self.relu]


class XrvResNet(ZooModel):
    """ResNet-50 with a one-channel stem (torchvision's layers and tensor names)."""

    config_class = XrvResNetConfig
    config: XrvResNetConfig

    def __init__(self, config: XrvResNetConfig | None = None, **overrides: object) -> None:
        super().__init__(config, **overrides)
        cfg = self.config
        block = tv_resnet.Bottleneck if cfg.block == "bottleneck" else tv_resnet.BasicBlock
        net = tv_resnet.ResNet(block, list(cfg.layers), num_classes=cfg.num_labels)
        net.conv1 = nn.Conv2d(cfg.in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "fc"):
            setattr(self, name, getattr(net, name))
        _start_from(self)

    @classmethod
    def tiny_config(cls) -> XrvResNetConfig:
        return XrvResNetConfig(image_size=32, block="basic", layers=(1, 1, 1, 1))

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.adaptive_avg_pool2d(self._features(x), 1).flatten(1))

    def feature_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"features": self._features(x)}

    def gradcam_layers(self) -> list[nn.Module]:
        return [self.layer4]
