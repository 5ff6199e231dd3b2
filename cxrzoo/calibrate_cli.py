"""``cxrzoo calibrate``: guaranteed thresholds and an out-of-distribution gate, no retraining."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from cxrzoo.clickutil import DEVICE, ZooCommand
from cxrzoo.data.options import data_options, dataset_options


def _default_name(name: str, data: Any, dataset: Any) -> str:
    where = data if isinstance(data, str) else (data[0] if data else None)
    source = Path(where).resolve().name if where else (dataset if isinstance(dataset, str) else "synthetic")
    return f"{Path(name).name}-{source}"


@click.command(cls=ZooCommand)
@click.argument("name")
@data_options(sampling=False)
@click.option(
    "--split",
    type=click.Choice(["all", "train", "val", "test"]),
    default="all",
    show_default=True,
    help="The images to calibrate on ('all': every image of the folder).",
)
@click.option(
    "--target",
    metavar="KIND=LEVEL",
    help="Guarantee per finding: sensitivity=0.9, specificity=0.9 or precision=0.8.",
)
@click.option(
    "--confidence",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.9,
    show_default=True,
    help="Probability that the guarantee holds (over the draw of the calibration images).",
)
@click.option("--ood", is_flag=True, help="Fit the out-of-distribution gate on these images.")
@click.option(
    "--rate",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.05,
    show_default=True,
    help="The gate's false-rejection rate: the share of in-distribution images it may flag.",
)
@click.option("--name", "new_name", help="Store name of the calibrated model [NAME-<folder name>].")
@click.option("--force", is_flag=True, help="Replace an existing store entry of that name.")
@click.option("--device", type=DEVICE, help="cpu, cuda, cuda:N, mps … (default: cuda when available).")
@click.option("--no-progress", is_flag=True)
@click.option("--json", "as_json", is_flag=True, help="Print what was calibrated as JSON.")
def calibrate(
    name: str,
    data: Any,
    dataset: Any,
    synthetic_n: int | None,
    split: str,
    target: str | None,
    confidence: float,
    ood: bool,
    rate: float,
    new_name: str | None,
    force: bool,
    device: str | None,
    no_progress: bool,
    as_json: bool,
) -> None:
    """Calibrate trained model NAME on a site's labelled images, without retraining.

    With --target, each finding gets the threshold that keeps the target (e.g. sensitivity
    at least 0.9) with --confidence probability on images like these; findings with too few
    known cases keep their threshold and are named with the count they need. With --ood, an
    out-of-distribution gate is fitted. The result is a new store entry (--name); NAME is
    left as it is.
    """
    import torch

    from cxrzoo import load, store
    from cxrzoo.calibrate import recalibrate
    from cxrzoo.conformal import parse_target
    from cxrzoo.errors import DataError
    from cxrzoo.fsio import check_name

    echo = (lambda m: click.echo(m, err=True)) if as_json else click.echo
    goal = parse_target(target, confidence) if target else None
    if goal is None and not ood:
        raise click.UsageError("Nothing to calibrate: give --target KIND=LEVEL, --ood, or both")
    if not data and not dataset:
        raise click.UsageError("Give the labelled images to calibrate on: --data DIR (or --dataset NAME)")
    new_name = check_name(new_name or _default_name(name, data, dataset), what="--name")
    if not force and (store.model_path(new_name) / store.CONFIG_NAME).is_file():
        raise DataError(
            f"The store already holds {new_name!r}; give another --name, or --force to replace it"
        )
    model = load(name)
    from cxrzoo.data.spec import DataSpec

    spec = DataSpec(
        data=data or None, dataset=dataset or None, options=dataset_options(data, dataset, synthetic_n)
    )
    summary = recalibrate(
        model,
        spec,
        split=split,
        target=goal,
        ood=ood,
        rate=rate,
        device=device or ("cuda" if torch.cuda.is_available() else "cpu"),
        progress=not no_progress and not as_json,
        echo=echo,
    )
    model.metadata["recalibrated"] = {"from": name, "data": spec.to_dict(), "split": split}
    path = store.save(model.cpu(), new_name)
    summary["name"], summary["path"] = new_name, str(path)
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=float))
        return
    guarantees = summary.get("guarantees")
    if guarantees:
        click.echo(f"{guarantees['statement']}, on {guarantees['images']} images ({split} of {spec.name}):")
        for label, g in guarantees["per_finding"].items():
            if g["guaranteed"]:
                click.echo(
                    f"  {label:<20} threshold {g['threshold']:.3f}  ({g['cases']} cases, "
                    f"{g['achieved']:.3f} on them)"
                )
            else:
                click.echo(f"  {label:<20} not guaranteed: {g['reason']}")
    click.echo(f"Saved to {path} (store name {new_name!r})")
