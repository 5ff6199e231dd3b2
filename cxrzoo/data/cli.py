"""``cxrzoo data``: catalog, split, synthesise and preprocess datasets from the command line."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

import click

from cxrzoo.clickutil import ZooGroup
from cxrzoo.data.options import data_options


@click.group("data", cls=ZooGroup)
def data() -> None:
    """Datasets: catalog and verify images, sample and split, synthesise, build the preprocessing cache.

    \b
    cxrzoo data catalog ~/nih-chest-xrays --verify
    cxrzoo data catalog --data ~/CheXpert-v1.0-small --data-option uncertain=ones
    cxrzoo data split ~/nih-chest-xrays --fraction 0.05
    cxrzoo data split --data ~/nih-chest-xrays --data ~/CheXpert-v1.0-small
    cxrzoo data synth out/phantoms --n 2000 [--layout chexpert]
    cxrzoo data prepare ~/nih-chest-xrays --image-size 224

    A folder's layout is detected; --dataset NAME forces a reader.
    """


def _echo_json(doc: Any) -> None:
    click.echo(json.dumps(doc, indent=2, default=str))


def _open(specs: tuple[str, ...], data: Any, dataset: Any, synthetic_n: int | None) -> Any:
    """The source named by DATASET arguments and/or the shared data options."""
    from cxrzoo.data.base import open_dataset
    from cxrzoo.data.options import dataset_options
    from cxrzoo.data.spec import as_folders

    options = dataset_options(data or list(specs), dataset, synthetic_n) or {}
    folders = [*specs, *as_folders(data)]
    if not folders and dataset is None:
        raise click.UsageError("Give a DATASET (a folder or a dataset name) or --data DIR")
    if len(folders) > 1:
        return open_dataset(folders, dataset=dataset, **options)
    return open_dataset(folders[0] if folders else None, dataset=dataset, **options)


def _label(specs: tuple[str, ...], data: Any) -> str:
    from cxrzoo.data.spec import as_folders

    return " ".join([*specs, *(f"--data {d}" for d in as_folders(data))])


def _require_images(report: Any, dataset: str) -> Any:
    if not report.images:
        raise click.ClickException(
            f"No usable images in {report.root} ({report.problem_count} problem(s)); "
            f"'cxrzoo data catalog {dataset}' lists them"
        )
    return report


def _progress() -> bool:
    return sys.stderr.isatty()


@data.command("catalog")
@click.argument("specs", metavar="[DATASET]...", nargs=-1)
@data_options(sampling=False)
@click.option("--verify", is_flag=True, help="Decode every image too (slower); leaves out bad ones.")
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Decoding threads [one per CPU].")
@click.option(
    "--limit", type=click.IntRange(min=0), default=10, show_default=True, help="Problems shown per kind."
)
@click.option("--strict", is_flag=True, help="Exit with code 1 when any problem is found.")
def catalog_cmd(
    specs: tuple[str, ...],
    data: Any,
    dataset: Any,
    synthetic_n: int | None,
    verify: bool,
    as_json: bool,
    workers: int | None,
    limit: int,
    strict: bool,
) -> None:
    """Locate every image of DATASET (folders or a dataset name) and report problems by name."""
    report = _open(specs, data, dataset, synthetic_n).catalog(
        verify=verify, workers=workers, progress=_progress()
    )
    if as_json:
        _echo_json(report.to_dict())
    else:
        for line in report.lines(limit=limit):
            click.echo(line)
        for line in report.value_lines(limit=max(limit, 30)):  # what each label value became
            click.echo(line)
    if strict and report.problem_count:
        sys.exit(1)


@data.command("split")
@click.argument("specs", metavar="[DATASET]...", nargs=-1)
@data_options(sampling=False)
@click.option(
    "--fraction",
    type=click.FloatRange(0, 1, min_open=True),
    default=1.0,
    show_default=True,
    help="Share of each list to sample, stratified by label.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--val-fraction",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.2,
    show_default=True,
    help="Share of the sampled train_val list held out, by patient.",
)
@click.option("--verify", is_flag=True, help="Decode every image first and leave out bad ones.")
@click.option("--json", "as_json", is_flag=True, help="Print split sizes and label counts as JSON.")
def split_cmd(
    specs: tuple[str, ...],
    data: Any,
    dataset: Any,
    synthetic_n: int | None,
    fraction: float,
    seed: int,
    val_fraction: float,
    verify: bool,
    as_json: bool,
) -> None:
    """Sample and split DATASET (per source where there are several); prints each split's class
    distribution."""
    from cxrzoo.data.splits import make_splits

    source = _open(specs, data, dataset, synthetic_n)
    label = _label(specs, data) or str(dataset)
    report = source.catalog(verify=verify, progress=_progress())
    _require_images(report, label)
    splits = make_splits(report.table, fraction=fraction, seed=seed, val_fraction=val_fraction)
    if as_json:
        doc = splits.to_dict()
        doc["root"] = str(source.root)
        doc["catalog"] = {"images": report.images, "problem_count": report.problem_count}
        _echo_json(doc)
        return
    if report.problem_count:
        click.echo(
            f"{report.problem_count} catalog problem(s); 'cxrzoo data catalog {label}' lists them", err=True
        )
    click.echo(splits.summary())


def _parse_prevalence(text: str | None) -> str | dict[str, float] | None:
    """``"Hernia=0.1,Edema=0.05"`` -> a mapping; a preset name (``nih``, ``uniform:0.1``) as given."""
    if text is None or "=" not in text:
        return text
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        label, _, value = part.partition("=")
        try:
            out[label.strip()] = float(value)
        except ValueError:
            raise click.BadParameter(f"{part!r}: expected LABEL=NUMBER", param_hint="--prevalence") from None
    return out


@data.command("synth")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--n", "n", type=click.IntRange(min=1), required=True, help="Number of images.")
@click.option(
    "--size", type=click.IntRange(min=16), default=128, show_default=True, help="Image side in pixels."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--prevalence",
    default=None,
    help="Finding prevalence: 'default', 'nih', 'uniform:P', or LABEL=P,... overriding the default.",
)
@click.option(
    "--test-fraction",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.2,
    show_default=True,
    help="Share of patients in test_list.txt (nih14) or valid.csv (chexpert).",
)
@click.option(
    "--layout",
    type=click.Choice(["nih14", "chexpert"]),
    default="nih14",
    show_default=True,
    help="Write as NIH's Kaggle release or as CheXpert-v1.0-small (with uncertain and blank labels).",
)
def synth_cmd(
    out: Path, n: int, size: int, seed: int, prevalence: str | None, test_fraction: float, layout: str
) -> None:
    """Write N synthetic phantoms into OUT in the layout of NIH ChestX-ray14 (Kaggle) or CheXpert."""
    from cxrzoo.data.synthetic import resolve_prevalence, write_layout

    value = _parse_prevalence(prevalence)
    try:
        resolve_prevalence(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--prevalence") from None
    try:
        folder = write_layout(
            out,
            n,
            layout=layout,
            size=size,
            seed=seed,
            prevalence=value,
            test_fraction=test_fraction,
            progress=_progress(),
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Wrote {n} phantoms of {size}x{size} in the {layout} layout to {folder}")


def _split_specs(values: tuple[str, ...]) -> list[str]:
    """Every step of the ``--preprocessing`` values (comma-separated or repeated)."""
    from cxrzoo.specs import split_specs

    return [step for value in values for step in split_specs(value)]


@data.command("prepare")
@click.argument("datasets", metavar="[DATASET]...", nargs=-1)
@data_options(sampling=False)
@click.option("--image-size", type=click.IntRange(min=16), required=True, help="Side of the cached images.")
@click.option(
    "--preprocessing",
    "preprocessing",
    multiple=True,
    help="Steps, comma-separated or repeated (e.g. 'clahe,resize') [the models' default].",
)
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Threads [one per CPU].")
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where caches live [$CXRZOO_HOME/cache].",
)
@click.option("--rebuild", is_flag=True, help="Build again even if a complete cache exists.")
def prepare_cmd(
    datasets: tuple[str, ...],
    data: Any,
    dataset: Any,
    synthetic_n: int | None,
    image_size: int,
    preprocessing: tuple[str, ...],
    workers: int | None,
    cache_dir: Path | None,
    rebuild: bool,
) -> None:
    """Decode and preprocess every image of DATASET once into the on-disk cache."""
    from cxrzoo.config import default_preprocessing
    from cxrzoo.data.cache import build_cache
    from cxrzoo.transforms.base import Preprocessing, parse_spec

    specs = _split_specs(preprocessing) or list(default_preprocessing(image_size))
    if not any(parse_spec(s).name == "scale" for s in specs):
        specs.append("scale")  # tensor steps do not change the cache; Preprocessing needs one
    pre = Preprocessing(specs, image_size=image_size)
    source = _open(datasets, data, dataset, synthetic_n)
    report = source.catalog(progress=_progress())
    table = _require_images(report, _label(datasets, data) or str(dataset)).table
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # failed images are listed below
        cache = build_cache(
            table, pre, cache_dir=cache_dir, workers=workers, progress=_progress(), rebuild=rebuild
        )
    how = (
        f"built in {cache.seconds:.1f} s ({cache.images_per_second:,.0f} images/s)"
        if cache.built
        else "already built; reused"
    )
    click.echo(
        f"Cache of {len(cache)} images of {image_size}x{image_size} ({', '.join(pre.image_specs)}): {how}"
    )
    click.echo(f"  {cache.folder}")
    for name, reason in list(cache.failed.items())[:10]:
        click.echo(f"  failed: {name}: {reason}")
    if len(cache.failed) > 10:
        click.echo(f"  … and {len(cache.failed) - 10} more failed (see {cache.folder / 'index.json'})")
