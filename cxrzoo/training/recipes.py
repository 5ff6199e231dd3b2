"""Training recipes: everything about how a model is trained, by name.

``default`` is the recipe that scored best in our measurements on real NIH images;
``report`` reproduces the founding report's recipe so its numbers can be compared.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from cxrzoo.config import ConfigError, Range, check_fields, coerce


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
    # Which weights the model keeps: ``best`` (the epoch with the best validation AUROC, with
    # early stopping) or ``last`` (every epoch runs and the final weights are kept, the EMA's
    # when ``ema`` is set): the choice for validation sets too small to pick an epoch by.
    select: str = "best"
    # Mixup (Zhang et al., 2018): each batch is blended with a shuffled copy of itself, images
    # and labels alike, by a weight drawn from Beta(mixup, mixup); 0 = off. A regulariser for
    # training sets of a few hundred images.
    mixup: float = 0.0
    calibration: str = "f1"  # f1 | youden: how thresholds are chosen on validation
    # The out-of-distribution gate fitted after training (cxrzoo.ood): the share of validation
    # (in-distribution) images it may flag; 0 = no gate.
    ood_rate: float = 0.05
    eval_batch_size: int = 128
    # Fine-tuning from an --init checkpoint: the tensors loaded from it (label heads excepted)
    # are the backbone. ``freeze_backbone`` trains only the rest (a linear probe when the rest is
    # the head); ``backbone_lr`` multiplies the backbone's learning rate (0.1: gentler updates).
    freeze_backbone: bool = False
    backbone_lr: float = 1.0

    #: Accepted values of each numeric field, checked when a recipe is made or changed, so
    #: that a value which would train the wrong way (a negative clip reverses the gradient)
    #: is refused before any work.
    bounds: ClassVar[dict[str, Range]] = {
        "lr": Range(0.0, 10.0, low_open=True),
        "weight_decay": Range(0.0, 10.0),
        "epochs": Range(1, 100_000),
        "batch_size": Range(1, 65_536),
        "warmup": Range(0.0, 1.0, high_open=True),
        "plateau_patience": Range(0, 10_000),
        "plateau_factor": Range(0.0, 1.0, low_open=True, high_open=True),
        "max_pos_weight": Range(1.0, 1e6),
        "patience": Range(1, 100_000),
        "min_epochs": Range(0, 100_000),
        "accumulate": Range(1, 4096),
        "grad_clip": Range(0.0, 1e9, low_open=True),
        "ema": Range(0.0, 1.0, low_open=True, high_open=True),
        "mixup": Range(0.0, 100.0),
        "ood_rate": Range(0.0, 1.0, high_open=True),
        "eval_batch_size": Range(1, 65_536),
        "backbone_lr": Range(0.0, 10.0, low_open=True),
    }

    def __post_init__(self) -> None:
        check_fields(self, self.bounds, what="recipe")
        choices = {
            "optimizer": ("adamw", "adam", "sgd"),
            "schedule": ("onecycle", "cosine", "plateau", "none"),
            "loss": ("weighted_bce", "bce"),
            "calibration": ("f1", "youden"),
            "select": ("best", "last"),
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"recipe option {key}={getattr(self, key)!r}: expected one of {allowed}")

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

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Recipe:
        """A recipe from its :meth:`to_dict` form (unknown keys refused)."""
        base = cls(name=str(doc.get("name", "default"))) if isinstance(doc, dict) else cls()
        return base.replace(**{k: v for k, v in doc.items() if k != "name"})


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
        raise ConfigError(
            f"Unknown recipe {name!r}.{hint} Known: {', '.join(RECIPES)}, or a recipe file (FILE.json, "
            f"as 'cxrzoo tune' writes)"
        ) from None


# -- recipe files ------------------------------------------------------------------------------
#: The ``format`` of a recipe file (what ``cxrzoo tune --out`` writes, ``--recipe FILE`` reads).
RECIPE_FILE_FORMAT = "cxrzoo-recipe"


@dataclass(frozen=True)
class RecipeFile:
    """A recipe file: a recipe, the model config values it was measured with, and how it was found.

    On disk it is JSON::

        {"format": "cxrzoo-recipe", "version": 1, "model": "chest_xray_attention",
         "recipe": {"name": "...", "lr": 0.002, ...},     # Recipe fields (missing ones: defaults)
         "config": {"flip_tta": true, "image_size": 64},  # model config values
         "search": {...}}                                 # provenance, not read back

    Only ``recipe`` is required; ``config`` values apply as ``--set`` would, below any
    ``--set`` or ``--image-size`` given on the command line.
    """

    recipe: Recipe
    config: dict[str, Any]
    model: str | None = None
    path: str = ""

    def to_dict(self, search: dict[str, Any] | None = None) -> dict[str, Any]:
        doc: dict[str, Any] = {"format": RECIPE_FILE_FORMAT, "version": 1}
        if self.model:
            doc["model"] = self.model
        doc["recipe"] = self.recipe.to_dict()
        doc["config"] = dict(self.config)
        if search is not None:
            doc["search"] = search
        return doc


def is_recipe_file(text: str) -> bool:
    """Whether a ``--recipe`` value names a file rather than a built-in recipe."""
    import os

    return text not in RECIPES and (text.endswith(".json") or os.sep in text or os.path.isfile(text))


def is_recipe_doc(path: Any) -> bool:
    """Whether the file at ``path`` is a recipe file (for the output rules of ``cxrzoo tune``)."""
    import json
    from pathlib import Path

    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    return isinstance(doc, dict) and doc.get("format") == RECIPE_FILE_FORMAT


def read_recipe_file(path: Any) -> RecipeFile:
    """Read a recipe file (see :class:`RecipeFile`); any fault is one line naming ``--recipe``."""
    import json
    from pathlib import Path

    from cxrzoo.errors import DataError

    where = f"--recipe {path}"
    file = Path(path).expanduser()
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{where}: no such file (a recipe name is one of {', '.join(RECIPES)})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{where}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    except ValueError as exc:
        raise DataError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("recipe"), dict):
        raise DataError(f"{where}: expected a JSON object with a \"recipe\" object (as 'cxrzoo tune' writes)")
    if "format" in doc and doc["format"] != RECIPE_FILE_FORMAT:
        raise DataError(f"{where}: format {doc['format']!r} is not {RECIPE_FILE_FORMAT!r}")
    config = doc.get("config", {})
    if not isinstance(config, dict):
        raise DataError(f'{where}: "config" must be a JSON object of model config values')
    model = doc.get("model")
    try:
        recipe = Recipe.from_dict({"name": file.stem, **doc["recipe"]})
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return RecipeFile(recipe, dict(config), model if isinstance(model, str) else None, str(file))
