"""``cxrzoo push`` and ``cxrzoo pull``: share model folders through the Hugging Face Hub."""

from __future__ import annotations

import json

import click

from cxrzoo.clickutil import ZooCommand

_TIMEOUT = click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Give up after this long, retries included. Default: $CXRZOO_HUB_TIMEOUT or 60.",
)
_JSON = click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")


@click.command("push", cls=ZooCommand)
@click.argument("name")
@click.argument("repo_id")
@click.option("--revision", metavar="BRANCH", help="Branch to commit to (created if missing). Default: main.")
@click.option("--private", is_flag=True, help="Create the repo as private (only applies when it is new).")
@click.option(
    "--token", metavar="TOKEN", help="Hub token with write access. Default: $HF_TOKEN or the saved login."
)
@click.option("--message", "-m", "--commit-message", "commit_message", metavar="TEXT", help="Commit message.")
@click.option(
    "--create-pr",
    is_flag=True,
    help="Open a pull request against the branch (default main) instead of committing to it.",
)
@_TIMEOUT
@_JSON
def push(
    name: str,
    repo_id: str,
    revision: str | None,
    private: bool,
    token: str | None,
    commit_message: str | None,
    create_pr: bool,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Upload the trained model NAME (a store name or a model folder) to REPO_ID.

    Uploads model.safetensors, config.json and README.md in one commit and prints its id
    (with --create-pr, the pull request's URL and number too).
    """
    from cxrzoo import hub

    result = hub.push(
        name,
        repo_id,
        revision=revision,
        private=private,
        token=token,
        commit_message=commit_message,
        create_pr=create_pr,
        timeout=timeout,
    )
    if as_json:
        data = result.to_dict()
        click.echo(json.dumps({key: data[key] for key in ("repo_id", "revision", "commit", "url", "pr_url")}))
        return
    if create_pr and result.pr_url is None:
        click.echo(
            f"Nothing changed: {result.repo_id}@{result.revision} already holds {name}; no pull request opened"
        )
    elif result.pr_url is not None:
        click.echo(f"Opened pull request #{result.pr_num} on {result.repo_id} with {name}")
        click.echo(f"pr:     {result.pr_url}")
    else:
        click.echo(f"Pushed {name} to {result.repo_id}@{result.revision}")
    click.echo(f"commit: {result.commit}")
    click.echo(f"url:    {result.url}")


@click.command("pull", cls=ZooCommand)
@click.argument("spec", metavar="REPO_ID[@REVISION]")
@click.option(
    "--revision", metavar="REV", help="Branch, tag or commit sha, instead of @REVISION. Default: main."
)
@click.option("--name", help="Store name. Default: the repo's name.")
@click.option(
    "--token", metavar="TOKEN", help="Hub token for private repos. Default: $HF_TOKEN or the saved login."
)
@click.option("--force", is_flag=True, help="Replace a different model of the same store name.")
@_TIMEOUT
@_JSON
def pull(
    spec: str,
    revision: str | None,
    name: str | None,
    token: str | None,
    force: bool,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Download a cxrzoo model from the Hub into the store.

    REPO_ID may start with hf:// or hf-hub:. REVISION is a branch, tag or commit sha (default:
    main). The weights are checked against the sha256 recorded in config.json before anything in
    the store changes.
    """
    from cxrzoo import hub

    folder = hub.pull(
        spec, revision=revision, name=name, token=token, force=force, timeout=timeout, progress=not as_json
    )
    source = hub.source(folder) or {}
    if as_json:
        record = {
            "repo_id": source.get("repo_id"),
            "revision": source.get("revision"),
            "commit": source.get("commit"),
            "sha256": source.get("sha256"),
            "folder": str(folder),
            "name": folder.name,
        }
        click.echo(json.dumps(record))
        return
    shown = f"{spec}@{revision}" if revision and "@" not in spec else spec
    click.echo(f"Pulled {shown} into {folder}")
    click.echo(f"commit: {source.get('commit') or 'unknown'}")
    click.echo(f"sha256: {source.get('sha256')} (verified)")
