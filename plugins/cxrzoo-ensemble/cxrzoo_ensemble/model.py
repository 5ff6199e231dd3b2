"""ensemble: the (optionally weighted) average of its members' probabilities."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cxrzoo import ZooModel
from cxrzoo.config import ConfigError
from cxrzoo.store import StoreError
from cxrzoo_ensemble.config import EnsembleConfig


class MissingMemberError(StoreError):
    """An ensemble member with no trained model in the store."""


class Ensemble(ZooModel):
    """Averages member probabilities; ``forward`` returns the logit of that average."""

    config_class = EnsembleConfig
    config: EnsembleConfig
    #: An ensemble has no training of its own: ``cxrzoo train ensemble`` trains the members the
    #: store lacks (:meth:`build_for_training`), then calibrates and saves the combination.
    trains_itself = False

    def __init__(
        self,
        config: EnsembleConfig | None = None,
        *,
        members: Sequence[ZooModel | str] | None = None,
        **overrides: Any,
    ) -> None:
        from cxrzoo import load
        from cxrzoo.store import build_from_config

        if members is not None:
            overrides["members"] = tuple(
                m if isinstance(m, str) else (m.metadata.get("name") or m.architecture) for m in members
            )
            overrides["member_specs"] = ()
        super().__init__(config, **overrides)
        cfg = self.config
        if members is not None and any(not isinstance(m, str) for m in members):
            built = [m if not isinstance(m, str) else load(m) for m in members]
        elif cfg.member_specs:
            built = [
                build_from_config(spec, source=f"ensemble member {name!r}")
                for name, spec in zip(cfg.members, cfg.member_specs, strict=True)
            ]
        else:
            built = []
            for name in cfg.members:
                try:
                    built.append(load(name))
                except StoreError:
                    raise MissingMemberError(
                        f"Ensemble member {name!r} has no trained model in the store. Train it "
                        f"with 'cxrzoo train {name}', or run 'cxrzoo train ensemble', which "
                        f"trains the members it lacks."
                    ) from None
        for name, m in zip(cfg.members, built, strict=True):
            if tuple(m.labels) != tuple(cfg.labels):
                raise ConfigError(
                    f"ensemble member {name!r} predicts {list(m.labels)}, not {list(cfg.labels)}"
                )
        self.members = nn.ModuleList(built)
        specs = tuple({"architecture": m.architecture, "config": m.config.to_dict()} for m in built)
        self.config = self.config.replace(
            member_specs=specs,
            image_size=max(m.config.image_size for m in built),
        )
        w = torch.tensor(cfg.weights if cfg.weights is not None else [1.0] * len(built))
        self.register_buffer("member_weights", w / w.sum(), persistent=False)

    @classmethod
    def build_for_training(cls, config: EnsembleConfig, context: Any) -> Ensemble:
        """Train the members the store lacks (with the run's data and recipe), then combine."""
        members = []
        for name in config.members:
            if context.is_trained(name):
                context.echo(f"Ensemble member {name!r}: using the trained model in the store")
            else:
                context.echo(f"Ensemble member {name!r}: not in the store, training it first")
                context.train(name)
            members.append(context.load(name))
        return cls(config, members=members)

    def training_record(self) -> dict[str, Any]:
        return {"members": list(self.config.members)}

    @classmethod
    def tiny_config(cls) -> EnsembleConfig:
        from cxrzoo.plugins import models

        specs = []
        for name in ("chest_xray_attention", "rare_disease"):
            member_cls = models.get(name)
            specs.append({"architecture": name, "config": member_cls.tiny_config().to_dict()})
        return EnsembleConfig(
            members=("chest_xray_attention", "rare_disease"), member_specs=tuple(specs), image_size=32
        )

    def _member_input(self, member: ZooModel, x: torch.Tensor) -> torch.Tensor:
        # forward() gets one tensor for all members: match each member's channels and size.
        if x.shape[1] != member.config.in_chans:
            x = x.mean(1, keepdim=True).expand(-1, member.config.in_chans, -1, -1)
        size = member.config.image_size
        if x.shape[-1] != size or x.shape[-2] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        return x

    def member_models(self) -> Sequence[ZooModel]:
        """The members, each predicted on its own preprocessing by the inference layer."""
        return tuple(self.members)

    def combine_members(self, probabilities: Sequence[torch.Tensor]) -> torch.Tensor:
        """Weighted mean of member probabilities ``[B, labels]`` (or of any ``[B, N]`` member
        outputs, such as flattened Grad-CAM maps)."""
        stacked = torch.stack(list(probabilities))
        return torch.einsum("m,mbl->bl", self.member_weights.to(stacked.dtype), stacked)

    #: The name this method had before the ``ZooModel`` hooks; kept for existing callers.
    combine = combine_members

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.logit(self.combine_members(self.member_probabilities(x)), eps=1e-6)

    def member_probabilities(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [m.probabilities(self._member_input(m, x)) for m in self.members]

    def gradcam_layers(self) -> list[nn.Module]:
        return [layer for m in self.members for layer in m.gradcam_layers()[:1]]
