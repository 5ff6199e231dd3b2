"""The config of ``ensemble``: plain data, no torch, so that ``cxrzoo info ensemble`` and
config checks stay fast."""

from __future__ import annotations

from dataclasses import dataclass

from cxrzoo.config import ConfigError, ModelConfig

DEFAULT_MEMBERS = ("advanced_resnet", "chest_xray_attention", "rare_disease")


@dataclass(frozen=True)
class EnsembleConfig(ModelConfig):
    """``members`` are store names of trained models; ``weights`` (optional) weigh their
    probabilities. ``member_specs`` records each member's architecture and config once the
    ensemble is built, so a saved ensemble is self-contained."""

    members: tuple[str, ...] = DEFAULT_MEMBERS
    weights: tuple[float, ...] | None = None
    member_specs: tuple[dict, ...] = ()

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
        if self.member_specs and len(self.member_specs) != len(self.members):
            raise ConfigError(f"{len(self.member_specs)} member_specs for {len(self.members)} members")
