"""Hugging Face conventions: ``hf-hub:`` names, ``pull --revision``, ``push --create-pr``,
``--json`` outputs, and ``ZooModel.from_pretrained`` / ``push_to_hub``, against the fake Hub."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

import cxrzoo
from cxrzoo import hub, store
from cxrzoo.cli import main
from cxrzoo.errors import UserError
from cxrzoo.hub import HubError, HubUsageError
from cxrzoo.model import ZooModel

sys.path.insert(0, str(Path(__file__).parent))
import test_hub
from hub_server import FakeHub
from test_hub import MODEL_FILES, REPO, predictions, save_tiny, tiny_model

# The fixtures of test_hub: a private store and Hugging Face cache, and the fake Hub.
env = test_hub.env
hub_server = test_hub.hub_server

PULL_KEYS = {"repo_id", "revision", "commit", "sha256", "folder", "name"}
PUSH_KEYS = {"repo_id", "revision", "commit", "url", "pr_url"}


def run(*args: str) -> tuple[int, str]:
    """Exit code and output; with --json, standard output alone (what a script parses)."""
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, (result.stdout if "--json" in args and result.exit_code == 0 else result.output)


def one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert "Traceback" not in output, output
    assert len(lines) == 1 and lines[0].startswith("Error: "), output
    return lines[0]


def outputs(model: ZooModel, seed: int = 7) -> torch.Tensor:
    """Raw logits of the model (in eval mode, as loading leaves it) on a fixed random batch."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    size = model.config.image_size
    x = torch.randn(3, model.config.in_chans, size, size, generator=gen)
    with torch.no_grad():
        return model(x)


@pytest.fixture
def two_branches(hub_server: FakeHub) -> dict[str, ZooModel]:
    """REPO with one model on main and a different one on branch dev."""
    models = {
        "main": store.load_folder(save_tiny("m-main", seed=1)),
        "dev": store.load_folder(save_tiny("m-dev", seed=2)),
    }
    hub.push("m-main", REPO)
    hub.push("m-dev", REPO, revision="dev")
    return models


# -- hf-hub: as an alias of hf:// ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("hf-hub:org/repo", ("org/repo", None)),
        ("hf-hub:org/repo@dev", ("org/repo", "dev")),
        ("  hf-hub:org/repo@refs/pr/2 ", ("org/repo", "refs/pr/2")),
        ("hf://org/repo@dev", ("org/repo", "dev")),
    ],
)
def test_parse_spec_accepts_both_prefixes(spec: str, expected: tuple[str, str | None]) -> None:
    assert hub.parse_spec(spec) == expected
    assert hub.is_hub_spec(spec)


@pytest.mark.parametrize("spec", ["hf-hub:repo", "hf-hub:", "hf-hub:org/repo@", "hf-hub:org/re po"])
def test_parse_spec_rejects_bad_hf_hub_names(spec: str) -> None:
    with pytest.raises(HubError, match="Invalid Hub repo"):
        hub.parse_spec(spec)


@pytest.mark.parametrize("revision", [None, "dev"])
def test_hf_hub_loads_exactly_as_hf_uri(two_branches: dict[str, ZooModel], revision: str | None) -> None:
    suffix = f"@{revision}" if revision else ""
    via_timm = cxrzoo.load(f"hf-hub:{REPO}{suffix}")
    via_hf = cxrzoo.load(f"hf://{REPO}{suffix}")
    expected = two_branches[revision or "main"]
    assert torch.equal(predictions(via_timm), predictions(via_hf))
    assert torch.equal(outputs(via_timm), outputs(expected))
    assert via_timm.metadata["source"]["revision"] == (revision or "main")
    assert via_timm.metadata["source"]["commit"] == via_hf.metadata["source"]["commit"]
    # The other branch's model differs, so the revision really was honoured.
    other = two_branches["main" if revision else "dev"]
    assert not torch.equal(outputs(via_timm), outputs(other))


def test_predict_command_takes_hf_hub_names(two_branches: dict[str, ZooModel], tmp_path: Path) -> None:
    image = tmp_path / "chest.png"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 255, (40, 40), dtype=np.uint8))
    results = {}
    for spec in (f"hf-hub:{REPO}@dev", f"hf://{REPO}@dev", "m-dev"):
        code, output = run("predict", spec, str(image), "--json", "--no-progress")
        assert code == 0, output
        results[spec] = json.loads(output)
        assert results[spec].pop("model") == spec
    first, second, local = results.values()
    assert first == second == local
    # The dev model, not main's: its probabilities are those of the model pushed to dev.
    expected = two_branches["dev"].predict([image])[0]
    assert first["results"][0]["probabilities"] == pytest.approx(expected, abs=1e-6)
    assert first["results"][0]["probabilities"] != pytest.approx(
        two_branches["main"].predict([image])[0], abs=1e-6
    )


