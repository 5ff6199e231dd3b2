"""An example cxrzoo plugin: a four-block CNN registered as ``example_cnn``, and a composite
model, ``example_committee``, built on ZooModel's hooks (committee.py).

After ``pip install -e examples/cxrzoo-example-plugin`` it shows in ``cxrzoo list``, trains with
``cxrzoo train example_cnn`` and can run cxrzoo's conformance suite (see tests/).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cxrzoo import ModelConfig, ZooModel, hookimpl


@dataclass(frozen=True)
class ExampleConfig(ModelConfig):
    """Every field is saved in config.json; add your architecture's arguments here."""

    width: int = 32
    dropout: float = 0.1


class ExampleCNN(ZooModel):
    """Four conv-BN-ReLU blocks, global average pooling, a linear classifier."""

    config_class = ExampleConfig
    config: ExampleConfig

    def __init__(self, config: ExampleConfig | None = None, **overrides: object) -> None:
        super().__init__(config, **overrides)
        cfg = self.config
        layers: list[nn.Module] = []
        channels = cfg.in_chans
        for i in range(4):
            out = cfg.width * 2**i
            layers += [
                nn.Conv2d(channels, out, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(),
            ]
            channels = out
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(cfg.dropout)
        self.classifier = nn.Linear(channels, cfg.num_labels)

    @classmethod
    def tiny_config(cls) -> ExampleConfig:
        return ExampleConfig(width=4, image_size=32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.features(x).mean((2, 3))))

    def feature_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"features": self.features(x)}

    def gradcam_layers(self) -> list[nn.Module]:
        return [self.features[-1]]


@hookimpl
def register_models(register):
    # The class itself: simplest, but importing this module (and torch) is then part of every
    # cxrzoo command. A plugin can instead register by import path, imported on first use, so
    # that `cxrzoo list` stays fast (see cxrzoo.hookspecs and the four built-in model plugins):
    #   register("example_cnn", "cxrzoo_example.model:ExampleCNN", description="...",
    #            config="cxrzoo_example.config:ExampleConfig")
    register("example_cnn", ExampleCNN)
    # A composite built on ZooModel's hooks alone (see committee.py), registered by import path.
    register(
        "example_committee",
        "cxrzoo_example.committee:Committee",
        description="Calls a finding when any member does (the largest member probability).",
    )
