"""``example_committee``: a composite model built only on ZooModel's hooks.

It calls a finding when any of its members does: its probability is the largest of the
members' (a "most alarmed member" rule, unlike the built-in ensemble's mean). Nothing in
cxrzoo's core knows it; the hooks tell the core what it needs:

- ``trains_itself = False`` and ``build_for_training``: ``cxrzoo train example_committee``
  trains each member the store lacks, loads them, and calibrates the combination;
- ``member_models`` / ``combine_members``: prediction runs each member on its own
  preprocessing and merges their probabilities;
- ``training_record`` and ``ModelConfig.card_facts``: what config.json and the card say.

A saved committee keeps its members' configs (``member_specs``) and weights, so loading it
needs nothing from the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cxrzoo import ModelConfig, ZooModel
from cxrzoo.config import ConfigError


@dataclass(frozen=True)
class CommitteeConfig(ModelConfig):
    members: tuple[str, ...] = ("example_cnn",)
    member_specs: tuple[dict, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.members:
            raise ConfigError("a committee needs at least one member")

    def card_facts(self) -> dict[str, str]:
        return {"members": ", ".join(f"`{m}`" for m in self.members)}


class Committee(ZooModel):
    config_class = CommitteeConfig
    config: CommitteeConfig
    trains_itself = False

    def __init__(
        self,
        config: CommitteeConfig | None = None,
        *,
        members: Sequence[ZooModel] | None = None,
        **overrides: Any,
    ) -> None:
        from cxrzoo.store import build_from_config

        super().__init__(config, **overrides)
        if members is None:
            if not self.config.member_specs:
                raise ConfigError("build a committee from trained members (cxrzoo train example_committee)")
            members = [
                build_from_config(spec, source="committee member") for spec in self.config.member_specs
            ]
        self.members = nn.ModuleList(members)
        specs = tuple({"architecture": m.architecture, "config": m.config.to_dict()} for m in members)
        self.config = self.config.replace(member_specs=specs)

    @classmethod
    def build_for_training(cls, config: CommitteeConfig, context: Any) -> Committee:
        for name in config.members:
            if not context.is_trained(name):
                context.echo(f"Committee member {name!r} is not trained yet: training it")
                context.train(name)
        return cls(config, members=[context.load(name) for name in config.members])

    @classmethod
    def tiny_config(cls) -> CommitteeConfig:
        from cxrzoo.plugins import models

        member = models.get("example_cnn").tiny_config()
        spec = {"architecture": "example_cnn", "config": member.to_dict()}
        return CommitteeConfig(members=("example_cnn",), member_specs=(spec,), image_size=member.image_size)

    def member_models(self) -> Sequence[ZooModel]:
        return list(self.members)

    def combine_members(self, probabilities: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.stack(list(probabilities)).amax(0)

    def training_record(self) -> dict[str, Any]:
        return {"members": list(self.config.members)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = []
        for m in self.members:
            size = m.config.image_size
            xm = x if x.shape[-1] == size else F.interpolate(x, size=(size, size), mode="bilinear")
            probs.append(torch.sigmoid(m(xm).float()))
        return torch.logit(self.combine_members(probs), eps=1e-6)

    def feature_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.members[0].feature_maps(x)

    def gradcam_layers(self) -> list[nn.Module]:
        return [layer for m in self.members for layer in m.gradcam_layers()[:1]]