# -- pull --revision and --json ----------------------------------------------------------------
def test_pull_revision_option_pulls_that_branch(
    two_branches: dict[str, ZooModel], hub_server: FakeHub
) -> None:
    code, output = run("pull", REPO, "--revision", "dev", "--name", "from-dev", "--json")
    assert code == 0, output
    record = json.loads(output)
    assert set(record) == PULL_KEYS
    dev_head = hub_server.commits(REPO, "dev")[-1].oid
    assert record["commit"] == dev_head != hub_server.commits(REPO, "main")[-1].oid
    assert record["revision"] == "dev" and record["repo_id"] == REPO
    assert record["name"] == "from-dev" and record["folder"] == str(store.model_path("from-dev"))
    assert record["sha256"] == store.read_config(record["folder"])["weights"]["sha256"]
    assert torch.equal(outputs(store.load_folder(record["folder"])), outputs(two_branches["dev"]))


@pytest.mark.parametrize("spec", [f"{REPO}@dev", f"hf-hub:{REPO}@dev", f"hf://{REPO}"])
def test_pull_revision_agreeing_with_the_spec_is_fine(two_branches: dict[str, ZooModel], spec: str) -> None:
    code, output = run("pull", spec, "--revision", "dev", "--name", "agreed", "--json")
    assert code == 0, output
    assert json.loads(output)["revision"] == "dev"


@pytest.mark.parametrize(("spec", "option"), [(f"{REPO}@dev", "main"), (f"hf-hub:{REPO}@main", "dev")])
def test_pull_revision_disagreeing_with_the_spec_is_one_line(
    two_branches: dict[str, ZooModel], hub_server: FakeHub, spec: str, option: str
) -> None:
    requests = len(hub_server.requests)
    code, output = run("pull", spec, "--revision", option, "--name", "never")
    assert code == 2, output
    line = one_error_line(output)
    assert f"'{spec.rsplit('@', 1)[1]}'" in line and f"'{option}'" in line and "--revision" in line
    assert len(hub_server.requests) == requests  # refused before asking the Hub
    assert "never" not in store.list_trained()
    with pytest.raises(HubUsageError) as info:
        hub.pull(spec, revision=option)
    assert isinstance(info.value, UserError) and isinstance(info.value, HubError)


# -- push --create-pr, --commit-message, --json ----------------------------------------------------
def test_push_json_and_commit_message(hub_server: FakeHub) -> None:
    save_tiny()
    code, output = run("push", "tiny", REPO, "--commit-message", "Tiny attention model, seed 0", "--json")
    assert code == 0, output
    record = json.loads(output)
    assert set(record) == PUSH_KEYS
    head = hub_server.commits(REPO)[-1]
    assert record == {
        "repo_id": REPO,
        "revision": "main",
        "commit": head.oid,
        "url": f"{hub_server.url}/{REPO}",
        "pr_url": None,
    }
    assert head.message == "Tiny attention model, seed 0"
    # -m and --message keep working.
    save_tiny("tiny2", seed=4)
    assert run("push", "tiny2", REPO, "-m", "short flag")[0] == 0
    assert hub_server.commits(REPO)[-1].message == "short flag"


@pytest.mark.parametrize("as_json", [False, True])
def test_push_create_pr_leaves_main_alone(hub_server: FakeHub, as_json: bool) -> None:
    first = save_tiny("first", seed=1)
    hub.push("first", REPO)
    main_before = [c.oid for c in hub_server.commits(REPO)]
    proposed = store.load_folder(save_tiny("proposed", seed=2))

    args = ["push", "proposed", REPO, "--create-pr", "-m", "Retrained on more data"]
    code, output = run(*args, *(["--json"] if as_json else []))

    assert code == 0, output
    repo = hub_server.repos[REPO]
    assert [c.oid for c in hub_server.commits(REPO)] == main_before
    assert hub_server.files(REPO)["model.safetensors"] == (first / "model.safetensors").read_bytes()
    assert list(repo.pull_requests) == [1]
    assert repo.pull_requests[1].target == "main"
    pr_head = hub_server.commits(REPO, "refs/pr/1")[-1]
    assert pr_head.message == "Retrained on more data"
    assert pr_head.parent == main_before[-1]
    assert pr_head.changed == MODEL_FILES
    pr_url = f"{hub_server.url}/{REPO}/discussions/1"
    if as_json:
        record = json.loads(output)
        assert set(record) == PUSH_KEYS
        assert record["pr_url"] == pr_url and record["commit"] == pr_head.oid
        assert record["revision"] == "refs/pr/1"
    else:
        assert "pull request #1" in output and pr_url in output and pr_head.oid in output
    # The proposal can be tried before it is merged.
    pulled = cxrzoo.load(f"hf-hub:{REPO}@refs/pr/1")
    assert torch.equal(outputs(pulled), outputs(proposed))


