"""The config of ``ensemble``: plain data, no torch, so that ``cxrzoo info ensemble`` and
config checks stay fast."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from cxrzoo.config import ConfigError, ModelConfig, Range

DEFAULT_MEMBERS = ("advanced_resnet", "chest_xray_attention", "rare_disease")


@dataclass(frozen=True)
class EnsembleConfig(ModelConfig):
    """``members`` are store names of trained models; ``weights`` (optional) weigh their
    probabilities. ``member_specs`` records each member's architecture and config once the
    ensemble is built, so a saved ensemble is self-contained."""

    members: tuple[str, ...] = DEFAULT_MEMBERS
    weights: tuple[float, ...] | None = None
    member_specs: tuple[dict, ...] = ()
    #: ``uniform``: every finding averages the members with ``weights``. ``auroc``: each finding
    #: leans towards the members that rank it best on validation, in proportion to how many
    #: validation positives back that ranking (see ``weighting_prior``).
    weighting: str = "uniform"
    #: Pseudo-positives of the uniform prior: a finding with P validation positives gets
    #: P / (P + weighting_prior) of its weight from validation AUROC, the rest from ``weights``.
    weighting_prior: float = 10.0
    #: Set when the ensemble is built with ``weighting=auroc``: ``[member][finding]``.
    finding_weights: tuple[tuple[float, ...], ...] | None = None

    bounds: ClassVar[dict[str, Range]] = {**ModelConfig.bounds, "weighting_prior": Range(0.0, 1e6)}

    def card_facts(self) -> dict[str, str]:
        """The ``{{ members }}`` section of the ensemble's card: each member and its weight."""
        if not self.members:
            return {"members": "No members recorded."}
        weights = list(self.weights) if self.weights is not None else [1.0] * len(self.members)
        total = sum(weights) or 1.0
        lines = ["| Member | Architecture | Weight |", "|---|---|---:|"]
        for i, name in enumerate(self.members):
            spec = self.member_specs[i] if i < len(self.member_specs) else {}
            arch = spec.get("architecture", "not recorded") if isinstance(spec, dict) else "not recorded"
            lines.append(f"| {name} | `{arch}` | {weights[i] / total:.3f} |")
        if self.finding_weights is not None:
            lines += [
                "",
                "Per-finding weights, from validation AUROC (`weighting=auroc`, "
                f"prior {self.weighting_prior:g} pseudo-positives):",
                "",
                "| Finding | " + " | ".join(self.members) + " |",
                "|---|" + "---:|" * len(self.members),
            ]
            for j, label in enumerate(self.labels):
                cells = " | ".join(f"{row[j]:.2f}" for row in self.finding_weights)
                lines.append(f"| {label} | {cells} |")
        return {"members": "\n".join(lines)}

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.members:
            raise ConfigError("an ensemble needs at least one member")
        if self.weights is not None:
            if len(self.weights) != len(self.members):
                raise ConfigError(f"{len(self.weights)} weights for {len(self.members)} members")
            if any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
                raise ConfigError(f"weights must be >= 0 and not all 0, got {self.weights}")
        if self.weighting not in ("uniform", "auroc"):
            raise ConfigError(f"weighting={self.weighting!r}: expected 'uniform' or 'auroc'")
        if self.finding_weights is not None:
            shape = (len(self.members), len(self.labels))
            rows = self.finding_weights
            if len(rows) != shape[0] or any(len(r) != shape[1] for r in rows):
                raise ConfigError(
                    f"finding_weights: expected {shape[0]} rows of {shape[1]} (members x findings)"
                )
            if any(not (w >= 0) or w == float("inf") for r in rows for w in r):
                raise ConfigError("finding_weights: every weight must be a finite number >= 0")
            if any(sum(col) <= 0 for col in zip(*rows, strict=True)):
                raise ConfigError("finding_weights: each finding needs a member with weight > 0")
        if self.member_specs and len(self.member_specs) != len(self.members):
            raise ConfigError(f"{len(self.member_specs)} member_specs for {len(self.members)} members")
