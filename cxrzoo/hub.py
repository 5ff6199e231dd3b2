"""Pushing model folders to the Hugging Face Hub and pulling them into the store.

The only module that imports ``huggingface_hub``; it does so inside functions so that
``import cxrzoo`` stays light. Everything goes through huggingface_hub's own client, which
reads ``HF_TOKEN``; ``HF_ENDPOINT``, ``HF_HUB_OFFLINE`` and the cache location
(``HF_HUB_CACHE`` / ``HF_HOME``) are read here at call time and passed explicitly, because
huggingface_hub reads them once at import.

A pull downloads the snapshot through the Hub's cache, checks that it is a cxrzoo model and
that its weights match the sha256 in its config.json, and only then swaps it into the store,
with a ``source.json`` that records where it came from. Any failure raises :class:`HubError`
with one line saying what went wrong and what to do, and leaves the store as it was.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cxrzoo import store
from cxrzoo.store import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME, IntegrityError, StoreError

SOURCE_NAME = "source.json"
DEFAULT_ENDPOINT = "https://huggingface.co"
DEFAULT_REVISION = "main"
#: Files of a model folder that travel to and from the Hub (source.json never does).
MODEL_FILES = (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME)

_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
_COMMIT_SHA = re.compile(r"[0-9a-f]{40}")
_TRUE = {"1", "ON", "YES", "TRUE"}


class HubError(StoreError):
    """A push or pull that failed; the message is one line naming the repo and the remedy."""


class HubIntegrityError(HubError, IntegrityError):
    """Pulled weights whose sha256 differs from the one recorded in their config.json."""


# -- environment, read at call time ---------------------------------------------------------
def endpoint() -> str:
    """The Hub to talk to: ``$HF_ENDPOINT`` or huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` forbids network access (pulls are served from the cache)."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    if value.upper() in _TRUE:
        return True
    from huggingface_hub import constants

    return constants.is_offline_mode()


def cache_dir() -> Path | None:
    """huggingface_hub's download cache, or None for its import-time default."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return None


def _etag_timeout() -> float:
    try:
        return float(os.environ.get("HF_HUB_ETAG_TIMEOUT") or 10)
    except ValueError:
        return 10.0


def _api(token: str | None) -> Any:
    from huggingface_hub import HfApi

    return HfApi(endpoint=endpoint(), token=token, library_name="cxrzoo", library_version=_version())


def _version() -> str:
    import cxrzoo

    return cxrzoo.__version__


# -- repo ids and revisions -----------------------------------------------------------------
def parse_spec(spec: str) -> tuple[str, str | None]:
    """Split ``[hf://]org/repo[@revision]`` into the repo id and the revision (None: main)."""
    text = spec.strip()
    if text.startswith("hf://"):
        text = text[len("hf://") :]
    repo_id, sep, revision = text.partition("@")
    repo_id = repo_id.strip("/")
    if not _REPO_ID.fullmatch(repo_id) or "--" in repo_id or ".." in repo_id:
        raise HubError(
            f"Invalid Hub repo {spec!r}: expected ORG/NAME or ORG/NAME@REVISION "
            f"(letters, digits, '-', '_', '.'), e.g. my-lab/cxr-rare-disease@main"
        )
    if sep and not revision:
        raise HubError(f"Invalid Hub repo {spec!r}: nothing after '@'; name a branch, tag or commit sha")
    return repo_id, revision or None


def _where(repo_id: str, revision: str | None) -> str:
    return f"{repo_id}@{revision}" if revision else repo_id


# -- push -----------------------------------------------------------------------------------
def push(
    name_or_folder: str | os.PathLike[str],
    repo_id: str,
    *,
    revision: str | None = None,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Upload a model folder (a store name or a path) to ``repo_id`` in one commit.

    Creates the repo if needed (``private`` only applies then) and the branch ``revision`` if it
    does not exist yet. Uploads exactly the weights, config.json and the card; the weights are
    checked against their recorded sha256 first, so a damaged folder is never published.
    Returns the id of the new commit (the branch's current commit when nothing changed).
    """
    repo_id, spec_revision = parse_spec(repo_id)
    if revision is not None and not revision.strip():
        raise HubError("Empty --revision: name the branch to push to, or leave it out for main")
    if spec_revision and revision and spec_revision != revision:
        raise HubError(f"Two branches given for {repo_id}: {spec_revision!r} and {revision!r}; name one")
    revision = revision or spec_revision
    folder = store.resolve(name_or_folder)
    doc, files = _files_to_push(folder)
    sha = doc["weights"].get("sha256", "")
    message = commit_message or (
        f"Upload {doc['architecture']} with cxrzoo {_version()} (weights sha256 {sha[:12]})"
    )
    with _hub_errors("push", repo_id, revision):
        from huggingface_hub import CommitOperationAdd

        api = _api(token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision and revision != DEFAULT_REVISION:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        operations = [
            CommitOperationAdd(path_in_repo=name, path_or_fileobj=data) for name, data in files.items()
        ]
        info = api.create_commit(repo_id, operations, commit_message=message, revision=revision)
    return str(info.oid)


def _files_to_push(folder: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """config.json and the bytes to upload, read once so that what is verified is what is sent."""
    doc = store.read_config(folder)
    weights_name = doc["weights"].get("file", WEIGHTS_NAME)
    weights_path = folder / weights_name
    if not weights_path.is_file():
        raise StoreError(f"{folder}: weights file {weights_name} is missing; nothing to push")
    weights = weights_path.read_bytes()
    recorded = doc["weights"].get("sha256")
    actual = _sha256(weights)
    if actual != recorded:
        raise IntegrityError(
            f"{weights_path}: sha256 {actual[:12]}… does not match {str(recorded)[:12]}… recorded in "
            f"{CONFIG_NAME}; refusing to push damaged weights. Save or pull the model again."
        )
    card_path = folder / CARD_NAME
    if card_path.is_file():
        card = card_path.read_bytes()
    else:  # saved with card=False: publish a card anyway, the Hub page needs one
        from cxrzoo.cards import render_card

        card = render_card(None, doc).encode()
    return doc, {weights_name: weights, CONFIG_NAME: (folder / CONFIG_NAME).read_bytes(), CARD_NAME: card}


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def repo_url(repo_id: str, revision: str | None = None) -> str:
    """The web page of a repo (at a branch) on the current endpoint."""
    base = f"{endpoint()}/{repo_id}"
    return f"{base}/tree/{revision}" if revision and revision != DEFAULT_REVISION else base


# -- pull -----------------------------------------------------------------------------------
def pull(
    spec: str,
    *,
    name: str | None = None,
    token: str | None = None,
    force: bool = False,
    on_conflict: str = "refuse",
) -> Path:
    """Download ``[hf://]org/repo[@revision]`` into the store and return its folder.

    ``revision`` is a branch, tag or commit sha (default: main). The store name defaults to
    the repo's name (``my-lab/cxr-rare-disease`` -> ``cxr-rare-disease``). An entry of that
    name that came from the same repo is updated once the new download is complete and
    verified; any other model there (trained here, or pulled from another repo) is never
    replaced unless ``force``: ``on_conflict="refuse"`` raises, ``"rename"`` stores the pull
    under ``org--repo`` instead (what reads such as ``cxrzoo.load("hf://…")`` do).
    """
    repo_id, revision = parse_spec(spec)
    if name is not None:
        store.check_name(name, what="store name")
    target_name = name or repo_id.split("/")[1]
    if not force and _taken_by_other(target_name, repo_id):
        alternative = repo_id.replace("/", "--")
        if on_conflict == "rename" and name is None and not _taken_by_other(alternative, repo_id):
            target_name = alternative
        else:
            raise StoreConflictError(
                f"The store already has a model {target_name!r} ({_describe_entry(target_name)}); pulling "
                f"{repo_id} would replace it. Pull with --name OTHER_NAME, or --force to replace it"
            )
    target = store.model_path(target_name)
    where = _where(repo_id, revision)
    with _hub_errors("pull", repo_id, revision):
        snapshot = Path(_download(repo_id, revision, token=token))
    commit = snapshot.name if _COMMIT_SHA.fullmatch(snapshot.name) else None
    doc = _check_model(snapshot, where)
    weights_name = doc["weights"].get("file", WEIGHTS_NAME)
    recorded = doc["weights"].get("sha256")
    with store.entry_lock_for(target_name), store.atomic_folder(target) as tmp:
        # Checked again under the lock: another process may have saved there meanwhile.
        if not force and _taken_by_other(target_name, repo_id):
            raise StoreConflictError(
                f"The store entry {target_name!r} was just written by another process "
                f"({_describe_entry(target_name)}); not replacing it"
            )
        for fname in (CONFIG_NAME, weights_name, CARD_NAME):
            if (snapshot / fname).is_file():
                shutil.copyfile(snapshot / fname, tmp / fname)
        # Verify the copy that will live in the store, before it replaces anything.
        actual = store.sha256_file(tmp / weights_name)
        if actual != recorded:
            raise HubIntegrityError(
                f"Refusing {where} (commit {(commit or '?')[:12]}): sha256 of {weights_name} is "
                f"{actual[:12]}… but {CONFIG_NAME} records {str(recorded)[:12]}…, so the weights were "
                f"changed after they were saved. The store was not changed; re-push the model, or if "
                f"only your download is damaged, delete {snapshot.parent.parent} and pull again."
            )
        source = {
            "repo_id": repo_id,
            "revision": revision or DEFAULT_REVISION,
            "commit": commit,
            "endpoint": endpoint(),
            "sha256": actual,
            "pulled": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        (tmp / SOURCE_NAME).write_text(json.dumps(source, indent=2))
    return target


class StoreConflictError(HubError):
    """A pull that would replace a different model in the store."""

    exit_code = 2


def _entry_source(name: str) -> dict[str, Any] | None:
    try:
        doc = source(store.model_path(name))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else ({} if doc is not None else None)


def _taken_by_other(name: str, repo_id: str) -> bool:
    """Whether store entry ``name`` exists and is not a pull of ``repo_id``."""
    folder = store.model_path(name)
    if not folder.exists():
        return False
    origin = _entry_source(name)
    return origin is None or origin.get("repo_id") != repo_id


def _describe_entry(name: str) -> str:
    origin = _entry_source(name)
    if origin is None:
        return "trained here"
    return f"pulled from {origin.get('repo_id', 'an unknown repo')}" if origin else "of unknown origin"


def source(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Where a pulled model came from (its source.json), or None for a model trained here."""
    path = Path(folder) / SOURCE_NAME
    return json.loads(path.read_text()) if path.is_file() else None


def _download(repo_id: str, revision: str | None, *, token: str | None) -> str:
    """The snapshot folder of ``repo_id`` at ``revision`` in huggingface_hub's cache."""
    import httpx2
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import OfflineModeIsEnabled

    local_only = offline()
    if not local_only and revision and _COMMIT_SHA.fullmatch(revision):
        # For a commit sha snapshot_download skips its own revision lookup and lists the tree
        # with retries and back-off; one plain lookup tells quickly whether the Hub is up and
        # has that commit. Unreachable: fall back to the cache, as snapshot_download would.
        try:
            _api(token).repo_info(repo_id, revision=revision, timeout=_etag_timeout())
        except (httpx2.TransportError, OfflineModeIsEnabled):
            local_only = True
    return snapshot_download(
        repo_id,
        revision=revision,
        cache_dir=cache_dir(),
        endpoint=endpoint(),
        token=token,
        local_files_only=local_only,
        allow_patterns=[CONFIG_NAME, CARD_NAME, "*.safetensors"],
        etag_timeout=_etag_timeout(),
        library_name="cxrzoo",
        library_version=_version(),
    )


def _check_model(snapshot: Path, where: str) -> dict[str, Any]:
    """config.json of a downloaded snapshot, if it is a cxrzoo model with its weights."""
    config_path = snapshot / CONFIG_NAME
    hint = "pull a repo pushed with 'cxrzoo push', or check the repo id and revision"
    if not config_path.is_file():
        raise HubError(f"{where} on {endpoint()} is not a cxrzoo model: it has no {CONFIG_NAME}; {hint}")
    try:
        doc = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise HubError(
            f"{where} on {endpoint()} is not a cxrzoo model: {CONFIG_NAME} is not JSON; {hint}"
        ) from None
    if not isinstance(doc, dict) or doc.get("format") != store.FORMAT:
        raise HubError(
            f"{where} on {endpoint()} is not a cxrzoo model: {CONFIG_NAME} lacks "
            f'"format": "{store.FORMAT}"; {hint}'
        )
    try:
        doc = store.read_config(snapshot)
    except StoreError as exc:
        raise HubError(
            f"{where} on {endpoint()}: {str(exc).replace(str(config_path), CONFIG_NAME)}"
        ) from None
    weights_name = doc["weights"].get("file", WEIGHTS_NAME)
    # The name is joined to local paths: a plain safetensors file name, nothing else.
    if (
        not isinstance(weights_name, str)
        or Path(weights_name).name != weights_name
        or not (weights_name.endswith(".safetensors"))
    ):
        raise HubError(
            f"{where} on {endpoint()}: {CONFIG_NAME} names weights {weights_name!r}; only a safetensors "
            f"file beside {CONFIG_NAME} is accepted"
        )
    if not (snapshot / weights_name).is_file():
        raise HubError(f"{where} on {endpoint()} has no {weights_name}; re-push the model with 'cxrzoo push'")
    if not doc["weights"].get("sha256"):
        raise HubError(
            f"{where} on {endpoint()}: {CONFIG_NAME} records no sha256 for {weights_name}; refusing it"
        )
    return doc


# -- errors ---------------------------------------------------------------------------------
@contextmanager
def _hub_errors(action: str, repo_id: str, revision: str | None) -> Iterator[None]:
    """Turn huggingface_hub's and httpx2's exceptions into one-line :class:`HubError`s."""
    try:
        yield
    except HubError:
        raise
    except Exception as exc:
        message = _explain(exc, action, repo_id, revision)
        if message is None:
            raise
        raise HubError(message) from exc


def _explain(exc: BaseException, action: str, repo_id: str, revision: str | None) -> str | None:
    import httpx2
    from huggingface_hub import errors

    where = _where(repo_id, revision)
    host = endpoint()
    token_hint = "pass --token or set HF_TOKEN" + (" (a token with write access)" if action == "push" else "")
    if isinstance(exc, errors.RevisionNotFoundError):
        return (
            f"Cannot {action} {where}: revision {revision or DEFAULT_REVISION!r} does not exist on {host}; "
            f"name an existing branch, tag or commit sha"
        )
    if isinstance(exc, errors.GatedRepoError):
        return f"Cannot {action} {where}: the repo is gated on {host}; request access on its page, then {token_hint}"
    if isinstance(exc, errors.RepositoryNotFoundError):
        return (
            f"Cannot {action} {where}: no repo {repo_id!r} on {host}, or it is private and the token "
            f"does not grant access; check the repo id, or {token_hint}"
        )
    if isinstance(exc, errors.HfHubHTTPError) and exc.response is not None:
        status = exc.response.status_code
        detail = _one_line(exc.server_message or "")
        if status in (401, 403):
            return (
                f"Cannot {action} {where}: {host} rejected the credentials (HTTP {status}"
                + (f": {detail}" if detail else "")
                + f"); {token_hint}"
            )
        return f"Cannot {action} {where}: {host} answered HTTP {status}" + (f" ({detail})" if detail else "")
    unreachable = (
        errors.LocalEntryNotFoundError,  # snapshot_download: Hub unreachable and not in the cache
        errors.RevisionResolutionError,
        errors.OfflineModeIsEnabled,
        httpx2.TransportError,
    )
    if isinstance(exc, unreachable):
        if action == "pull" and offline():
            return (
                f"Cannot pull {where}: HF_HUB_OFFLINE is set and it is not in the Hugging Face cache "
                f"({cache_dir() or 'default location'}); unset HF_HUB_OFFLINE to download it"
            )
        reason = _network_reason(exc)
        remedy = "check the network and HF_ENDPOINT"
        if action == "pull":
            remedy += ", or set HF_HUB_OFFLINE=1 to use models already in the Hugging Face cache"
        return f"Cannot reach {host} to {action} {where}" + (f" ({reason})" if reason else "") + f"; {remedy}"
    if isinstance(exc, errors.HFValidationError):
        return f"Invalid Hub repo {repo_id!r}: {_one_line(str(exc))}"
    if isinstance(exc, OSError):
        return f"Cannot {action} {where}: {_one_line(str(exc))}; try again"
    return None


def _network_reason(exc: BaseException) -> str:
    """The innermost transport error's text, e.g. '[Errno 111] Connection refused'."""
    import httpx2

    seen: set[int] = set()
    current: BaseException | None = exc
    found: BaseException | None = None
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, httpx2.TransportError):
            found = current
        current = current.__cause__ or current.__context__
    return _one_line(str(found)) if found is not None else ""


def _one_line(text: str, limit: int = 200) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


# -- model cards ----------------------------------------------------------------------------
def build_model_card(
    body: str,
    *,
    model_name: str,
    tags: list[str],
    datasets: list[str] | None = None,
    eval_results: list[dict[str, Any]] | None = None,
    metrics: list[str] | None = None,
) -> str:
    """A README.md: Hub metadata (``ModelCardData`` with ``EvalResult``s) above ``body``.

    ``eval_results`` are ``EvalResult`` keyword arguments; they become the card's
    ``model-index``. The text goes through ``ModelCard`` so it is exactly what the Hub parses.
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    results = [EvalResult(**r) for r in eval_results or []]
    data = ModelCardData(
        license="apache-2.0",
        library_name="cxrzoo",
        pipeline_tag="image-classification",
        tags=tags,
        datasets=datasets,
        metrics=metrics,
        model_name=model_name if results else None,
        eval_results=results or None,
    )
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body.lstrip()}"))
