"""Pushing model folders to the Hugging Face Hub and pulling them into the store.

The only module that talks to the Hub (model cards use huggingface_hub's card-format classes,
see :mod:`cxrzoo.cards`); it imports ``huggingface_hub`` inside functions so that
``import cxrzoo`` stays light. Everything goes through huggingface_hub's own client, which
reads ``HF_TOKEN``; ``HF_ENDPOINT``, ``HF_HUB_OFFLINE`` and the cache location
(``HF_HUB_CACHE`` / ``HF_HOME``) are read here at call time and passed explicitly, because
huggingface_hub reads them once at import.

A pull downloads the snapshot through the Hub's cache, checks that it is a cxrzoo model and
that its weights match the sha256 in its config.json, and only then swaps it into the store,
with a ``source.json`` that records where it came from. Any failure raises :class:`HubError`
with one line saying what went wrong and what to do, and leaves the store as it was.

Every push and pull ends within its timeout (``timeout=``, else ``$CXRZOO_HUB_TIMEOUT``
seconds, default :data:`DEFAULT_TIMEOUT`), however the server behaves and however often the
client retries: for the call, huggingface_hub's HTTP client (``set_client_factory``, its
documented hook) gets a request hook that cuts every request's timeouts to what is left and
refuses requests once the time is up, and the call runs in a worker thread that is given up
at the deadline.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from cxrzoo import store
from cxrzoo.cards import build_model_card  # re-exported: it used to live here
from cxrzoo.errors import DataError, UserError
from cxrzoo.store import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME, IntegrityError, StoreError

R = TypeVar("R")

__all__ = [
    "DEFAULT_TIMEOUT",
    "HUB_PREFIXES",
    "HubError",
    "HubIntegrityError",
    "HubTimeoutError",
    "HubUsageError",
    "PushResult",
    "build_model_card",
    "hub_timeout",
    "is_hub_spec",
    "parse_spec",
    "pull",
    "push",
    "repo_url",
    "resolve_model",
    "source",
]

SOURCE_NAME = "source.json"
#: Seconds a push or pull may take in all, retries included, unless told otherwise.
DEFAULT_TIMEOUT = 60.0
DEFAULT_ENDPOINT = "https://huggingface.co"
DEFAULT_REVISION = "main"
#: Files of a model folder that travel to and from the Hub (source.json never does).
MODEL_FILES = (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME)
#: Prefixes that mark a model name as a Hub repo: cxrzoo's ``hf://`` and timm's ``hf-hub:``.
HUB_PREFIXES = ("hf://", "hf-hub:")

_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
_COMMIT_SHA = re.compile(r"[0-9a-f]{40}")
_TRUE = {"1", "ON", "YES", "TRUE"}


class HubError(StoreError, DataError):
    """A push or pull that failed; the message is one line naming the repo and the remedy."""


class HubIntegrityError(HubError, IntegrityError):
    """Pulled weights whose sha256 differs from the one recorded in their config.json."""


class HubTimeoutError(HubError, TimeoutError):
    """A push or pull that did not finish within its timeout."""


class HubUsageError(HubError, UserError):
    """A push or pull asked for in a way that contradicts itself (two different revisions)."""

    exit_code = UserError.exit_code


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


def hub_timeout(value: float | None = None) -> float:
    """Seconds a push or pull may take: ``value``, else ``$CXRZOO_HUB_TIMEOUT``, else 60."""
    if value is None:
        text = os.environ.get("CXRZOO_HUB_TIMEOUT", "").strip()
        if not text:
            return DEFAULT_TIMEOUT
        try:
            value = float(text)
        except ValueError:
            raise HubError(f"CXRZOO_HUB_TIMEOUT={text!r}: expected a number of seconds, e.g. 60") from None
        if not value > 0 or value == float("inf"):
            raise HubError(f"CXRZOO_HUB_TIMEOUT={text!r}: expected a number of seconds above 0, e.g. 60")
        return value
    if not value > 0 or value == float("inf"):
        raise HubError(f"Invalid Hub timeout {value!r}: expected a number of seconds above 0, e.g. 60")
    return float(value)


def _api(token: str | None) -> Any:
    from huggingface_hub import HfApi

    return HfApi(endpoint=endpoint(), token=token, library_name="cxrzoo", library_version=_version())


def _version() -> str:
    import cxrzoo

    return cxrzoo.__version__


# -- repo ids and revisions -----------------------------------------------------------------
def is_hub_spec(name: str | os.PathLike[str]) -> bool:
    """Whether a model name names a Hub repo: ``hf://org/repo`` or ``hf-hub:org/repo``."""
    return isinstance(name, str) and name.strip().startswith(HUB_PREFIXES)


