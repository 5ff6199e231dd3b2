"""ensemble: the (optionally weighted) average of its members' probabilities."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cxrzoo import ZooModel
from cxrzoo.config import ConfigError
from cxrzoo.store import StoreError
from cxrzoo_ensemble.config import EnsembleConfig


class MissingMemberError(StoreError):
    """An ensemble member with no trained model in the store."""


def auroc_weights(
    probabilities: Sequence[np.ndarray],
    labels: np.ndarray,
    *,
    prior: np.ndarray,
    pseudo_positives: float = 10.0,
) -> np.ndarray:
    """Per-finding member weights ``[members, findings]`` from validation ranking skill.

    A member's skill on a finding is its validation AUROC above chance (0 at or below 0.5);
    the weights proportional to skill are shrunk towards ``prior`` (the member weights) by
    ``P / (P + pseudo_positives)`` for a finding with P known validation positives, so that a
    ranking of two or three positives moves the weights little. A finding whose validation
    AUROC is undefined (no positives or no negatives) or that no member ranks above chance
    keeps the prior. Each column sums to 1.
    """
    from sklearn.metrics import roc_auc_score

    prior = np.asarray(prior, dtype=np.float64)
    prior = prior / prior.sum()
    n_labels = labels.shape[1]
    weights = np.repeat(prior[:, None], n_labels, axis=1)
    for j in range(n_labels):
        known = ~np.isnan(labels[:, j])
        y = labels[known, j]
        positives = int((y == 1).sum())
        if positives == 0 or positives == len(y):
            continue
        skill = np.array([max(roc_auc_score(y, p[known, j]) - 0.5, 0.0) for p in probabilities])
        if skill.sum() <= 0:
            continue
        share = positives / (positives + pseudo_positives)
        weights[:, j] = share * skill / skill.sum() + (1 - share) * prior
    return weights


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
        if cfg.finding_weights is not None:
            fw = torch.tensor(cfg.finding_weights, dtype=torch.float32)
            self.register_buffer("finding_weights", fw / fw.sum(0, keepdim=True), persistent=False)
        else:
            self.finding_weights = None

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
        if config.weighting == "auroc":
            labels = None
            probabilities = []
            for name, member in zip(config.members, members, strict=True):
                probs, labels = context.validation(member)
                probabilities.append(probs)
                context.echo(f"Ensemble member {name!r}: predicted the validation images for its weights")
            prior = np.asarray(config.weights or [1.0] * len(members), dtype=np.float64)
            weights = auroc_weights(
                probabilities, labels, prior=prior, pseudo_positives=config.weighting_prior
            )
            config = config.replace(
                finding_weights=tuple(tuple(round(float(w), 6) for w in row) for row in weights)
            )
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
        if self.finding_weights is not None and stacked.shape[-1] == self.finding_weights.shape[1]:
            return torch.einsum("ml,mbl->bl", self.finding_weights.to(stacked.dtype), stacked)
        return torch.einsum("m,mbl->bl", self.member_weights.to(stacked.dtype), stacked)

    #: The name this method had before the ``ZooModel`` hooks; kept for existing callers.
    combine = combine_members

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.logit(self.combine_members(self.member_probabilities(x)), eps=1e-6)

    def member_probabilities(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [m.probabilities(self._member_input(m, x)) for m in self.members]

    def gradcam_layers(self) -> list[nn.Module]:
        return [layer for m in self.members for layer in m.gradcam_layers()[:1]]
