"""``cxrzoo push`` and ``cxrzoo pull``: share model folders through the Hugging Face Hub."""

from __future__ import annotations

import click

from cxrzoo.clickutil import ZooCommand


@click.command("push", cls=ZooCommand)
@click.argument("name")
@click.argument("repo_id")
@click.option("--revision", metavar="BRANCH", help="Branch to commit to (created if missing). Default: main.")
@click.option("--private", is_flag=True, help="Create the repo as private (only applies when it is new).")
@click.option(
    "--token", metavar="TOKEN", help="Hub token with write access. Default: $HF_TOKEN or the saved login."
)
@click.option("--message", "-m", "commit_message", metavar="TEXT", help="Commit message.")
def push(
    name: str,
    repo_id: str,
    revision: str | None,
    private: bool,
    token: str | None,
    commit_message: str | None,
) -> None:
    """Upload the trained model NAME (a store name or a model folder) to REPO_ID.

    Uploads model.safetensors, config.json and README.md in one commit and prints its id.
    """
    from cxrzoo import hub

    oid = hub.push(
        name, repo_id, revision=revision, private=private, token=token, commit_message=commit_message
    )
    click.echo(f"Pushed {name} to {repo_id}@{revision or hub.DEFAULT_REVISION}")
    click.echo(f"commit: {oid}")
    click.echo(f"url:    {hub.repo_url(repo_id, revision)}")


@click.command("pull", cls=ZooCommand)
@click.argument("spec", metavar="REPO_ID[@REVISION]")
@click.option("--name", help="Store name. Default: the repo's name.")
@click.option(
    "--token", metavar="TOKEN", help="Hub token for private repos. Default: $HF_TOKEN or the saved login."
)
@click.option("--force", is_flag=True, help="Replace a different model of the same store name.")
def pull(spec: str, name: str | None, token: str | None, force: bool) -> None:
    """Download a cxrzoo model from the Hub into the store.

    REVISION is a branch, tag or commit sha (default: main). The weights are checked against the
    sha256 recorded in config.json before anything in the store changes.
    """
    from cxrzoo import hub

    folder = hub.pull(spec, name=name, token=token, force=force)
    source = hub.source(folder) or {}
    click.echo(f"Pulled {spec} into {folder}")
    click.echo(f"commit: {source.get('commit') or 'unknown'}")
    click.echo(f"sha256: {source.get('sha256')} (verified)")
