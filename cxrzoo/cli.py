"""The ``cxrzoo`` command line."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from cxrzoo.clickutil import ZooGroup

KIND_CHOICES = ("model", "dataset", "transform", "metric", "all")


@click.group(cls=ZooGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cxrzoo")
def main() -> None:
    """cxrzoo: a model zoo for the 14 findings of NIH ChestX-ray14.

    \b
    cxrzoo list                        models, datasets, transforms, metrics
    cxrzoo train rare_disease          train on the built-in synthetic data
    cxrzoo evaluate rare_disease --report out/
    cxrzoo predict rare_disease chest.png
    """


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


@main.command("list")
@click.argument("pattern", required=False)
@click.option("--kind", type=click.Choice(KIND_CHOICES), default="all", show_default=True)
@click.option("--trained", is_flag=True, help="List the trained models in the store instead.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_cmd(pattern: str | None, kind: str, trained: bool, as_json: bool) -> None:
    """List registered plugins (PATTERN is a glob such as '*resnet*')."""
    import fnmatch

    from cxrzoo import plugins, store

    if trained:
        names = [n for n in store.list_trained() if not pattern or fnmatch.fnmatchcase(n, pattern)]
        rows = []
        for name in names:
            row: dict[str, Any] = {"name": name, "path": str(store.model_path(name))}
            try:
                doc = store.read_config(store.model_path(name))
            except store.StoreError as exc:  # one broken entry must not hide the others
                row.update(architecture=None, macro_auroc=None, split=None, error=str(exc))
                rows.append(row)
                continue
            metrics = doc.get("metrics") or {}
            auc = metrics.get("macro_auroc")
            row.update(
                architecture=doc["architecture"],
                macro_auroc=auc if isinstance(auc, int | float) else None,
                split=metrics.get("split"),
            )
            rows.append(row)
        if as_json:
            _echo_json(rows)
            return
        if not rows:
            if pattern and store.list_trained():
                click.echo(
                    f"No trained model matches {pattern!r}. Run 'cxrzoo list --trained' to see them all."
                )
            else:
                click.echo(f"No trained models in {store.models_dir()}. Train one with 'cxrzoo train MODEL'.")
        for r in rows:
            if r.get("error"):
                click.echo(f"{r['name']:<28} {'(unreadable)':<22} {r['error']}")
                continue
            auc = "-" if r["macro_auroc"] is None else f"{r['macro_auroc']:.3f} ({r['split']})"
            click.echo(f"{r['name']:<28} {r['architecture']:<22} macro AUROC {auc}")
        return

    kinds = list(plugins.REGISTRIES) if kind == "all" else [kind]
    out: dict[str, list[dict[str, str]]] = {}
    for k in kinds:
        out[k] = [
            {"name": e.name, "source": e.source, "description": e.description}
            for e in plugins.REGISTRIES[k].entries(pattern)
        ]
    failed = [p for p in plugins.plugin_info() if p.error]
    if failed:
        click.secho(
            f"{len(failed)} plugin(s) failed to load: {', '.join(p.name for p in failed)}. "
            f"Run 'cxrzoo plugins' for details.",
            fg="yellow",
            err=True,
        )
    if as_json:
        _echo_json(out if kind == "all" else out[kind])
        return
    for k, rows in out.items():
        click.secho(f"{k}s ({len(rows)})", bold=True)
        for r in rows:
            click.echo(f"  {r['name']:<24} {r['source']:<24} {r['description']}")


@main.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def info(name: str, as_json: bool) -> None:
    """Describe a registered model, dataset, transform or metric, or a trained model."""
    from cxrzoo import plugins, store

    found: dict[str, Any] = {}
    for kind, registry in plugins.REGISTRIES.items():
        if name in registry:
            e = registry.entry(name)
            found = {"name": name, "kind": kind, "source": e.source, "description": e.description}
            if kind == "model":
                found["config"] = e.obj.config_class().to_dict()
                found["trained"] = name in store.list_trained()
            break
    if not found and name in store.list_trained():
        doc = store.read_config(store.model_path(name))
        found = {"name": name, "kind": "trained model", "path": str(store.model_path(name)), **doc}
    if not found:
        # Reuse the registry's message with close matches.
        plugins.models.get(name)
    if as_json:
        _echo_json(found)
        return
    for key, value in found.items():
        if isinstance(value, dict):
            click.echo(f"{key}:")
            for k, v in value.items():
                click.echo(f"  {k}: {json.dumps(v, default=str)}")
        else:
            click.echo(f"{key}: {value}")


@main.command("plugins")
@click.option("--json", "as_json", is_flag=True)
def plugins_cmd(as_json: bool) -> None:
    """Which plugin packages loaded, their versions, what they registered, and errors."""
    from cxrzoo import plugins

    infos = plugins.plugin_info()
    if as_json:
        _echo_json([{k: v for k, v in i.to_dict().items() if k != "traceback"} for i in infos])
        return
    for i in infos:
        status = click.style("error", fg="red") if i.error else click.style("ok", fg="green")
        dist = f"{i.distribution} {i.version}" if i.distribution else "(in-process)"
        click.echo(f"{i.name:<24} {dist:<32} {status}")
        for kind, names in i.registered.items():
            click.echo(f"    {kind}s: {', '.join(names)}")
        if i.error:
            click.echo(f"    {i.error}")


def _add_commands() -> None:
    from cxrzoo.data.cli import data

    main.add_command(data)
    from cxrzoo.hub_cli import pull, push

    main.add_command(push)
    main.add_command(pull)
    from cxrzoo.training.cli import crossval, train

    main.add_command(train)
    main.add_command(crossval)
    from cxrzoo.reports.cli import compare, evaluate, explain, export, predict

    for cmd in (evaluate, compare, predict, explain, export):
        main.add_command(cmd)


_add_commands()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
