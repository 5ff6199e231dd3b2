"""A small in-memory Hugging Face Hub on loopback, for testing push and pull end to end.

It answers the HTTP endpoints that huggingface_hub's own client calls for ``create_repo``,
``create_branch``, ``create_commit`` (README validation, preupload, commit; with
``create_pr=True`` the client adds the query parameter ``create_pr=1`` and the answer carries
``pullRequestUrl``: the commit goes to a new ref ``refs/pr/N`` and the branch is left alone),
``model_info`` /
``repo_info``, ``list_repo_tree`` and file downloads (``hf_hub_download`` /
``snapshot_download``), with the headers and error codes the client keys on. Every file is
uploaded in "regular" mode (base64 inside the commit), so neither LFS nor Xet is involved: no
``X-Xet-*`` header is ever sent and the client falls back to plain HTTP downloads.

Usage::

    with FakeHub(token="hf_good") as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        ...
        hub.commits("org/repo")  # what was pushed

State lives in memory: repos -> branches -> commits -> {path: bytes}; commit ids are sha1 hex.

``fault`` makes every request fail the way a broken server does, to test that the client ends
in bounded time with one clear line (set it after the fixtures a test needs are in place):

- ``"hang"``: accept the connection, read the request, never answer (until the server stops);
- ``"http500"``: answer HTTP 500 with an error message;
- ``"badjson"``: answer 200 with a body that is cut off in the middle of its JSON.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import yaml

INVALID_TOKEN_MESSAGE = "Invalid credentials in Authorization header"
FAULTS = ("hang", "http500", "badjson")
_SHA1 = re.compile(r"[0-9a-f]{40}")


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob, as the Hub reports it for regular files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Commit:
    oid: str
    parent: str | None
    message: str
    files: dict[str, bytes]
    #: Paths added or changed by this commit (not the files inherited from its parent).
    changed: set[str]
    deleted: set[str]
    date: str


@dataclass
class PullRequest:
    num: int
    #: The branch the pull request proposes to change.
    target: str
    title: str

    @property
    def ref(self) -> str:
        return f"refs/pr/{self.num}"


@dataclass
class Repo:
    repo_id: str
    private: bool
    #: branch -> commit oid of its head
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    #: every commit of the repo by oid
    commits: dict[str, Commit] = field(default_factory=dict)
    #: pull requests by number; their heads are in ``pr_refs``
    pull_requests: dict[int, PullRequest] = field(default_factory=dict)
    #: "refs/pr/N" -> commit oid of the pull request's head
    pr_refs: dict[str, str] = field(default_factory=dict)

    def heads(self) -> dict[str, str]:
        """Refs that can be committed to: branches and pull requests."""
        return {**self.branches, **self.pr_refs}

    def resolve(self, revision: str) -> Commit | None:
        if revision in self.heads():
            return self.commits[self.heads()[revision]]
        if revision in self.tags:
            return self.commits[self.tags[revision]]
        if _SHA1.fullmatch(revision) and revision in self.commits:
            return self.commits[revision]
        return None


class ErrorReply(Exception):
    """An error answer: status, ``X-Error-Code`` and message, as the Hub sends them."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


