"""``cxrzoo tune``: search a model's recipe by patient-grouped cross-validation (see
:mod:`cxrzoo.training.tune`)."""

from __future__ import annotations

import click

from cxrzoo.clickutil import DEVICE, ZooCommand
from cxrzoo.data.options import data_options, dataset_options


@click.command(cls=ZooCommand)
@click.argument("model")
@data_options
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False),
    help="Where to write the best recipe (FILE.json, for cxrzoo train --recipe FILE).",
)
@click.option(
    "--trials",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Trials the study should hold.",
)
@click.option(
    "--folds", type=click.IntRange(min=2), default=3, show_default=True, help="Cross-validation folds."
)
@click.option(
    "--budget",
    type=click.FloatRange(min=0, min_open=True),
    metavar="MINUTES",
    help="Start no new trial after this many minutes (a running one finishes).",
)
@click.option(
    "--space",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="JSON search space merged into the default one (see the README: cxrzoo tune).",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Trials run at once (threads); keep 1 on a machine with few cores.",
)
@click.option("--report", type=click.Path(file_okay=False), help="Report folder (default: OUT with .report).")
@click.option(
    "--study", metavar="NAME", help="Study name (default: from the model, the data and the search)."
)
@click.option(
    "--recipe",
    default="default",
    show_default=True,
    help="Base recipe: every field the search leaves alone keeps its value (a name or FILE.json).",
)
@click.option("--image-size", type=click.IntRange(min=16))
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Fix a model config or recipe option, which takes it out of the search.",
)
@click.option("--device", type=DEVICE, help="cpu, cuda, cuda:N, mps … (default: cuda when available).")
@click.option("--overwrite", is_flag=True, help="Replace --out and report files cxrzoo did not write.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def tune(
    model: str,
    data: str | None,
    dataset: str | None,
    synthetic_n: int | None,
    fraction: float,
    seed: int,
    out: str,
    trials: int,
    folds: int,
    budget: float | None,
    space: str | None,
    jobs: int,
    report: str | None,
    study: str | None,
    recipe: str,
    image_size: int | None,
    sets: tuple[str, ...],
    device: str | None,
    overwrite: bool,
    no_progress: bool,
) -> None:
    """Search MODEL's training recipe; write the best one to --out.

    Each trial is scored by patient-grouped K-fold cross-validation of the training patients
    (the test list is never used); trials whose running fold mean falls below the median are
    pruned. The study is kept under $CXRZOO_HOME/tune: run the same command again, with more
    --trials, to continue it.
    """
    from cxrzoo.training.cli import _settings
    from cxrzoo.training.tune import tune_model

    options = dataset_options(data, dataset, synthetic_n)
    config, recipe_overrides = _settings(model, image_size, None, None, None, sets)
    tune_model(
        model,
        out=out,
        trials=trials,
        folds=folds,
        budget=budget,
        space=space,
        jobs=jobs,
        report=report,
        study=study,
        overwrite=overwrite,
        echo=click.echo,
        progress=not no_progress,
        recipe=recipe,
        recipe_overrides=recipe_overrides,
        config_overrides=config,
        data=data,
        dataset=dataset,
        dataset_options=options,
        fraction=fraction,
        seed=seed,
        device=device,
    )