def parse_spec(spec: str) -> tuple[str, str | None]:
    """Split ``[hf://|hf-hub:]org/repo[@revision]`` into the repo id and the revision (None: main)."""
    text = spec.strip()
    for prefix in HUB_PREFIXES:
        if text.startswith(prefix):
            text = text[len(prefix) :]
            break
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


def _one_revision(repo_id: str, in_spec: str | None, option: str | None, what: str) -> str | None:
    """The revision named by ``REPO@REV`` and/or ``--revision``; both, differing, is an error."""
    if option is not None and not option.strip():
        raise HubUsageError(f"Empty --revision: name the {what}, or leave it out for main")
    if in_spec and option and in_spec != option:
        raise HubUsageError(
            f"Two revisions given for {repo_id}: {in_spec!r} after '@' and {option!r} in --revision; name one"
        )
    return option or in_spec


def resolve_model(
    name_or_spec: str | os.PathLike[str], *, revision: str | None = None, token: str | None = None
) -> Path:
    """The model folder behind a store name, a folder, or ``hf://`` / ``hf-hub:org/repo[@rev]``.

    A Hub repo is pulled (verified) into the store first; a read never replaces a different
    model of the same name, it stores the pull under ``org--repo`` instead. ``revision`` and
    ``token`` only apply to Hub repos.
    """
    if is_hub_spec(name_or_spec):
        return pull(str(name_or_spec), revision=revision, token=token, on_conflict="rename")
    if revision is not None:
        raise HubUsageError(
            f"revision={revision!r} only applies to a Hub repo (hf://ORG/NAME), not to {str(name_or_spec)!r}"
        )
    return store.resolve(name_or_spec)


