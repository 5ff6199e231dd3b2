"""``cxrzoo import SOURCE``: published weights into the zoo.

A whole chest X-ray classifier (``xrv:NAME``, or any scheme a plugin registers whose loader
returns a model) becomes an ordinary store entry: ``model.safetensors``, ``config.json`` (with
the preprocessing, labels and published thresholds in its config and the source, address,
sha256 of the published file, licence and citation under ``origin``) and ``README.md``. An
ImageNet checkpoint (``timm:NAME``, ``torchvision:NAME``) is a backbone, not a classifier of
findings: it is kept as ``$CXRZOO_HOME/weights/NAME/model.safetensors`` with a ``source.json``,
ready for ``cxrzoo train MODEL --init NAME``.

The source file is read by :func:`cxrzoo.weights.read_checkpoint` before anything is written, so
a refused pickle leaves the store as it was; entries are written atomically.
"""

from __future__ import annotations

import json

import click

from cxrzoo.clickutil import ZooCommand


def default_name(source: str) -> str:
    """``xrv:densenet121-res224-all`` -> ``xrv-densenet121-res224-all``."""
    import re

    scheme, _, rest = source.partition(":")
    rest = rest.removeprefix("//").split("@", 1)[0]
    return re.sub(r"[^A-Za-z0-9._-]+", "-", f"{scheme}-{rest}").strip("-.")[:100]


@click.command("import", cls=ZooCommand)
@click.argument("source")
@click.option(
    "--file",
    "file",
    type=click.Path(exists=True, dir_okay=False),
    help="A local copy of the published file (no download).",
)
@click.option(
    "--name", help="Store name (default: the source with ':' as '-', e.g. xrv-densenet121-res224-all)."
)
@click.option("--overwrite", is_flag=True, help="Replace an existing store entry of that name.")
def import_cmd(source: str, file: str | None, name: str | None, overwrite: bool) -> None:
    """Import published weights SOURCE: xrv:WEIGHTS, timm:MODEL, torchvision:MODEL or hf-hub:REPO[@REV].

    \b
    cxrzoo import xrv:densenet121-res224-all
    cxrzoo import xrv:resnet50-res512-all --file pc-nih-rsna-siim-vin-resnet50-test512-e400-state.pt
    cxrzoo import torchvision:resnet50 --file resnet50-11ad3fa6.pth
    """
    from cxrzoo import store
    from cxrzoo.fsio import atomic_folder, check_name
    from cxrzoo.weights import resolve_source, weights_dir

    name = check_name(name or default_name(source), what="store name")
    if source.startswith(("hf-hub:", "hf:")) and file is None:
        from cxrzoo import hub

        folder = hub.resolve_model(source)
        click.echo(f"Pulled {source} into {folder}")
        return
    target = store.model_path(name)
    if (target / store.CONFIG_NAME).is_file() and not overwrite:
        raise click.UsageError(f"Store entry {name!r} exists ({target}); pass --overwrite or another --name")
    loaded = resolve_source(source, file=file)
    if loaded.model is not None:
        model = loaded.model
        model.metadata["name"] = name  # shown in the card; not saved in config.json
        path = store.save(model, name)
        click.echo(
            f"Imported {source} as {name!r} ({model.architecture}, {len(model.labels)} findings, "
            f"{model.config.image_size} px): {path}"
        )
        return
    folder = weights_dir() / name
    if folder.exists() and not overwrite:
        raise click.UsageError(
            f"Imported weights {name!r} exist ({folder}); pass --overwrite or another --name"
        )
    from safetensors.torch import save_file

    with atomic_folder(folder) as tmp:
        save_file({k: v.contiguous() for k, v in loaded.state.items()}, str(tmp / "model.safetensors"))
        record = {**loaded.provenance, "tensors": len(loaded.state)}
        (tmp / "source.json").write_text(json.dumps(record, indent=2) + "\n")
    click.echo(
        f"Imported {source} as backbone weights {name!r} ({len(loaded.state)} tensors): {folder}; "
        f"start training from them with 'cxrzoo train MODEL --init {name}'"
    )
