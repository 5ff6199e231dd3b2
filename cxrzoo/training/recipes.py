"""Training recipes: everything about how a model is trained, by name.

``default`` is the recipe that scored best in our measurements on real NIH images;
``report`` reproduces the founding report's recipe so its numbers can be compared.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, fields
from typing import Any

from cxrzoo.config import ConfigError, coerce


@dataclass(frozen=True)
class Recipe:
    """How to train. Every field can be overridden from the command line."""

    name: str = "default"
    optimizer: str = "adamw"  # adamw | adam | sgd
    lr: float = 1e-3
    weight_decay: float = 0.05
    epochs: int = 60
    batch_size: int = 32
    schedule: str = "onecycle"  # onecycle | cosine | plateau | none
    warmup: float = 0.1  # share of steps spent warming up (onecycle)
    plateau_patience: int = 2
    plateau_factor: float = 0.5
    loss: str = "weighted_bce"  # weighted_bce | bce
    max_pos_weight: float = 20.0  # bound on the inverse-frequency positive weight
    augment: str | None = "augment_strong"
    patience: int = 15  # early stopping: epochs without a better validation AUROC
    # No early stop before this epoch: one-cycle and cosine schedules do their best work while
    # the learning rate anneals, and small validation sets are noisy before that.
    min_epochs: int = 40
    accumulate: int = 1  # gradient accumulation steps
    grad_clip: float | None = 5.0
    amp: bool = True  # bf16/fp16 autocast on CUDA; ignored on CPU
    channels_last: bool = True  # on CUDA
    compile: bool = False  # torch.compile the model
    ema: float | None = None  # exponential moving average of weights (decay), None = off
    calibration: str = "f1"  # f1 | youden: how thresholds are chosen on validation
    eval_batch_size: int = 128

    def __post_init__(self) -> None:
        choices = {
            "optimizer": ("adamw", "adam", "sgd"),
            "schedule": ("onecycle", "cosine", "plateau", "none"),
            "loss": ("weighted_bce", "bce"),
            "calibration": ("f1", "youden"),
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"recipe option {key}={getattr(self, key)!r}: expected one of {allowed}")
        if self.epochs < 1 or self.batch_size < 1 or self.accumulate < 1:
            raise ConfigError("epochs, batch_size and accumulate must be >= 1")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.ema is not None and not 0 < self.ema < 1:
            raise ConfigError(f"ema must be in (0, 1) or None, got {self.ema}")

    def replace(self, **changes: Any) -> Recipe:
        names = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            close = [m for u in unknown for m in difflib.get_close_matches(u, names, n=1)]
            hint = f" Did you mean {close}?" if close else ""
            raise ConfigError(f"Unknown recipe option(s) {unknown}.{hint} Options: {sorted(names)}")
        hints = typing.get_type_hints(Recipe)
        return dataclasses.replace(self, **{k: coerce(hints[k], v, key=k) for k, v in changes.items()})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


RECIPES: dict[str, Recipe] = {
    "default": Recipe(),
    # The founding report: Adam 1e-4, ReduceLROnPlateau, weighted BCE, batch 32, 224 px, its
    # augmentations (flip, rotation up to 15 degrees, brightness/contrast, resized crop).
    "report": Recipe(
        name="report",
        optimizer="adam",
        lr=1e-4,
        weight_decay=0.0,
        epochs=50,
        batch_size=32,
        schedule="plateau",
        plateau_patience=3,
        plateau_factor=0.1,
        augment="augment_report",
        patience=10,
        min_epochs=1,
        grad_clip=None,
        calibration="f1",
    ),
    # Short and light for CPU demos and tests on the synthetic phantoms.
    "quick": Recipe(
        name="quick", epochs=12, lr=3e-3, weight_decay=1e-4, augment="augment_light", patience=5, min_epochs=4
    ),
}


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        close = difflib.get_close_matches(name, RECIPES, n=2)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"Unknown recipe {name!r}.{hint} Known: {', '.join(RECIPES)}") from None