@dataclass(frozen=True, eq=False)
class PushResult(str):
    """What a push did. Compares and prints as the commit id (what :func:`push` used to return).

    ``revision`` is the branch committed to, or the pull request's ref (``refs/pr/N``) when
    the push opened one; ``url`` is the repo's page at that revision.
    """

    repo_id: str
    revision: str
    commit: str
    url: str
    commit_url: str | None = None
    pr_url: str | None = None
    pr_num: int | None = None

    def __new__(cls, repo_id: str, revision: str, commit: str, *args: Any, **kwargs: Any) -> PushResult:
        return str.__new__(cls, commit)

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``cxrzoo push --json``."""
        return asdict(self)


# -- push -----------------------------------------------------------------------------------
def push(
    name_or_folder: str | os.PathLike[str],
    repo_id: str,
    *,
    revision: str | None = None,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
    create_pr: bool = False,
    timeout: float | None = None,
) -> PushResult:
    """Upload a model folder (a store name or a path) to ``repo_id`` in one commit.

    Creates the repo if needed (``private`` only applies then) and the branch ``revision`` if it
    does not exist yet. Uploads exactly the weights, config.json and the card; the weights are
    checked against their recorded sha256 first, so a damaged folder is never published.
    With ``create_pr`` the commit opens a pull request against ``revision`` (default main; the
    branch must exist) instead of changing it, as huggingface_hub's ``create_pr=True`` does.
    Returns a :class:`PushResult`, equal to the id of the new commit (the branch's current
    commit when nothing changed; then no pull request is opened and ``pr_url`` is None).
    ``timeout`` bounds the whole upload in seconds (default: :func:`hub_timeout`).
    """
    seconds = hub_timeout(timeout)
    repo_id, spec_revision = parse_spec(repo_id)
    revision = _one_revision(repo_id, spec_revision, revision, "branch to push to")
    folder = store.resolve(name_or_folder)
    doc, files = _files_to_push(folder)
    sha = doc["weights"].get("sha256", "")
    message = commit_message or (
        f"Upload {doc['architecture']} with cxrzoo {_version()} (weights sha256 {sha[:12]})"
    )

    def upload() -> Any:
        from huggingface_hub import CommitOperationAdd

        api = _api(token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        # A pull request proposes a change to an existing branch: it never creates one.
        if revision and revision != DEFAULT_REVISION and not create_pr:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        operations = [
            CommitOperationAdd(path_in_repo=name, path_or_fileobj=data) for name, data in files.items()
        ]
        return api.create_commit(
            repo_id, operations, commit_message=message, revision=revision, create_pr=create_pr
        )

    info = _call_hub(upload, "push", repo_id, revision, seconds)
    pr_revision = getattr(info, "pr_revision", None)
    where = pr_revision or revision or DEFAULT_REVISION
    return PushResult(
        repo_id=repo_id,
        revision=where,
        commit=str(info.oid),
        url=repo_url(repo_id, where),
        commit_url=getattr(info, "commit_url", None),
        pr_url=getattr(info, "pr_url", None),
        pr_num=getattr(info, "pr_num", None),
    )


def _files_to_push(folder: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """config.json and the bytes to upload, read once so that what is verified is what is sent."""
    doc = store.read_config(folder)
    weights_name = doc["weights"].get("file", WEIGHTS_NAME)
    weights_path = folder / weights_name
    if not weights_path.is_file():
        raise StoreError(f"{folder}: weights file {weights_name} is missing; nothing to push")
    weights = weights_path.read_bytes()
    store.verify_weights(
        weights,
        doc["weights"].get("sha256"),
        str(weights_path),
        remedy="refusing to push damaged weights. Save or pull the model again.",
    )
    card_path = folder / CARD_NAME
    if card_path.is_file():
        card = card_path.read_bytes()
    else:  # saved with card=False: publish a card anyway, the Hub page needs one
        from cxrzoo.cards import render_card

        card = render_card(None, doc).encode()
    files = {weights_name: weights, CONFIG_NAME: (folder / CONFIG_NAME).read_bytes(), CARD_NAME: card}
    for name, sha in store.sidecar_files(doc).items():
        data = (folder / name).read_bytes()
        store.verify_weights(data, sha, str(folder / name), remedy="refusing to push a damaged file.")
        files[name] = data
    return doc, files


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
    timeout: float | None = None,
    progress: bool = True,
    revision: str | None = None,
) -> Path:
    """Download ``[hf://|hf-hub:]org/repo[@revision]`` into the store and return its folder.

    ``revision`` (after ``@`` or as the keyword; both, differing, is a
    :class:`HubUsageError`) is a branch, tag or commit sha (default: main). The store name defaults to
    the repo's name (``my-lab/cxr-rare-disease`` -> ``cxr-rare-disease``). An entry of that
    name that came from the same repo is updated once the new download is complete and
    verified; any other model there (trained here, or pulled from another repo) is never
    replaced unless ``force``: ``on_conflict="refuse"`` raises, ``"rename"`` stores the pull
    under ``org--repo`` instead (what reads such as ``cxrzoo.load("hf://…")`` do).
    ``timeout`` bounds the download in seconds (default: :func:`hub_timeout`).
    """
    repo_id, spec_revision = parse_spec(spec)
    revision = _one_revision(repo_id, spec_revision, revision, "branch, tag or commit sha to pull")
    seconds = hub_timeout(timeout)
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
    snapshot = Path(
        _call_hub(
            lambda: _download(repo_id, revision, token=token, progress=progress),
            "pull",
            repo_id,
            revision,
            seconds,
        )
    )
    commit = snapshot.name if _COMMIT_SHA.fullmatch(snapshot.name) else None
    doc = _check_model(snapshot, where)
    weights_name = doc["weights"].get("file", WEIGHTS_NAME)
    with store.entry_lock_for(target_name), store.atomic_folder(target) as tmp:
        # Checked again under the lock: another process may have saved there meanwhile.
        if not force and _taken_by_other(target_name, repo_id):
            raise StoreConflictError(
                f"The store entry {target_name!r} was just written by another process "
                f"({_describe_entry(target_name)}); not replacing it"
            )
        sidecars = store.sidecar_files(doc)
        for fname in (CONFIG_NAME, weights_name, CARD_NAME, *sidecars):
            if (snapshot / fname).is_file():
                shutil.copyfile(snapshot / fname, tmp / fname)
        for fname, sha in sidecars.items():
            store.verify_weights(tmp / fname, sha, f"Refusing {fname} of {where}")
        # Verify the copy that will live in the store, before it replaces anything.
        actual = store.verify_weights(
            tmp / weights_name,
            doc["weights"].get("sha256"),
            f"Refusing {weights_name} of {where} (commit {(commit or '?')[:12]})",
            remedy=(
                "the weights were changed after they were saved. The store was not changed; re-push "
                f"the model, or if only your download is damaged, delete {snapshot.parent.parent} and "
                "pull again."
            ),
            error=HubIntegrityError,
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


def _download(repo_id: str, revision: str | None, *, token: str | None, progress: bool = True) -> str:
    """The snapshot folder of ``repo_id`` at ``revision`` in huggingface_hub's cache.

    ``progress=False`` keeps huggingface_hub's progress bars off (``--json`` output is parsed).
    """
    if not progress:
        from huggingface_hub.utils import (
            are_progress_bars_disabled,
            disable_progress_bars,
            enable_progress_bars,
        )

        if not are_progress_bars_disabled():
            disable_progress_bars()
            try:
                return _download(repo_id, revision, token=token)
            finally:
                enable_progress_bars()
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


def download_file(
    repo_id: str, filename: str, *, revision: str | None = None, token: str | None = None
) -> str:
    """One file of a Hub repo (a timm checkpoint, for ``--init timm:NAME``) from huggingface_hub's
    cache, downloaded with its progress bar when missing; offline, one line saying so."""
    from huggingface_hub import hf_hub_download

    where = _where(repo_id, revision)
    try:
        return hf_hub_download(
            repo_id,
            filename,
            revision=revision,
            cache_dir=cache_dir(),
            endpoint=endpoint(),
            token=token,
            local_files_only=offline(),
            etag_timeout=_etag_timeout(),
            library_name="cxrzoo",
            library_version=_version(),
        )
    except Exception as exc:
        address = f"{endpoint()}/{repo_id}/resolve/{revision or 'main'}/{filename}"
        raise HubError(
            f"Cannot download {address} ({_network_reason(exc)}) for {where}; fetch it elsewhere and "
            f"pass it with --file PATH"
        ) from None


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


# -- deadline ---------------------------------------------------------------------------------
class _Deadline:
    """The time left to one push or pull, shared by every request it makes."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self.cancelled = False
        #: The status of the last HTTP answer, to tell "no answer" from "answered 500".
        self.last_status: int | None = None

    def left(self) -> float:
        return 0.0 if self.cancelled else self.end - time.monotonic()


class _OutOfTime(Exception):
    """Raised by the request hook once a call's time is up (not retried by huggingface_hub)."""


#: One push or pull at a time per process: the deadline lives in huggingface_hub's shared client.
_CALL_LOCK = threading.Lock()


@contextmanager
def _deadline_client(deadline: _Deadline) -> Iterator[None]:
    """huggingface_hub's shared HTTP client, for the block, with ``deadline`` on every request.

    Built by the factory that was installed (so a user's proxy or certificate settings stay),
    with explicit timeouts instead of none and two hooks: one cuts each request's timeouts to
    the time left and refuses requests once it is gone; one notes each answer's status.
    """
    from huggingface_hub.utils import _http

    previous = getattr(_http, "_GLOBAL_CLIENT_FACTORY", None) or _http.default_client_factory

    def on_request(request: Any) -> None:
        left = deadline.left()
        if left <= 0:
            raise _OutOfTime(f"no time left for {request.method} {request.url}")
        timeouts = dict(request.extensions.get("timeout") or {})
        request.extensions["timeout"] = {
            key: left if timeouts.get(key) is None else min(float(timeouts[key]), left)
            for key in ("connect", "read", "write", "pool")
        }

    def on_response(response: Any) -> None:
        deadline.last_status = response.status_code

    def factory() -> Any:
        client = previous()
        hooks = client.event_hooks
        client.event_hooks = {
            "request": [*hooks.get("request", []), on_request],
            "response": [*hooks.get("response", []), on_response],
        }
        return client

    _http.set_client_factory(factory)
    try:
        yield
    finally:
        _http.set_client_factory(previous)


def _call_hub(fn: Callable[[], R], action: str, repo_id: str, revision: str | None, seconds: float) -> R:
    """``fn()`` (a call of huggingface_hub), ended after ``seconds`` whatever the server does.

    Errors become one-line :class:`HubError` s. The call runs in a worker thread so that even a
    hang the request hook cannot reach (name resolution, a back-off sleep) is cut at the deadline;
    a worker given up at the deadline finds its next request refused.
    """
    deadline = _Deadline(seconds)
    where = _where(repo_id, revision)
    if not _CALL_LOCK.acquire(timeout=seconds):
        raise HubTimeoutError(
            f"Cannot {action} {where}: another push or pull of this process held the Hub client for "
            f"{seconds:g} s; try again"
        )
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    try:
        with _deadline_client(deadline):
            worker = threading.Thread(target=work, name=f"cxrzoo-hub-{action}", daemon=True)
            worker.start()
            worker.join(seconds)
            if worker.is_alive():
                deadline.cancelled = True
                # Give the worker a moment to notice and stop before the client is swapped back.
                worker.join(min(1.0, seconds))
                raise HubTimeoutError(_timeout_message(action, repo_id, revision, deadline))
    finally:
        _CALL_LOCK.release()
    error = outcome.get("error")
    if error is None:
        return outcome["value"]  # type: ignore[no-any-return]
    if isinstance(error, HubError):
        raise error
    if _out_of_time(error) or (deadline.left() <= 0 and _caused_by_timeout(error)):
        raise HubTimeoutError(_timeout_message(action, repo_id, revision, deadline)) from error
    message = _explain(error, action, repo_id, revision)
    if message is None:
        raise error
    raise HubError(message) from error


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and its causes and contexts, outermost first."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _out_of_time(exc: BaseException) -> bool:
    return any(isinstance(e, _OutOfTime) for e in _chain(exc))


def _caused_by_timeout(exc: BaseException) -> bool:
    import httpx2

    return any(isinstance(e, httpx2.TimeoutException | TimeoutError) for e in _chain(exc))


def _timeout_message(action: str, repo_id: str, revision: str | None, deadline: _Deadline) -> str:
    where = _where(repo_id, revision)
    host = endpoint()
    remedy = "raise it with --timeout or CXRZOO_HUB_TIMEOUT if the Hub is slow, or check HF_ENDPOINT"
    status = deadline.last_status
    if status is not None and status >= 500:
        return (
            f"Cannot {action} {where}: {host} answered HTTP {status}, still after retrying for "
            f"{deadline.seconds:g} s; the Hub has a problem, try again later"
        )
    return f"Cannot {action} {where}: {host} did not answer within {deadline.seconds:g} s; {remedy}"


# -- errors ---------------------------------------------------------------------------------
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
    # An HTTP answer anywhere in the chain (snapshot_download wraps it in LocalEntryNotFoundError):
    # the Hub was reached and said no, which is not "cannot reach".
    http_error = next(
        (e for e in _chain(exc) if isinstance(e, errors.HfHubHTTPError) and e.response is not None), None
    )
    if http_error is not None:
        status = http_error.response.status_code
        detail = _one_line(http_error.server_message or "")
        if status in (401, 403):
            return (
                f"Cannot {action} {where}: {host} rejected the credentials (HTTP {status}"
                + (f": {detail}" if detail else "")
                + f"); {token_hint}"
            )
        if status >= 500:
            return (
                f"Cannot {action} {where}: {host} answered HTTP {status}"
                + (f" ({detail})" if detail else "")
                + "; the Hub has a problem, try again later"
            )
        return f"Cannot {action} {where}: {host} answered HTTP {status}" + (f" ({detail})" if detail else "")
    bad_json = next((e for e in _chain(exc) if isinstance(e, json.JSONDecodeError)), None)
    if bad_json is not None:
        return (
            f"Cannot {action} {where}: {host} sent an answer that is not valid JSON "
            f"({_one_line(str(bad_json))}); check that HF_ENDPOINT is a Hugging Face Hub"
        )
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

    found = [e for e in _chain(exc) if isinstance(e, httpx2.TransportError)]
    return _one_line(str(found[-1])) if found else ""


def _one_line(text: str, limit: int = 200) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
