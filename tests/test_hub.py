"""Push and pull end to end: huggingface_hub's real client against a fake Hub on loopback."""

from __future__ import annotations

import hashlib
import json
import re
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import cxrzoo
from cxrzoo import hub, store
from cxrzoo.errors import DataError
from cxrzoo.hub import HubError, HubIntegrityError
from cxrzoo.hub_cli import pull as pull_command
from cxrzoo.hub_cli import push as push_command
from cxrzoo.store import IntegrityError, StoreError

sys.path.insert(0, str(Path(__file__).parent))
from hub_server import FakeHub

TOKEN = "hf_test_write_token"
REPO = "cxr-lab/cxr-tiny"
MODEL_FILES = {"model.safetensors", "config.json", "README.md"}


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private store and Hugging Face cache, the right token, short timeouts."""
    monkeypatch.setenv("CXRZOO_HOME", str(tmp_path / "cxrzoo"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "3")
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "3")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HUGGINGFACE_HUB_CACHE", "HF_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


@pytest.fixture
def hub_server(env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    # page_size=2 makes every tree listing span several pages (Link header pagination).
    with FakeHub(token=TOKEN, page_size=2) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def tiny_model(seed: int = 0) -> cxrzoo.ZooModel:
    from cxrzoo.plugins import models

    torch.manual_seed(seed)
    return cxrzoo.create_model("chest_xray_attention", models.get("chest_xray_attention").tiny_config())


def save_tiny(name: str = "tiny", seed: int = 0) -> Path:
    return store.save(tiny_model(seed), name)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes), to prove nothing changed."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def store_entries() -> list[str]:
    root = store.models_dir()
    return sorted(p.name for p in root.iterdir() if p.name != ".locks") if root.is_dir() else []


def predictions(model: cxrzoo.ZooModel, seed: int = 123) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(4, model.config.in_chans, model.config.image_size, model.config.image_size, generator=gen)
    return torch.from_numpy(model.predict_proba(x))


# -- push -----------------------------------------------------------------------------------
def test_push_makes_one_commit_with_exactly_the_model_files(hub_server: FakeHub) -> None:
    folder = save_tiny()
    oid = hub.push("tiny", REPO)

    commits = hub_server.commits(REPO)
    assert len(commits) == 2  # the repo's initial commit, then the push
    pushed = commits[-1]
    assert pushed.oid == oid
    assert pushed.changed == MODEL_FILES
    files = hub_server.files(REPO)
    for name in MODEL_FILES:
        assert files[name] == (folder / name).read_bytes()
    assert "source.json" not in files
    assert not hub_server.repos[REPO].private
    # Plain HTTP only: no LFS batch, no Xet.
    assert not [path for _, path in hub_server.requests if "lfs" in path or "xet" in path]


def test_push_private_repo_to_a_new_branch(hub_server: FakeHub) -> None:
    save_tiny()
    oid = hub.push("tiny", REPO, revision="experiment", private=True, commit_message="first try")

    assert hub_server.repos[REPO].private
    assert [c.oid for c in hub_server.commits(REPO, "experiment")][-1] == oid
    assert hub_server.commits(REPO, "experiment")[-1].message == "first try"
    assert len(hub_server.commits(REPO, "main")) == 1  # main untouched


def test_branch_names_with_a_slash(hub_server: FakeHub) -> None:
    original = store.load_folder(save_tiny())
    oid = hub.push("tiny", REPO, revision="exp/small")
    folder = hub.pull(f"{REPO}@exp/small", name="slashed")
    assert hub.source(folder)["commit"] == oid  # type: ignore[index]
    assert torch.equal(predictions(store.load_folder(folder)), predictions(original))


def test_push_unchanged_model_adds_no_commit(hub_server: FakeHub) -> None:
    save_tiny()
    first = hub.push("tiny", REPO)
    second = hub.push("tiny", REPO)
    assert first == second
    assert len(hub_server.commits(REPO)) == 2


def test_push_refuses_damaged_weights(hub_server: FakeHub) -> None:
    folder = save_tiny()
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="sha256"):
        hub.push("tiny", REPO)
    assert REPO not in hub_server.repos


def test_push_of_a_pulled_model_leaves_source_json_behind(hub_server: FakeHub) -> None:
    save_tiny()
    hub.push("tiny", REPO)
    folder = hub.pull(REPO, name="copy")
    assert (folder / "source.json").is_file()
    hub.push("copy", "cxr-lab/cxr-copy")
    assert set(hub_server.files("cxr-lab/cxr-copy")) == MODEL_FILES | {".gitattributes"}


# -- pull -----------------------------------------------------------------------------------
def test_pull_round_trip_predicts_exactly_as_the_original(hub_server: FakeHub) -> None:
    original = store.load_folder(save_tiny())
    oid = hub.push("tiny", REPO)

    folder = hub.pull(REPO, name="pulled")

    assert folder == store.model_path("pulled")
    assert {p.name for p in folder.iterdir()} == MODEL_FILES | {"source.json"}
    pulled = store.load_folder(folder)
    assert torch.equal(predictions(pulled), predictions(original))
    for key, value in original.state_dict().items():
        assert torch.equal(pulled.state_dict()[key], value), key

    source = json.loads((folder / "source.json").read_text())
    assert source["repo_id"] == REPO
    assert source["revision"] == "main"
    assert source["commit"] == oid
    assert source["endpoint"] == hub_server.url
    assert source["sha256"] == json.loads((folder / "config.json").read_text())["weights"]["sha256"]
    assert "T" in source["pulled"] and source["pulled"].endswith("+00:00")
    assert pulled.metadata["source"] == source


def test_the_out_of_distribution_gate_travels_with_push_and_pull(hub_server: FakeHub) -> None:
    from cxrzoo.data.synthetic import generate
    from cxrzoo.ood import fit_detector

    model = tiny_model()
    images, _ = generate(60, size=32, seed=0)
    model.ood_detector = fit_detector(model, list(images[:40]), list(images[40:]))
    store.save(model, "gated")
    hub.push("gated", REPO)
    assert "ood.safetensors" in hub_server.files(REPO)
    pulled = store.load_folder(hub.pull(REPO, name="gated-pulled"))
    assert pulled.ood_detector is not None
    assert pulled.ood_detector.threshold == model.ood_detector.threshold
    np.testing.assert_allclose(
        pulled.ood_detector.precision, store.load_folder(store.model_path("gated")).ood_detector.precision
    )


def test_pull_defaults_to_the_repo_name(hub_server: FakeHub) -> None:
    save_tiny()
    hub.push("tiny", REPO)
    assert hub.pull(f"hf://{REPO}") == store.model_path("cxr-tiny")


def test_load_hf_uri(hub_server: FakeHub) -> None:
    original = store.load_folder(save_tiny())
    oid = hub.push("tiny", REPO, revision="v1")

    model = cxrzoo.load(f"hf://{REPO}@v1")

    assert torch.equal(predictions(model), predictions(original))
    assert model.metadata["source"]["commit"] == oid
    assert model.metadata["source"]["revision"] == "v1"


def test_pinned_revision_pulls_that_revision(hub_server: FakeHub) -> None:
    first_model, second_model, branch_model = (
        store.load_folder(save_tiny(f"m{i}", seed=i)) for i in range(3)
    )
    first = hub.push("m0", REPO)
    hub_server.create_tag(REPO, "v0.1")
    second = hub.push("m1", REPO)
    on_branch = hub.push(f"{store.model_path('m2')}", f"{REPO}@exp")  # a folder, branch in the spec
    assert len({first, second, on_branch}) == 3
    assert hub_server.commits(REPO, "exp")[-1].oid == on_branch

    cases = [
        (first, first_model, first),
        ("v0.1", first_model, first),
        ("main", second_model, second),
        ("exp", branch_model, on_branch),
    ]
    for revision, expected, commit in cases:
        folder = hub.pull(f"{REPO}@{revision}", name=f"at-{revision[:8]}")
        pulled = store.load_folder(folder)
        assert torch.equal(predictions(pulled), predictions(expected)), revision
        source = hub.source(folder)
        assert source is not None
        assert source["commit"] == commit
        assert source["revision"] == revision


def test_tampered_weights_are_refused_and_the_store_is_unchanged(hub_server: FakeHub) -> None:
    save_tiny()
    hub.push("tiny", REPO)
    # An older model already in the store under the name the pull will use.
    existing = save_tiny("victim", seed=5)
    before = snapshot(existing)
    stored = hub_server.files(REPO)["model.safetensors"]
    hub_server.tamper(REPO, "model.safetensors", stored[:-8] + bytes(8))

    with pytest.raises(HubIntegrityError, match="sha256") as info:
        hub.pull(REPO, name="victim", force=True)

    assert isinstance(info.value, IntegrityError) and isinstance(info.value, HubError)
    assert "\n" not in str(info.value)
    assert REPO in str(info.value)
    assert snapshot(existing) == before
    assert store_entries() == ["tiny", "victim"]  # no half-written or temporary folder left


# -- failures -------------------------------------------------------------------------------
def _failing_pull(spec: str, **kwargs: str) -> HubError:
    """Pull ``spec`` over an existing store entry (``force``: allowed to replace it); check it
    fails cleanly, leaving that entry as it was, and return the error."""
    existing = save_tiny("victim", seed=9)
    before, entries = snapshot(existing), store_entries()
    start = time.monotonic()
    with pytest.raises(HubError) as info:
        hub.pull(spec, name="victim", force=True, **kwargs)
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert "\n" not in message and message.strip() == message
    assert snapshot(existing) == before
    assert store_entries() == entries
    return info.value


def test_pull_with_a_wrong_token(hub_server: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    save_tiny()
    hub.push("tiny", REPO)
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    error = _failing_pull(REPO)
    assert "HTTP 401" in str(error) and "HF_TOKEN" in str(error) and REPO in str(error)
    # An explicit token wins over the environment.
    assert hub.pull(REPO, name="ok", token=TOKEN).is_dir()


def test_push_with_a_wrong_token(hub_server: FakeHub) -> None:
    save_tiny()
    with pytest.raises(HubError, match=r"rejected the credentials \(HTTP 401") as info:
        hub.push("tiny", REPO, token="hf_wrong")
    assert "\n" not in str(info.value) and "write access" in str(info.value)
    assert REPO not in hub_server.repos


def test_pull_a_missing_repo(hub_server: FakeHub) -> None:
    error = _failing_pull("cxr-lab/does-not-exist")
    assert "no repo 'cxr-lab/does-not-exist'" in str(error)


@pytest.mark.parametrize("revision", ["no-such-branch", "0123456789abcdef0123456789abcdef01234567"])
def test_pull_a_missing_revision(hub_server: FakeHub, revision: str) -> None:
    save_tiny()
    hub.push("tiny", REPO)
    error = _failing_pull(f"{REPO}@{revision}")
    assert f"revision '{revision}' does not exist" in str(error)


@pytest.mark.parametrize(
    ("files", "reason"),
    [
        ({"README.md": b"# just a readme\n"}, "has no config.json"),
        ({"config.json": b'{"model_type": "bert"}', "model.safetensors": b"x"}, '"format": "cxrzoo-model"'),
        ({"config.json": b"not json"}, "not JSON"),
    ],
)
def test_pull_a_repo_that_is_not_a_cxrzoo_model(
    hub_server: FakeHub, files: dict[str, bytes], reason: str
) -> None:
    hub_server.commit_files("someone/bert-tiny", files)
    error = _failing_pull("someone/bert-tiny")
    assert "not a cxrzoo model" in str(error) and reason in str(error)


def test_pull_refuses_a_weights_path_outside_the_repo(hub_server: FakeHub) -> None:
    folder = save_tiny()
    config = json.loads((folder / "config.json").read_text())
    config["weights"]["file"] = "../escape.safetensors"
    hub_server.commit_files("someone/sneaky", {"config.json": json.dumps(config).encode()})
    error = _failing_pull("someone/sneaky")
    assert "must be a safetensors file name beside config.json" in str(error)
    assert not (store.models_dir() / "escape.safetensors").exists()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("revision", [None, "0123456789abcdef0123456789abcdef01234567"])
def test_pull_without_network(env: Path, monkeypatch: pytest.MonkeyPatch, revision: str | None) -> None:
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    spec = f"{REPO}@{revision}" if revision else REPO
    error = _failing_pull(spec)
    assert str(error).startswith("Cannot reach http://127.0.0.1:")
    assert "HF_HUB_OFFLINE" in str(error)


def test_push_without_network(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    save_tiny()
    start = time.monotonic()
    with pytest.raises(HubError, match=r"^Cannot reach http://127\.0\.0\.1:\d+ to push cxr-lab/cxr-tiny"):
        hub.push("tiny", REPO)
    assert time.monotonic() - start < 10


def test_offline_pull_is_served_from_the_hub_cache(
    hub_server: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = store.load_folder(save_tiny())
    oid = hub.push("tiny", REPO)
    hub.pull(REPO, name="online")
    requests = len(hub_server.requests)

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = hub.pull(REPO, name="offline")

    assert len(hub_server.requests) == requests  # no network at all
    assert hub.source(folder)["commit"] == oid  # type: ignore[index]
    assert torch.equal(predictions(store.load_folder(folder)), predictions(original))
    error = _failing_pull("cxr-lab/never-pulled")
    assert "HF_HUB_OFFLINE is set" in str(error)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("org/repo", ("org/repo", None)),
        ("hf://org/repo", ("org/repo", None)),
        ("org/repo@main", ("org/repo", "main")),
        ("hf://org/repo@refs/pr/1", ("org/repo", "refs/pr/1")),
        (
            "org/my.model_v2@0123456789abcdef0123456789abcdef01234567",
            ("org/my.model_v2", "0123456789abcdef0123456789abcdef01234567"),
        ),
    ],
)
def test_parse_spec(spec: str, expected: tuple[str, str | None]) -> None:
    assert hub.parse_spec(spec) == expected


@pytest.mark.parametrize("spec", ["repo", "org/repo/extra", "org/repo@", "/repo", "org/re po", "org--x/repo"])
def test_parse_spec_rejects(spec: str) -> None:
    with pytest.raises(HubError, match="Invalid Hub repo"):
        hub.parse_spec(spec)


# -- command line ---------------------------------------------------------------------------
def test_cli_push_and_pull(hub_server: FakeHub) -> None:
    folder = save_tiny()
    runner = CliRunner()

    pushed = runner.invoke(push_command, ["tiny", REPO, "--revision", "dev"])
    assert pushed.exit_code == 0, pushed.output
    oid = hub_server.commits(REPO, "dev")[-1].oid
    assert f"commit: {oid}" in pushed.output
    assert f"{hub_server.url}/{REPO}/tree/dev" in pushed.output

    pulled = runner.invoke(pull_command, [f"{REPO}@dev", "--name", "from-cli"])
    assert pulled.exit_code == 0, pulled.output
    assert str(store.model_path("from-cli")) in pulled.output
    assert f"commit: {oid}" in pulled.output
    sha = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    assert f"sha256: {sha}" in pulled.output


@pytest.mark.parametrize(
    ("command", "args"),
    [
        (pull_command, ["cxr-lab/does-not-exist"]),
        (pull_command, [f"{REPO}@nope"]),
        (pull_command, ["not-a-repo-id"]),
        (push_command, ["tiny", REPO, "--token", "hf_wrong"]),
        (push_command, ["no-such-model", REPO]),
    ],
)
def test_cli_errors_are_one_line_without_traceback(
    hub_server: FakeHub, command: object, args: list[str]
) -> None:
    save_tiny()
    hub.push("tiny", REPO)
    result = CliRunner().invoke(command, args)  # type: ignore[arg-type]
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output


# -- servers that misbehave -----------------------------------------------------------------
FAULT_MESSAGES = {
    "hang": "did not answer within 2 s",
    "http500": "answered HTTP 500",
    "badjson": "not valid JSON",
}


@pytest.mark.parametrize("fault", list(FAULT_MESSAGES))
@pytest.mark.parametrize("action", ["push", "pull"])
def test_misbehaving_hub_ends_in_bounded_time_with_one_line(
    hub_server: FakeHub, action: str, fault: str
) -> None:
    save_tiny()
    if action == "pull":
        hub.push("tiny", REPO)
        existing = save_tiny("victim", seed=3)
        before = snapshot(existing)
    hub_server.fault = fault
    command, args = (
        (push_command, ["tiny", REPO])
        if action == "push"
        else (pull_command, [REPO, "--name", "victim", "--force"])
    )

    start = time.monotonic()
    result = CliRunner().invoke(command, [*args, "--timeout", "2"])  # type: ignore[arg-type]
    elapsed = time.monotonic() - start

    assert elapsed < 10, f"{action} against a {fault} server took {elapsed:.1f} s"
    assert result.exit_code != 0 and "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"Error: Cannot {action} {REPO}"), result.output
    assert FAULT_MESSAGES[fault] in lines[0], lines[0]
    assert hub_server.url in lines[0] and "Cannot reach" not in lines[0]
    if action == "pull":
        assert snapshot(existing) == before


def test_hub_timeout_comes_from_the_environment(hub_server: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    save_tiny()
    hub_server.fault = "hang"
    monkeypatch.setenv("CXRZOO_HUB_TIMEOUT", "1.5")
    start = time.monotonic()
    with pytest.raises(hub.HubTimeoutError, match=r"did not answer within 1\.5 s") as info:
        hub.push("tiny", REPO)
    assert time.monotonic() - start < 10
    assert isinstance(info.value, DataError) and isinstance(info.value, StoreError)
    # An explicit timeout wins over the environment.
    with pytest.raises(hub.HubTimeoutError, match=r"within 0\.5 s"):
        hub.pull(REPO, timeout=0.5)


@pytest.mark.parametrize("value", ["abc", "0", "-3", "inf"])
def test_bad_hub_timeout_is_one_line(env: Path, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CXRZOO_HUB_TIMEOUT", value)
    with pytest.raises(HubError, match=rf"^CXRZOO_HUB_TIMEOUT='{re.escape(value)}': expected a number"):
        hub.pull(REPO)


def test_hub_client_is_restored_after_a_call(hub_server: FakeHub) -> None:
    from huggingface_hub.utils import _http

    before = _http._GLOBAL_CLIENT_FACTORY
    save_tiny()
    hub.push("tiny", REPO, timeout=5)
    hub_server.fault = "hang"
    with pytest.raises(hub.HubTimeoutError):
        hub.pull(REPO, timeout=1)
    assert _http._GLOBAL_CLIENT_FACTORY is before