class FakeHub:
    """The server and its in-memory repositories.

    ``token`` is the only token accepted; a request carrying any other bearer token gets 401.
    Requests without a token may read public repos but not write. ``user`` is the namespace
    ``whoami`` would return (repos may be created in any namespace). ``page_size`` caps the
    entries per page of the tree listing, to exercise the client's ``Link`` pagination.
    """

    def __init__(
        self,
        token: str = "hf_fake_token",
        *,
        user: str = "cxr-lab",
        page_size: int = 1000,
        fault: str | None = None,
    ) -> None:
        self.token = token
        self.user = user
        self.page_size = page_size
        self.fault = fault
        #: Set when the server stops, releasing the requests that "hang" holds.
        self.stopping = threading.Event()
        self.repos: dict[str, Repo] = {}
        #: (method, path with query) of every request, for assertions.
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            fake = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-hub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "the fake hub is not running"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- inspection and fixtures for tests -------------------------------------------------
    def commits(self, repo_id: str, branch: str = "main") -> list[Commit]:
        """The commits reachable from ``branch`` (or a pull request's ``refs/pr/N``), oldest first."""
        with self.lock:
            repo = self.repos[repo_id]
            out = []
            oid: str | None = repo.heads()[branch]
            while oid is not None:
                commit = repo.commits[oid]
                out.append(commit)
                oid = commit.parent
            return out[::-1]

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        with self.lock:
            commit = self.repos[repo_id].resolve(revision)
            assert commit is not None, f"no revision {revision!r} in {repo_id}"
            return dict(commit.files)

    def tamper(self, repo_id: str, path: str, data: bytes, revision: str = "main") -> None:
        """Replace a file's bytes inside an existing commit, as a corrupted storage would."""
        with self.lock:
            commit = self.repos[repo_id].resolve(revision)
            assert commit is not None and path in commit.files
            commit.files[path] = data

    def create_tag(self, repo_id: str, tag: str, revision: str = "main") -> str:
        """Tag the commit ``revision`` points at; returns that commit's id."""
        with self.lock:
            repo = self.repos[repo_id]
            commit = repo.resolve(revision)
            assert commit is not None, f"no revision {revision!r} in {repo_id}"
            repo.tags[tag] = commit.oid
            return commit.oid

    def create_repo(self, repo_id: str, *, private: bool = False) -> Repo:
        """A new repo whose ``main`` holds one commit with ``.gitattributes``, like the Hub's."""
        with self.lock:
            repo = Repo(repo_id=repo_id, private=private)
            self.repos[repo_id] = repo
            first = self._new_commit(
                repo,
                None,
                "initial commit",
                {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"},
                set(),
            )
            repo.branches["main"] = first.oid
            return repo

    def commit_files(
        self, repo_id: str, files: dict[str, bytes], *, branch: str = "main", message: str = "upload"
    ) -> str:
        """Commit ``files`` directly (for repos that a test sets up without the client)."""
        with self.lock:
            repo = self.repos.get(repo_id) or self.create_repo(repo_id)
            parent = repo.commits[repo.branches[branch]]
            commit = self._new_commit(repo, parent, message, {**parent.files, **files}, set())
            commit.changed = set(files)
            repo.branches[branch] = commit.oid
            return commit.oid

    # -- internals -------------------------------------------------------------------------
    def _new_commit(
        self, repo: Repo, parent: Commit | None, message: str, files: dict[str, bytes], deleted: set[str]
    ) -> Commit:
        h = hashlib.sha1()
        h.update((parent.oid if parent else "").encode())
        h.update(message.encode())
        h.update(str(len(repo.commits)).encode())
        for path in sorted(files):
            h.update(path.encode() + b"\0" + git_blob_sha1(files[path]).encode())
        changed = {p for p, data in files.items() if parent is None or parent.files.get(p) != data}
        commit = Commit(
            oid=h.hexdigest(),
            parent=parent.oid if parent else None,
            message=message,
            files=files,
            changed=changed,
            deleted=deleted,
            date=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        )
        repo.commits[commit.oid] = commit
        return commit


class _Handler(BaseHTTPRequestHandler):
    fake: FakeHub
    protocol_version = "HTTP/1.1"  # keep-alive, as the client's connection pool expects

    # Routes: (method, regex on the raw path) -> handler name. Segments stay URL-encoded in the
    # regex so that a branch such as "exp%2Fa" is one segment.
    _NAME = r"(?P<repo>[^/]+/[^/]+)"
    ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = tuple(
        (method, re.compile(pattern), name)
        for method, pattern, name in (
            ("GET", r"/api/whoami-v2", "whoami"),
            ("POST", r"/api/repos/create", "create_repo"),
            ("POST", r"/api/validate-yaml", "validate_yaml"),
            ("GET", rf"/api/models/{_NAME}(?:/revision/(?P<rev>[^/]+))?", "model_info"),
            ("POST", rf"/api/models/{_NAME}/branch/(?P<branch>[^/]+)", "create_branch"),
            ("POST", rf"/api/models/{_NAME}/preupload/(?P<rev>[^/]+)", "preupload"),
            ("POST", rf"/api/models/{_NAME}/commit/(?P<rev>[^/]+)", "commit"),
            ("GET", rf"/api/models/{_NAME}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?", "tree"),
            ("GET", rf"/{_NAME}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
            ("HEAD", rf"/{_NAME}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
        )
    )

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # -- plumbing --------------------------------------------------------------------------
    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        self.query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        self.body = self.rfile.read(length) if length else b""
        with self.fake.lock:
            self.fake.requests.append((method, self.path))
        if self.fake.fault is not None:
            self._fault(self.fake.fault)
            return
        try:
            for route_method, pattern, name in self.ROUTES:
                match = pattern.fullmatch(split.path)
                if route_method == method and match:
                    params = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                    with self.fake.lock:
                        getattr(self, f"_api_{name}")(**params)
                    return
            raise ErrorReply(404, f"No route for {method} {split.path}")
        except ErrorReply as exc:
            self._send_json({"error": exc.message}, status=exc.status, headers=self._error_headers(exc))

    def _fault(self, fault: str) -> None:
        if fault == "hang":
            self.fake.stopping.wait()
            self.close_connection = True
        elif fault == "http500":
            self._send_json(
                {"error": "Internal Error - We're working hard to fix this as soon as possible!"},
                status=500,
                headers={"X-Error-Message": "Internal Error"},
            )
        elif fault == "badjson":
            body = b'{"id": "cxr-lab/cxr-tiny", "sha": "0123'
            self._send(200, body, {"Content-Type": "application/json"}, head=self.command == "HEAD")
        else:
            raise ValueError(f"unknown fault {fault!r}; known: {FAULTS}")

    def _error_headers(self, exc: ErrorReply) -> dict[str, str]:
        headers = {"X-Error-Message": exc.message}
        if exc.code:
            headers["X-Error-Code"] = exc.code
        return headers

    def _send(self, status: int, body: bytes, headers: dict[str, str], *, head: bool = False) -> None:
        self.send_response(status)
        headers = {"Content-Length": str(len(body)), **headers}
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _send_json(self, data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(data).encode()
        self._send(
            status, body, {"Content-Type": "application/json", **(headers or {})}, head=self.command == "HEAD"
        )

    # -- auth and lookups ------------------------------------------------------------------
    def _authenticated(self) -> bool:
        """True for the configured token, False without one; any other token is a 401."""
        auth = self.headers.get("Authorization")
        if not auth:
            return False
        if auth != f"Bearer {self.fake.token}":
            raise ErrorReply(401, INVALID_TOKEN_MESSAGE)
        return True

    def _repo(self, repo_id: str, *, write: bool = False) -> Repo:
        authed = self._authenticated()
        if write and not authed:
            raise ErrorReply(401, "You must be authenticated to write to this repo")
        repo = self.fake.repos.get(repo_id)
        if repo is None or (repo.private and not authed):
            raise ErrorReply(404, "Repository not found", code="RepoNotFound")
        return repo

    def _lookup(self, repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise ErrorReply(404, f"Invalid rev id: {revision}", code="RevisionNotFound")
        return commit

    # -- endpoints -------------------------------------------------------------------------
    def _api_whoami(self) -> None:
        if not self._authenticated():
            raise ErrorReply(401, "Invalid username or password.")
        self._send_json({"type": "user", "name": self.fake.user, "auth": {"accessToken": {"role": "write"}}})

    def _api_create_repo(self) -> None:
        if not self._authenticated():
            raise ErrorReply(401, "You must be authenticated to create a repo")
        payload = json.loads(self.body or b"{}")
        if payload.get("type", "model") not in (None, "model"):
            raise ErrorReply(400, "this fake hub only holds model repos")
        namespace = payload.get("organization") or self.fake.user
        repo_id = f"{namespace}/{payload['name']}"
        url = f"{self.fake.url}/{repo_id}"
        if repo_id in self.fake.repos:
            self._send_json({"error": "You already created this model repo", "url": url}, status=409)
            return
        self.fake.create_repo(repo_id, private=payload.get("visibility") == "private")
        self._send_json({"url": url, "name": repo_id, "id": repo_id})

    def _api_validate_yaml(self) -> None:
        payload = json.loads(self.body or b"{}")
        content = payload.get("content", "")
        match = re.match(r"^\s*---\r?\n([\s\S]*?)\r?\n---", content)
        try:
            meta = yaml.safe_load(match.group(1)) if match else {}
        except yaml.YAMLError as exc:
            self._send_json({"errors": [{"message": f"invalid YAML: {exc}"}]}, status=400)
            return
        if meta is not None and not isinstance(meta, dict):
            self._send_json({"errors": [{"message": "metadata must be a mapping"}]}, status=400)
            return
        self._send_json({"errors": [], "warnings": []})

    def _api_model_info(self, repo: str, rev: str = "main") -> None:
        repository = self._repo(repo)
        commit = self._lookup(repository, rev)
        self._send_json(
            {
                "_id": hashlib.sha1(repo.encode()).hexdigest()[:24],
                "id": repo,
                "modelId": repo,
                "author": repo.split("/")[0],
                "sha": commit.oid,
                "lastModified": commit.date,
                "private": repository.private,
                "disabled": False,
                "gated": False,
                "tags": [],
                "downloads": 0,
                "likes": 0,
                "library_name": "cxrzoo",
                "siblings": [{"rfilename": path} for path in sorted(commit.files)],
            }
        )

    def _api_create_branch(self, repo: str, branch: str) -> None:
        repository = self._repo(repo, write=True)
        if branch in repository.branches:
            raise ErrorReply(409, f"Branch {branch} already exists")
        payload = json.loads(self.body or b"{}")
        start = self._lookup(repository, payload.get("startingPoint") or "main")
        repository.branches[branch] = start.oid
        self._send_json({})

    def _api_preupload(self, repo: str, rev: str) -> None:
        repository = self._repo(repo, write=True)
        head = self._lookup(repository, rev)
        payload = json.loads(self.body or b"{}")
        files = [
            {
                "path": f["path"],
                # Always "regular": the content travels base64-encoded in the commit call, so
                # the client never needs an LFS batch or a Xet upload.
                "uploadMode": "regular",
                "shouldIgnore": False,
                "oid": git_blob_sha1(head.files[f["path"]]) if f["path"] in head.files else None,
            }
            for f in payload.get("files", [])
        ]
        self._send_json({"files": files, "commitOid": head.oid})

    def _api_commit(self, repo: str, rev: str) -> None:
        repository = self._repo(repo, write=True)
        create_pr = self.query.get("create_pr") == "1"
        # A pull request targets a branch; later commits may go to its refs/pr/N.
        if rev not in (repository.branches if create_pr else repository.heads()):
            raise ErrorReply(404, f"Invalid rev id: {rev} is not a branch", code="RevisionNotFound")
        parent = repository.commits[repository.heads()[rev]]
        header: dict[str, Any] = {}
        operations: list[tuple[str, dict[str, Any]]] = []
        for line in self.body.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                header = value
            elif key in ("file", "deletedFile", "deletedFolder"):
                operations.append((key, value))
            else:
                raise ErrorReply(400, f"this fake hub does not accept {key!r} operations (LFS or Xet)")
        parent_commit = header.get("parentCommit")
        if parent_commit and create_pr:
            # The pull request is opened from that commit, as the Hub does.
            base = repository.commits.get(parent_commit)
            if base is None:
                raise ErrorReply(404, f"Invalid parent commit {parent_commit}", code="RevisionNotFound")
            parent = base
        elif parent_commit and parent_commit != parent.oid:
            raise ErrorReply(412, "A commit has happened since. Please refresh and try again.")
        files = dict(parent.files)
        deleted: set[str] = set()
        for key, value in operations:
            if key == "file":
                if value.get("encoding") != "base64":
                    raise ErrorReply(400, f"unsupported encoding {value.get('encoding')!r}")
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                files.pop(value["path"], None)
                deleted.add(value["path"])
            else:
                prefix = value["path"].rstrip("/") + "/"
                for path in [p for p in files if p.startswith(prefix)]:
                    files.pop(path)
                    deleted.add(path)
        commit = self.fake._new_commit(repository, parent, header.get("summary", ""), files, deleted)
        answer = {
            "success": True,
            "commitOid": commit.oid,
            "commitUrl": f"{self.fake.url}/{repo}/commit/{commit.oid}",
            "hookOutput": "",
        }
        if create_pr:
            num = max(repository.pull_requests, default=0) + 1
            pr = PullRequest(num=num, target=rev, title=header.get("summary", ""))
            repository.pull_requests[num] = pr
            repository.pr_refs[pr.ref] = commit.oid
            answer["pullRequestUrl"] = f"{self.fake.url}/{repo}/discussions/{num}"
        elif rev in repository.pr_refs:
            repository.pr_refs[rev] = commit.oid
        else:
            repository.branches[rev] = commit.oid
        self._send_json(answer)

    def _api_tree(self, repo: str, rev: str, path: str = "") -> None:
        repository = self._repo(repo)
        commit = self._lookup(repository, rev)
        recursive = self.query.get("recursive", "false").lower() in ("true", "1")
        prefix = path.strip("/") + "/" if path.strip("/") else ""
        entries: dict[str, dict[str, Any]] = {}
        for file_path in sorted(commit.files):
            if not file_path.startswith(prefix):
                continue
            rest = file_path[len(prefix) :]
            parts = rest.split("/")
            # Folders on the way down, as git trees list them.
            for depth in range(1, len(parts)):
                folder = prefix + "/".join(parts[:depth])
                if depth == 1 or recursive:
                    entries.setdefault(
                        folder,
                        {
                            "type": "directory",
                            "oid": hashlib.sha1(folder.encode()).hexdigest(),
                            "size": 0,
                            "path": folder,
                        },
                    )
                if not recursive:
                    break
            if len(parts) == 1 or recursive:
                data = commit.files[file_path]
                entries[file_path] = {
                    "type": "file",
                    "oid": git_blob_sha1(data),
                    "size": len(data),
                    "path": file_path,
                }
        if prefix and not entries:
            raise ErrorReply(404, f"{path} does not exist on {rev}", code="EntryNotFound")
        listing = list(entries.values())
        start = int(self.query.get("cursor", "0"))
        page = listing[start : start + self.fake.page_size]
        headers = {}
        if start + self.fake.page_size < len(listing):
            query = f"recursive={str(recursive).lower()}&expand=false&cursor={start + self.fake.page_size}"
            next_url = f"{self.fake.url}/api/models/{repo}/tree/{quote(rev, safe='')}"
            if prefix:
                next_url += "/" + quote(prefix.rstrip("/"), safe="")
            headers["Link"] = f'<{next_url}?{query}>; rel="next"'
        self._send_json(page, headers=headers)

    def _api_resolve(self, repo: str, rev: str, path: str) -> None:
        head = self.command == "HEAD"
        repository = self._repo(repo)
        commit = self._lookup(repository, rev)
        if path not in commit.files:
            raise ErrorReply(404, f"Entry not found: {path}", code="EntryNotFound")
        data = commit.files[path]
        headers = {
            "Content-Type": "application/octet-stream",
            "X-Repo-Commit": commit.oid,
            "ETag": f'"{git_blob_sha1(data)}"',
            "Accept-Ranges": "bytes",
        }
        status = 200
        range_header = self.headers.get("Range")
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", range_header or "")
        if match:
            first = int(match.group(1))
            last = int(match.group(2)) if match.group(2) else len(data) - 1
            headers["Content-Range"] = f"bytes {first}-{last}/{len(data)}"
            data = data[first : last + 1]
            status = 206
        self._send(status, data, headers, head=head)
