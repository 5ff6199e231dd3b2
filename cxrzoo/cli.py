"""The ``cxrzoo`` command line.

``list``, ``info`` and ``plugins`` import neither torch nor the models: plugins register their
models lazily and the other commands' modules are imported only when one of them runs, so
these answer at once.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from cxrzoo.clickutil import ZooGroup

KIND_CHOICES = ("model", "dataset", "transform", "metric", "weights", "all")

#: Commands defined in other modules (which import torch), imported when they are run or
#: shown in ``--help``: name -> "module:attribute".
LAZY_COMMANDS = {
    "data": "cxrzoo.data.cli:data",
    "push": "cxrzoo.hub_cli:push",
    "pull": "cxrzoo.hub_cli:pull",
    "train": "cxrzoo.training.cli:train",
    "crossval": "cxrzoo.training.cli:crossval",
    "tune": "cxrzoo.training.tune_cli:tune",
    "evaluate": "cxrzoo.reports.cli:evaluate",
    "compare": "cxrzoo.reports.cli:compare",
    "predict": "cxrzoo.reports.cli:predict",
    "explain": "cxrzoo.reports.cli:explain",
    "export": "cxrzoo.reports.cli:export",
    "calibrate": "cxrzoo.calibrate_cli:calibrate",
    "import": "cxrzoo.import_cli:import_cmd",
    "serve": "cxrzoo.serve.cli:serve",
}


class _Group(ZooGroup):
    """The ``cxrzoo`` group: one-line errors (see :mod:`cxrzoo.clickutil`) and the commands
    of :data:`LAZY_COMMANDS` loaded on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in LAZY_COMMANDS:
            from cxrzoo.registry import import_object

            # No guard: a command whose module cannot be imported is a broken install, and
            # hiding the command would only make that harder to see.
            command = import_object(LAZY_COMMANDS[cmd_name])
            self.add_command(command, cmd_name)
        return command


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
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

    from cxrzoo import plugins

    if trained:
        from cxrzoo import store

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

    if kind == "weights":
        # The published weights cxrzoo can import (cards in model_cards/), not a registry.
        from cxrzoo import weight_cards

        cards = [
            c for c in weight_cards.list_cards() if not pattern or fnmatch.fnmatchcase(c.source, pattern)
        ]
        if as_json:
            _echo_json([c.to_dict() for c in cards])
            return
        click.secho(f"weights ({len(cards)})", bold=True)
        for c in cards:
            click.echo(f"  {c.source:<34} {c.title}")
        click.echo("Import one with 'cxrzoo import SOURCE'; 'cxrzoo info SOURCE' shows its card.")
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


def _trained_folder(name: str) -> Path | None:
    """The store folder of a trained model ``name``, or None.

    Found without importing :mod:`cxrzoo.store`, which imports torch: the same layout as
    ``store.model_path`` (``$CXRZOO_HOME/models/NAME/config.json``; a test keeps them in step).
    """
    if not name or "/" in name or "\\" in name or name.startswith("."):
        return None
    home = Path(os.environ.get("CXRZOO_HOME") or Path.home() / ".cache" / "cxrzoo").expanduser()
    folder = home / "models" / name
    return folder if (folder / "config.json").is_file() else None


@main.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def info(name: str, as_json: bool) -> None:
    """Describe a registered model, dataset, transform or metric, a trained model, or published
    weights (xrv:densenet121-res224-all, torchvision:resnet50: their card)."""
    from cxrzoo import plugins

    if ":" in name:
        from cxrzoo import weight_cards

        card = weight_cards.get(name)
        if card is not None:
            if as_json:
                _echo_json({**card.to_dict(), "card": card.body})
            else:
                click.echo(card.body.rstrip("\n"))
            return
        known = [c.source for c in weight_cards.list_cards()]
        import difflib

        close = difflib.get_close_matches(name, known, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise click.UsageError(
            f"No card for weights {name!r}.{hint} Run 'cxrzoo list --kind weights' to see them."
        )

    found: dict[str, Any] = {}
    for kind, registry in plugins.REGISTRIES.items():
        if name in registry:
            e = registry.entry(name)
            found = {"name": name, "kind": kind, "source": e.source, "description": e.description}
            if kind == "model":
                # The config class alone: a model registered lazily is not imported for it.
                found["config"] = plugins.model_config_class(name)().to_dict()
                found["trained"] = _trained_folder(name) is not None
            break
    if not found and _trained_folder(name) is not None:
        from cxrzoo import store

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
@click.option(
    "--check",
    is_flag=True,
    help="Import every lazily registered object, to find errors inside plugin modules (slower: imports torch).",
)
def plugins_cmd(as_json: bool, check: bool) -> None:
    """Which plugin packages loaded, their versions, what they registered, and errors.

    Without --check, each lazily registered object's module is only looked up, not imported.
    """
    from cxrzoo import plugins

    infos = plugins.check_plugins(load=check)
    if as_json:
        _echo_json([{k: v for k, v in i.to_dict().items() if k != "traceback"} for i in infos])
        return
    for i in infos:
        bad = i.error or i.problems
        status = click.style("error", fg="red") if bad else click.style("ok", fg="green")
        dist = f"{i.distribution} {i.version}" if i.distribution else "(in-process)"
        click.echo(f"{i.name:<24} {dist:<32} {status}")
        for kind, names in i.registered.items():
            click.echo(f"    {kind}s: {', '.join(names)}")
        if i.error:
            click.echo(f"    {i.error}")
        for problem in i.problems:
            click.echo(f"    {problem}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
