"""The command-line options that say which data to use, shared by every command that reads data.

``cxrzoo train``, ``crossval``, ``evaluate`` and ``cxrzoo data catalog|split|prepare`` take the
same options::

    --data DIR            a dataset folder; its layout is detected (repeat for several sources)
    --dataset NAME        the reader of --data (one for all, or one per --data), or without
                          --data a registered dataset (default: synthetic)
    --data-option K=V     an option of the dataset(s), e.g. uncertain=ones (repeatable)
    --synthetic-n N       number of synthetic phantoms
    --fraction, --seed    sampling (where the command samples)
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import click

#: Where :func:`data_options` keeps the parsed ``--data-option`` values in the click context.
_META_KEY = "cxrzoo.data_options"


class _Fraction(click.ParamType):
    """A share in (0, 1]: NaN and infinities are refused, which FloatRange lets through."""

    name = "fraction"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        import math

        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number) or not 0 < number <= 1:
            self.fail(f"{value!r} is not in (0, 1]", param, ctx)
        return number


FRACTION = _Fraction()
#: Seeds numpy and torch both accept.
SEED = click.IntRange(0, 2**32 - 1)


def _one_or_many(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> Any:
    values = [v for v in value if v]
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def parse_data_options(pairs: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``("uncertain=ones", "n=40")`` -> ``{"uncertain": "ones", "n": 40}`` (JSON values, else text)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise click.BadParameter(f"{pair!r}: expected KEY=VALUE", param_hint="--data-option")
        key, value = (part.strip() for part in pair.split("=", 1))
        if not key:
            raise click.BadParameter(f"{pair!r}: empty option name", param_hint="--data-option")
        try:
            out[key.replace("-", "_")] = json.loads(value)
        except ValueError:
            out[key.replace("-", "_")] = value
    return out


def data_options(func: Callable[..., Any] | None = None, *, sampling: bool = True) -> Any:
    """The options that say which data to use (see the module), as one click decorator.

    The decorated command receives ``data`` and ``dataset`` (None, one string, or a list when
    repeated), ``synthetic_n`` and, with ``sampling``, ``fraction`` and ``seed``; the
    ``--data-option`` values are kept for :func:`dataset_options`, so commands written before
    that option existed need no new parameter.
    """
    if func is None:
        return functools.partial(data_options, sampling=sampling)

    @functools.wraps(func)
    def wrapper(*args: Any, data_option: tuple[str, ...] = (), **kwargs: Any) -> Any:
        ctx = click.get_current_context(silent=True)
        if ctx is not None:
            ctx.meta[_META_KEY] = parse_data_options(data_option)
        return func(*args, **kwargs)

    options = [
        click.option(
            "--data",
            multiple=True,
            callback=_one_or_many,
            type=click.Path(file_okay=False),
            help="Dataset folder; its layout is detected (NIH Kaggle, CheXpert, MIMIC-CXR-JPG …). "
            "Repeat to train on several sources at once.",
        ),
        click.option(
            "--dataset",
            multiple=True,
            callback=_one_or_many,
            help="Reader of --data (one for all, or one per --data); without --data a registered "
            "dataset (default: synthetic).",
        ),
        click.option(
            "--data-option",
            "data_option",
            multiple=True,
            metavar="KEY=VALUE",
            help="Dataset option, e.g. uncertain=ones (CheXpert/MIMIC -1 labels: ignore, ones, zeros).",
        ),
        click.option(
            "--synthetic-n", type=click.IntRange(min=1), help="Number of synthetic phantoms (default 2000)."
        ),
    ]
    if sampling:
        options += [
            click.option(
                "--fraction",
                type=FRACTION,
                default=1.0,
                show_default=True,
                help="Share of train_val and of test to use, stratified by label.",
            ),
            click.option("--seed", type=SEED, default=0, show_default=True),
        ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


def dataset_options(
    data: Any, dataset: Any, synthetic_n: int | None, data_option: tuple[str, ...] | None = None
) -> dict[str, Any] | None:
    """The dataset options of a command line: ``--data-option`` values and ``--synthetic-n``.

    ``--dataset NAME --data DIR`` forces NAME's reader on DIR; ``--synthetic-n`` only applies to
    the synthetic dataset.
    """
    if data_option is not None:
        options = parse_data_options(data_option)
    else:
        ctx = click.get_current_context(silent=True)
        options = dict(ctx.meta.get(_META_KEY, {})) if ctx is not None else {}
    if synthetic_n is not None:
        names = [dataset] if isinstance(dataset, str) else list(dataset or [])
        if data or any(n != "synthetic" for n in names):
            raise click.UsageError("--synthetic-n only applies to the synthetic dataset")
        options["n"] = synthetic_n
    return options or None


__all__ = ["FRACTION", "SEED", "data_options", "dataset_options", "parse_data_options"]
