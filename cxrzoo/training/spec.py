"""One frozen specification of a training run, resolved once with every default.

``cxrzoo train`` and :func:`cxrzoo.training.train_model` both go through
:func:`resolve_run`, so Python and the command line train the same way: the recipe and its
overrides, the model config and its overrides, the image size used on the synthetic phantoms
when none is given, the preprocessing for that size, the validated store name. Every check
happens here, before any data is read or any folder written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from cxrzoo.config import DEFAULT_PREPROCESSING, ConfigError, ModelConfig, default_preprocessing
from cxrzoo.training.recipes import Recipe, get_recipe, is_recipe_file, read_recipe_file

#: Image size on the synthetic phantoms when none is given: small enough for a CPU.
SYNTHETIC_IMAGE_SIZE = 64


@dataclass(frozen=True)
class RunSpec:
    """Everything a training run needs to know, resolved."""

    model: str
    config: ModelConfig
    recipe: Recipe
    data: Any  # cxrzoo.data DataSpec
    name: str
    seed: int = 0
    device: str | None = None
    resume: bool = False
    save: bool = True
    progress: bool = True
    notes: tuple[str, ...] = field(default=())
    #: The config values asked for (``--set``, ``--image-size``, the synthetic phantoms' size),
    #: as opposed to the config class's defaults.
    config_overrides: dict[str, Any] = field(default_factory=dict)
    #: Weight source the model starts from (``--init``): a store name, a checkpoint file,
    #: ``timm:``/``torchvision:``/``hf-hub:``/``xrv:``; None for a random initialisation.
    init: str | None = None

    @property
    def model_class(self) -> Any:
        from cxrzoo.plugins import models

        return models.get(self.model)

    def to_dict(self) -> dict[str, Any]:
        return {
            "architecture": self.model,
            "config": self.config.to_dict(),
            "recipe": self.recipe.to_dict(),
            "data": self.data.to_dict(),
            "name": self.name,
            "seed": self.seed,
        }


def resolve_run(
    model_name: str,
    *,
    data: str | os.PathLike[str] | list[str | os.PathLike[str]] | None = None,
    dataset: str | None = None,
    dataset_options: dict[str, Any] | None = None,
    fraction: float = 1.0,
    seed: int = 0,
    recipe: str | Recipe = "default",  # a built-in name, a recipe file (FILE.json) or a Recipe
    recipe_overrides: dict[str, Any] | None = None,
    config_overrides: dict[str, Any] | None = None,
    device: str | None = None,
    name: str | None = None,
    resume: bool = False,
    save: bool = True,
    progress: bool = True,
    init: str | None = None,
) -> RunSpec:
    """Resolve a run's every default and check every value; raises before any work."""
    from cxrzoo import store
    from cxrzoo.data.spec import DataSpec, as_data
    from cxrzoo.plugins import models

    cls = models.get(model_name)
    run_name = model_name if name is None else name
    store.model_path(run_name)  # the store entry and the run folder must stay inside the store
    store.run_path(run_name)
    notes = []
    file_config: dict[str, Any] = {}
    if isinstance(recipe, str) and is_recipe_file(recipe):
        # A recipe file (cxrzoo tune --out): its recipe, and the model config values it was
        # measured with, which --set and --image-size still override.
        tuned = read_recipe_file(recipe)
        recipe_obj, file_config = tuned.recipe, tuned.config
        try:
            cls.config_class().replace(**file_config)
        except ConfigError as exc:
            raise ConfigError(f'--recipe {recipe}: its "config": {exc}') from None
        if tuned.model and tuned.model != model_name:
            notes.append(f"Recipe file {recipe} was tuned for {tuned.model}, not {model_name}")
    else:
        recipe_obj = get_recipe(recipe) if isinstance(recipe, str) else recipe
    if recipe_overrides:
        recipe_obj = recipe_obj.replace(**recipe_overrides)
    overrides = {**file_config, **(config_overrides or {})}
    spec = DataSpec(
        data=as_data(data),
        dataset=dataset,
        options=dataset_options,
        fraction=fraction,
        seed=seed,
    )
    if spec.data is None and spec.name == "synthetic":
        notes.append("No --data given: training on the built-in synthetic phantoms (cxrzoo data synth).")
        overrides.setdefault("image_size", SYNTHETIC_IMAGE_SIZE)
    config = cls.config_class().replace(**overrides)
    if init is not None and not cls.trains_itself:
        raise ConfigError(
            f"--init applies to a model trained by gradient descent; {model_name} combines trained "
            f"members: start each member from the checkpoint instead"
        )
    if init is None and (recipe_obj.freeze_backbone or recipe_obj.backbone_lr != 1.0):
        raise ConfigError(
            "freeze_backbone and backbone_lr need --init: the backbone is what the checkpoint loads"
        )
    if (
        cls.trains_itself
        and "preprocessing" not in overrides
        and config.preprocessing == DEFAULT_PREPROCESSING
    ):
        # A model that keeps the core default gets the one for its input size; a model whose
        # plugin chose its own preprocessing, a --set preprocessing=..., and a composite (its
        # members preprocess for themselves) are left as they are.
        config = config.replace(preprocessing=default_preprocessing(config.image_size))
    return RunSpec(
        model=model_name,
        config=config,
        recipe=recipe_obj,
        data=spec,
        name=run_name,
        seed=seed,
        device=device,
        resume=resume,
        save=save,
        progress=progress,
        notes=tuple(notes),
        config_overrides=overrides,
        init=init,
    )


__all__ = ["SYNTHETIC_IMAGE_SIZE", "RunSpec", "resolve_run"]
