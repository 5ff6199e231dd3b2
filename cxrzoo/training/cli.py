"""``cxrzoo train`` and ``cxrzoo crossval``."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import click

from cxrzoo.clickutil import DEVICE, ZooCommand
from cxrzoo.data.options import data_options, dataset_options


def split_settings(
    pairs: tuple[str, ...], config_fields: set[str], recipe_fields: set[str]
) -> tuple[dict[str, str], dict[str, str]]:
    """Route ``--set KEY=VALUE`` to the model config or the training recipe."""
    config, recipe = {}, {}
    for pair in pairs:
        if "=" not in pair:
            raise click.BadParameter(f"{pair!r}: expected KEY=VALUE", param_hint="--set")
        key, value = pair.split("=", 1)
        key = key.strip().replace("-", "_")
        if key in config_fields:
            config[key] = value
        elif key in recipe_fields:
            recipe[key] = value
        else:
            import difflib

            close = difflib.get_close_matches(key, sorted(config_fields | recipe_fields), n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise click.BadParameter(
                f"{key!r} is neither a model config option nor a recipe option.{hint} "
                f"Model: {', '.join(sorted(config_fields))}. Recipe: {', '.join(sorted(recipe_fields))}.",
                param_hint="--set",
            )
    return config, recipe


def _settings(
    model: str,
    image_size: int | None,
    epochs: int | None,
    batch_size: int | None,
    lr: float | None,
    sets: tuple[str, ...],
) -> tuple[dict[str, Any], dict[str, Any]]:
    from cxrzoo.plugins import models
    from cxrzoo.training.recipes import Recipe

    cls = models.get(model)
    config_fields = {f.name for f in dataclasses.fields(cls.config_class)}
    recipe_fields = {f.name for f in dataclasses.fields(Recipe)} - {"name"}
    config, recipe = split_settings(sets, config_fields, recipe_fields)
    if image_size is not None:
        config["image_size"] = image_size
    for key, value in (("epochs", epochs), ("batch_size", batch_size), ("lr", lr)):
        if value is not None:
            recipe[key] = value
    return config, recipe


@click.command(cls=ZooCommand)
@click.argument("model")
@data_options
@click.option(
    "--recipe",
    default="default",
    show_default=True,
    help="default, report (the founding report's), quick, or a recipe file (FILE.json, as cxrzoo tune "
    "writes: its recipe and model config values).",
)
@click.option("--epochs", type=click.IntRange(min=1))
@click.option("--image-size", type=click.IntRange(min=16))
@click.option("--batch-size", type=click.IntRange(min=1))
@click.option("--lr", type=float, help="Peak learning rate.")
@click.option("--device", type=DEVICE, help="cpu, cuda, cuda:N, mps … (default: cuda when available).")
@click.option("--name", help="Store name (default: MODEL).")
@click.option("--resume", is_flag=True, help="Continue a killed run from its last epoch checkpoint.")
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a model config or recipe option, e.g. --set attention=false.",
)
@click.option(
    "--init",
    "init",
    metavar="SOURCE",
    help="Start from these weights: a store name, a checkpoint file (safetensors, or a state-dict "
    "pickle under the allow-list), timm:NAME, torchvision:NAME, hf-hub:ORG/REPO or xrv:NAME.",
)
@click.option("--freeze-backbone", is_flag=True, help="Train only what --init did not load (a linear probe).")
@click.option(
    "--backbone-lr",
    type=float,
    metavar="FACTOR",
    help="Learning rate of the tensors --init loaded, as a factor of --lr (e.g. 0.1).",
)
@click.option(
    "--find-lr",
    is_flag=True,
    help="Learning-rate range test instead of training: print the suggested --lr and a plot path; "
    "saves no model.",
)
@click.option(
    "--find-lr-steps",
    type=click.IntRange(min=10),
    default=200,
    show_default=True,
    help="Steps of the --find-lr sweep.",
)
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def train(
    model: str,
    data: str | None,
    dataset: str | None,
    synthetic_n: int | None,
    fraction: float,
    seed: int,
    recipe: str,
    epochs: int | None,
    image_size: int | None,
    batch_size: int | None,
    lr: float | None,
    device: str | None,
    name: str | None,
    resume: bool,
    sets: tuple[str, ...],
    init: str | None,
    freeze_backbone: bool,
    backbone_lr: float | None,
    find_lr: bool,
    find_lr_steps: int,
    no_progress: bool,
) -> None:
    """Train MODEL and save it, calibrated, in the store.

    Without --data it trains on the built-in synthetic phantoms (at 64 px unless
    --image-size says otherwise).
    """
    from cxrzoo.training.run import train_model

    options = dataset_options(data, dataset, synthetic_n)
    config, recipe_overrides = _settings(model, image_size, epochs, batch_size, lr, sets)
    if freeze_backbone:
        recipe_overrides["freeze_backbone"] = True
    if backbone_lr is not None:
        recipe_overrides["backbone_lr"] = backbone_lr
    # What the run is: the same for a learning-rate range test and for training.
    run = {
        "data": data,
        "dataset": dataset,
        "dataset_options": options,
        "fraction": fraction,
        "seed": seed,
        "recipe": recipe,
        "recipe_overrides": recipe_overrides,
        "config_overrides": config,
        "device": device,
        "name": name,
        "progress": not no_progress,
        "init": init,
    }
    if find_lr:
        from cxrzoo.training.lr_finder import find_lr as range_test

        if resume:
            raise click.UsageError("--find-lr trains no model to resume; drop --resume")
        range_test(model, steps=find_lr_steps, echo=click.echo, **run)
        return
    train_model(model, resume=resume, echo=click.echo, **run)


@click.command(cls=ZooCommand)
@click.argument("model")
@data_options
@click.option("--folds", type=click.IntRange(min=2), default=5, show_default=True)
@click.option(
    "--recipe", default="default", show_default=True, help="A recipe name or a recipe file (FILE.json)."
)
@click.option("--epochs", type=click.IntRange(min=1))
@click.option("--image-size", type=click.IntRange(min=16))
@click.option("--batch-size", type=click.IntRange(min=1))
@click.option("--lr", type=float)
@click.option("--device", type=DEVICE, help="cpu, cuda, cuda:N, mps … (default: cuda when available).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE")
@click.option("--json", "as_json", is_flag=True)
@click.option("--no-progress", is_flag=True)
def crossval(
    model: str,
    data: str | None,
    dataset: str | None,
    synthetic_n: int | None,
    fraction: float,
    seed: int,
    folds: int,
    recipe: str,
    epochs: int | None,
    image_size: int | None,
    batch_size: int | None,
    lr: float | None,
    device: str | None,
    sets: tuple[str, ...],
    as_json: bool,
    no_progress: bool,
) -> None:
    """Patient-grouped k-fold cross-validation of MODEL on the train_val images."""
    from cxrzoo.training.run import crossval_model

    options = dataset_options(data, dataset, synthetic_n)
    config, recipe_overrides = _settings(model, image_size, epochs, batch_size, lr, sets)
    echo = (lambda _m: None) if as_json else click.echo
    result = crossval_model(
        model,
        folds=folds,
        data=data,
        dataset=dataset,
        dataset_options=options,
        fraction=fraction,
        seed=seed,
        recipe=recipe,
        recipe_overrides=recipe_overrides,
        config_overrides=config,
        device=device,
        progress=not no_progress and not as_json,
        echo=echo,
    )
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    mean, std = result["macro_auroc_mean"], result["macro_auroc_std"]
    click.echo(f"{model}: {folds}-fold macro AUROC {mean:.4f} ± {std if std is None else round(std, 4)}")