def test_push_create_pr_against_a_missing_branch_is_one_line(hub_server: FakeHub) -> None:
    save_tiny()
    hub.push("tiny", REPO)
    code, output = run("push", "tiny", REPO, "--create-pr", "--revision", "no-such-branch")
    assert code == 3, output
    assert "revision 'no-such-branch' does not exist" in one_error_line(output)
    assert "no-such-branch" not in hub_server.repos[REPO].branches
    assert not hub_server.repos[REPO].pull_requests


def test_push_revision_disagreeing_with_the_spec_is_one_line(hub_server: FakeHub) -> None:
    save_tiny()
    code, output = run("push", "tiny", f"{REPO}@dev", "--revision", "main")
    assert code == 2, output
    assert "'dev'" in one_error_line(output) and "'main'" in output
    assert REPO not in hub_server.repos


# -- ZooModel.from_pretrained and push_to_hub -----------------------------------------------------------
def test_push_to_hub_then_from_pretrained_round_trips(hub_server: FakeHub) -> None:
    model = tiny_model(seed=3)
    info = model.push_to_hub("org/x", commit_message="from Python")

    commits = hub_server.commits("org/x")
    assert info == commits[-1].oid and info.commit == commits[-1].oid
    assert info.pr_url is None and info.url == f"{hub_server.url}/org/x"
    assert commits[-1].message == "from Python" and commits[-1].changed == MODEL_FILES
    assert not hub_server.repos["org/x"].private
    for spec in ("hf://org/x", "hf-hub:org/x"):
        loaded = ZooModel.from_pretrained(spec)
        assert type(loaded) is type(model)
        assert torch.equal(outputs(loaded), outputs(model))
        assert loaded.metadata["source"]["commit"] == info.commit
    # The class of the model works too, and the revision can be a keyword.
    again = type(model).from_pretrained("hf://org/x", revision=info.commit)
    assert torch.equal(outputs(again), outputs(model))


def test_push_to_hub_private_branch_and_pr(hub_server: FakeHub) -> None:
    base, proposed = tiny_model(seed=1), tiny_model(seed=2)
    base.push_to_hub("org/x", private=True, revision="dev")
    assert hub_server.repos["org/x"].private
    assert len(hub_server.commits("org/x", "main")) == 1

    info = proposed.push_to_hub("org/x", revision="dev", create_pr=True)

    assert info.pr_num == 1 and info.pr_url == f"{hub_server.url}/org/x/discussions/1"
    assert hub_server.repos["org/x"].pull_requests[1].target == "dev"
    assert torch.equal(outputs(ZooModel.from_pretrained("hf://org/x@dev")), outputs(base))
    assert torch.equal(
        outputs(ZooModel.from_pretrained("hf://org/x", revision="refs/pr/1")), outputs(proposed)
    )


def test_from_pretrained_store_name_and_folder(env: Path, tmp_path: Path) -> None:
    model = tiny_model(seed=5)
    store.save(model, "local")
    folder = model.save_pretrained(tmp_path / "folder")
    for source in ("local", folder, str(folder)):
        loaded = ZooModel.from_pretrained(source)
        assert torch.equal(outputs(loaded), outputs(model)), source
    with pytest.raises(UserError, match="No trained model 'nope'"):
        ZooModel.from_pretrained("nope")
    with pytest.raises(HubUsageError, match="only applies to a Hub repo"):
        ZooModel.from_pretrained("local", revision="dev")


def test_from_pretrained_on_a_subclass_refuses_another_class(hub_server: FakeHub) -> None:
    from cxrzoo.plugins import models

    tiny_model(seed=1).push_to_hub("org/x")
    other = models.get("advanced_resnet")
    assert not isinstance(tiny_model(), other)
    for spec in ("hf-hub:org/x", "x"):  # the pull stored it as "x"
        with pytest.raises(TypeError, match=f"not a {other.__name__}"):
            other.from_pretrained(spec)


def test_push_create_pr_of_an_unchanged_model_opens_nothing(hub_server: FakeHub) -> None:
    save_tiny()
    hub.push("tiny", REPO)
    code, output = run("push", "tiny", REPO, "--create-pr", "--json")
    assert code == 0, output
    record = json.loads(output)
    assert record["pr_url"] is None and record["commit"] == hub_server.commits(REPO)[-1].oid
    assert not hub_server.repos[REPO].pull_requests
    code, output = run("push", "tiny", REPO, "--create-pr")
    assert code == 0 and "no pull request opened" in output, output
