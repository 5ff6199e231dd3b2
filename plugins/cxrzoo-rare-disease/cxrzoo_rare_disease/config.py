"""The config of ``rare_disease``: plain data, no torch, so that ``cxrzoo info rare_disease`` and
config checks stay fast."""

from __future__ import annotations

from dataclasses import dataclass

from cxrzoo.config import ConfigError, ModelConfig, weight_source
from cxrzoo.labels import DEFAULT_RARE, RARE_PREVALENCE, rare_labels


@dataclass(frozen=True)
class RareDiseaseConfig(ModelConfig):
    """Architecture of :class:`RareDiseaseModel`.

    ``rare_labels`` go to the rare head; with ``adapt_rare`` training adds every finding
    whose training prevalence is below ``rare_prevalence``. The memory bank keeps the
    rare head's input features of the last ``memory_size`` rare-positive examples and
    replays ``replay_size`` of them per step, weighted by ``replay_weight``.
    """

    backbone: str = "resnet34"
    #: Initial backbone weights: False (random), True (timm's own, downloaded) or a weight
    #: source such as timm:resnet50.a1_in1k, torchvision:resnet50 or a checkpoint file.
    pretrained: bool | str = weight_source(False)
    out_indices: tuple[int, ...] = (2, 3, 4)
    feature_dim: int = 128
    rare_labels: tuple[str, ...] = DEFAULT_RARE
    adapt_rare: bool = True
    rare_prevalence: float = RARE_PREVALENCE
    attention: bool = True
    memory_size: int = 512
    replay_size: int = 64
    replay_weight: float = 0.5
    dropout: float = 0.3

    def card_facts(self) -> dict[str, str]:
        return {"rare_labels": ", ".join(self.rare_labels)}

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = [r for r in self.rare_labels if r not in self.labels]
        if unknown:
            raise ConfigError(f"rare_labels {unknown} are not among the labels {list(self.labels)}")
        if not self.rare_labels or len(self.rare_labels) == len(self.labels):
            raise ConfigError("rare_labels must hold some, but not all, of the labels")
        if self.memory_size < 0 or self.replay_size < 0 or self.replay_weight < 0:
            raise ConfigError("memory_size, replay_size and replay_weight must be >= 0")

    def for_data(self, label_prevalence: dict[str, float]) -> RareDiseaseConfig:
        if not self.adapt_rare:
            return self
        rare = rare_labels(
            {k: v for k, v in label_prevalence.items() if k in self.labels},
            threshold=self.rare_prevalence,
            always=self.rare_labels,
        )
        if len(rare) >= len(self.labels):  # keep the common head non-empty
            rare = self.rare_labels
        return self.replace(rare_labels=rare)
