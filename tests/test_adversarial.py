"""Bad input, hostile files and races, as a careless or hostile user would bring them.

Every probe states the call and what it must give: one line naming the problem (exit code 2
for a bad command line, name or value; 3 for a bad file, store entry or data), no traceback,
and nothing outside the store changed. A decoy folder beside the store is hashed before and
after the probes that could reach it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

import cxrzoo
from cxrzoo import store
from cxrzoo.cli import main
from cxrzoo.errors import CxrzooError, DataError, UserError
from cxrzoo.testing import tiny_model

# Sizes go through --set so that a probe's own --set of the same key comes later and wins.
TINY = ["--set", "backbone=test_resnet", "--set", "reduction=4", "--set", "image_size=32"]
QUICK = ["--synthetic-n", "60", "--set", "epochs=1", "--recipe", "quick", "--no-progress", *TINY]


# -- helpers --------------------------------------------------------------------------------
@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("CXRZOO_HOME", str(home))
    return home


@pytest.fixture
def decoy(tmp_path: Path) -> Path:
    """A user's folder beside the store, holding files a careless path could overwrite."""
    folder = tmp_path / "victim"
    folder.mkdir()
    (folder / "checkpoint.safetensors").write_bytes(b"precious weights")
    (folder / "train_log.csv").write_text("epoch,loss\n1,0.5\n")
    (folder / "config.json").write_text('{"mine": true}')
    return folder


def tree_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        digest.update(str(p.relative_to(folder)).encode())
        if p.is_file():
            digest.update(p.read_bytes())
    return digest.hexdigest()


def run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def assert_one_line(output: str, code: int, expected_code: int, *fragments: str) -> None:
    lines = [line for line in output.splitlines() if line.strip()]
    assert code == expected_code, output
    assert "Traceback" not in output, output
    assert lines and lines[-1].startswith("Error: "), output
    error_lines = [line for line in lines if line.startswith("Error: ")]
    assert len(error_lines) == 1, output
    for fragment in fragments:
        assert fragment in error_lines[0], output


def saved_folder(tmp_path: Path, name: str = "m") -> Path:
    return tiny_model("chest_xray_attention").save_pretrained(tmp_path / name)


def rewrite_config(folder: Path, change, *, reseal: bool) -> None:
    doc = json.loads((folder / "config.json").read_text())
    change(doc)
    if reseal:
        store.seal(doc)
    (folder / "config.json").write_text(json.dumps(doc))


def rewrite_weights(folder: Path, change) -> None:
    weights = folder / "model.safetensors"
    state = load_file(weights)
    change(state)
    save_file(state, weights)

    def update(doc):
        doc["weights"]["sha256"] = store.sha256_file(weights)

    rewrite_config(folder, update, reseal=True)


# -- 1. names and paths: nothing outside the store -------------------------------------------
BAD_NAMES = [
    "../../victim",
    "../victim",
    "..",
    ".hidden",
    "a/b",
    "a\\b",
    " ",
    "",
    "name with spaces",
    "x" * 300,
    "/tmp/absolute",
    "ok\nnewline",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_train_refuses_a_bad_name_before_any_work(home: Path, decoy: Path, name: str) -> None:
    before = tree_hash(decoy)
    code, output = run_cli("train", "chest_xray_attention", "--name", name, *QUICK)
    assert_one_line(output, code, 2, "Invalid")
    assert "Training" not in output  # refused before the data and the model were touched
    assert tree_hash(decoy) == before
    assert not (home / "runs").exists() or not any((home / "runs").iterdir())


def test_train_with_an_absolute_name_pointing_at_a_decoy(home: Path, decoy: Path) -> None:
    before = tree_hash(decoy)
    code, output = run_cli("train", "chest_xray_attention", "--name", str(decoy), *QUICK)
    assert_one_line(output, code, 2, "Invalid")
    assert tree_hash(decoy) == before


@pytest.mark.parametrize("name", BAD_NAMES)
def test_every_store_path_stays_inside_the_store(home: Path, name: str) -> None:
    for build in (store.model_path, store.run_path):
        with pytest.raises(UserError, match="Invalid"):
            build(name)
    with pytest.raises(UserError):
        store.save(tiny_model("chest_xray_attention"), name)


def test_a_symlink_in_the_store_cannot_lead_outside(home: Path, decoy: Path) -> None:
    (home / "models").mkdir(parents=True)
    os.symlink(decoy, home / "models" / "linked")
    before = tree_hash(decoy)
    with pytest.raises(UserError, match="outside"):
        store.save(tiny_model("chest_xray_attention"), "linked")
    assert tree_hash(decoy) == before


@pytest.mark.parametrize("name", [" ", "../x", "x" * 300])
def test_pull_refuses_a_bad_name(home: Path, name: str) -> None:
    code, output = run_cli("pull", "org/tiny", "--name", name)
    assert_one_line(output, code, 2, "Invalid store name")
    assert not (home / "models").exists() or not [
        p for p in (home / "models").iterdir() if p.name != ".locks"
    ]


# -- 2. a pull never replaces a different model ----------------------------------------------
@pytest.fixture
def fake_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    sys.path.insert(0, str(Path(__file__).parent))
    from hub_server import FakeHub

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "3")
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "3")
    monkeypatch.setenv("HF_TOKEN", "hf_token")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with FakeHub(token="hf_token") as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def _publish(name: str, seed: int) -> None:
    from cxrzoo import hub

    store.save(tiny_model("chest_xray_attention", seed=seed), "to-publish")
    hub.push("to-publish", f"org/{name}")
    store.remove("to-publish")


def test_pull_refuses_to_replace_a_local_model(home: Path, fake_hub) -> None:
    _publish("tiny", seed=1)
    local = store.save(tiny_model("chest_xray_attention", seed=2), "tiny")
    before = tree_hash(local)
    code, output = run_cli("pull", "org/tiny")
    assert_one_line(output, code, 2, "already has a model 'tiny'", "--force")
    assert tree_hash(local) == before
    # Reads do not replace it either: they store the pull under the repo-derived name.
    x = torch.randn(1, 1, 32, 32)
    loaded = cxrzoo.load("hf://org/tiny")
    assert loaded.metadata["folder"].endswith("org--tiny")
    assert tree_hash(local) == before
    with torch.no_grad():
        assert not torch.equal(loaded(x), cxrzoo.load("tiny")(x))
    # Pulling again from the same repo updates its own entry; --force replaces the local one.
    assert run_cli("pull", "org/tiny", "--name", "org--tiny")[0] == 0
    code, output = run_cli("pull", "org/tiny", "--force")
    assert code == 0, output
    assert tree_hash(local) != before


# -- 3. config.json is validated and sealed ---------------------------------------------------
def _permute_labels(doc):
    labels = doc["config"]["labels"]
    labels[1], labels[2] = labels[2], labels[1]


CONFIG_TAMPERING = {
    "permuted labels": (_permute_labels, False, "config_sha256"),
    "changed threshold": (lambda d: d["config"].update(thresholds=[0.3] * 14), False, "config_sha256"),
    "renamed label": (lambda d: d["config"]["labels"].__setitem__(0, "Atelectasys"), True, "Atelectasys"),
    "NaN thresholds": (lambda d: d["config"].update(thresholds=[math.nan] * 14), True, "finite"),
    "inf thresholds": (lambda d: d["config"].update(thresholds=[math.inf] * 14), True, "finite"),
    "negative thresholds": (lambda d: d["config"].update(thresholds=[-0.5] * 14), True, "[0, 1]"),
    "thresholds above 1": (lambda d: d["config"].update(thresholds=[1.5] * 14), True, "[0, 1]"),
    "weights outside": (lambda d: d["weights"].update(file="../../x.safetensors"), True, "weights.file"),
    "weights absolute": (lambda d: d["weights"].update(file="/etc/x.safetensors"), True, "weights.file"),
    "weights pickle": (lambda d: d["weights"].update(file="model.pt"), True, "never pickles"),
    "architecture path": (lambda d: d.update(architecture="../../x"), True, "architecture"),
    "unknown architecture": (lambda d: d.update(architecture="nope"), True, "nope"),
    "no digest": (lambda d: d.pop("config_sha256"), False, "config_sha256"),
    "config a list": (lambda d: d.update(config=[]), True, "'config' must be an object"),
    "weights a string": (lambda d: d.update(weights="x"), True, "'weights' must be an object"),
    "architecture a number": (lambda d: d.update(architecture=5), True, "'architecture' must be text"),
    "format_version text": (lambda d: d.update(format_version="1"), True, "format_version"),
    "format_version future": (lambda d: d.update(format_version=99), True, "newer cxrzoo"),
    "image_size text": (lambda d: d["config"].update(image_size="big"), True, "image_size"),
    "image_size huge": (lambda d: d["config"].update(image_size=10**9), True, "image_size"),
    "labels a number": (lambda d: d["config"].update(labels=5), True, "labels"),
    "labels too few": (lambda d: d["config"].update(labels=d["config"]["labels"][:13]), True, "classifier"),
    "thresholds text": (lambda d: d["config"].update(thresholds="high"), True, "thresholds"),
    "in_chans 2": (lambda d: d["config"].update(in_chans=2), True, "in_chans"),
    "unknown config key": (lambda d: d["config"].update(colour=True), True, "colour"),
    "parameters negative": (lambda d: d["weights"].update(parameters=-1), True, "parameters"),
    "sha256 not hex": (lambda d: d["weights"].update(sha256="zz"), True, "sha256"),
    "metrics a list": (lambda d: d.update(metrics=[1]), True, "'metrics' must be an object"),
    "preprocessing unknown": (lambda d: d["config"].update(preprocessing=["nope"]), True, "nope"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_TAMPERING))
def test_a_changed_or_meaningless_config_is_refused(tmp_path: Path, case: str) -> None:
    change, reseal, fragment = CONFIG_TAMPERING[case]
    folder = saved_folder(tmp_path)
    rewrite_config(folder, change, reseal=reseal)
    with pytest.raises(CxrzooError) as info:
        cxrzoo.load(folder).predict([torch.zeros(32, 32)])
    message = str(info.value)
    assert "\n" not in message and fragment in message, message


@pytest.mark.parametrize("case", ["permuted labels", "weights outside", "labels a number"])
def test_cli_reports_a_bad_config_in_one_line(tmp_path: Path, home: Path, case: str) -> None:
    change, reseal, fragment = CONFIG_TAMPERING[case]
    folder = saved_folder(tmp_path)
    rewrite_config(folder, change, reseal=reseal)
    image = tmp_path / "x.png"
    import cv2
    import numpy as np

    cv2.imwrite(str(image), np.full((40, 40), 100, np.uint8))
    code, output = run_cli("predict", str(folder), str(image))
    assert_one_line(output, code, 3, fragment)


WEIGHT_TAMPERING = {
    "int8 weights": lambda s: s.update({"classifier.weight": s["classifier.weight"].to(torch.int8)}),
    "bool weights": lambda s: s.update({"classifier.weight": s["classifier.weight"] > 0}),
    "NaN weights": lambda s: s["classifier.weight"].fill_(math.nan),
    "inf weights": lambda s: s["classifier.bias"].fill_(math.inf),
    "float64 weights": lambda s: s.update({"classifier.weight": s["classifier.weight"].double()}),
}


@pytest.mark.parametrize("case", sorted(WEIGHT_TAMPERING))
def test_weights_of_the_wrong_type_or_not_finite_are_refused(tmp_path: Path, case: str) -> None:
    folder = saved_folder(tmp_path)
    rewrite_weights(folder, WEIGHT_TAMPERING[case])
    with pytest.raises(DataError, match="classifier"):
        cxrzoo.load(folder)


def test_a_hub_repo_with_a_changed_config_is_refused_on_pull(home: Path, fake_hub) -> None:
    from cxrzoo import hub

    folder = store.save(tiny_model("chest_xray_attention"), "orig")
    doc = json.loads((folder / "config.json").read_text())
    _permute_labels(doc)
    files = {name: (folder / name).read_bytes() for name in ("model.safetensors", "README.md")}
    files["config.json"] = json.dumps(doc).encode()
    fake_hub.commit_files("org/permuted", files)
    with pytest.raises(hub.HubError, match="config_sha256"):
        hub.pull("org/permuted")
    assert not store.model_path("permuted").exists()


# -- 4. recipe and config values are checked before any work ---------------------------------
@pytest.mark.parametrize(
    ("setting", "fragment"),
    [
        ("grad_clip=-1", "grad_clip"),
        ("weight_decay=-0.1", "weight_decay"),
        ("max_pos_weight=-2", "max_pos_weight"),
        ("eval_batch_size=0", "eval_batch_size"),
        ("warmup=5", "warmup"),
        ("lr=0", "lr"),
        ("ema=1.5", "ema"),
        ("labels=x", "labels"),
        ("image_size=1000000000", "image_size"),
        ("epochs=0", "epochs"),
        ("optimizer=rmsprop", "optimizer"),
        ("nonsense=1", "nonsense"),
        ("grad_clip", "KEY=VALUE"),
    ],
)
def test_bad_settings_are_refused_before_training(home: Path, setting: str, fragment: str) -> None:
    code, output = run_cli("train", "chest_xray_attention", *QUICK, "--set", setting)
    assert_one_line(output, code, 2, fragment)
    assert "Training" not in output


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--fraction", "nan"], "--fraction"),
        (["--fraction", "inf"], "--fraction"),
        (["--fraction", "0"], "--fraction"),
        (["--seed", "-1"], "--seed"),
        (["--seed", str(2**70)], "--seed"),
        (["--synthetic-n", "0"], "--synthetic-n"),
        (["--epochs", "0"], "--epochs"),
        (["--image-size", "8"], "--image-size"),
    ],
)
def test_bad_options_are_one_line(home: Path, args: list[str], fragment: str) -> None:
    result = CliRunner().invoke(main, ["train", "chest_xray_attention", *args])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert fragment in result.output


def test_a_saved_pretrained_config_never_downloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = saved_folder(tmp_path)
    rewrite_config(folder, lambda d: d["config"].update(pretrained=True), reseal=True)
    import timm

    real = timm.create_model

    def offline_create(*args, **kwargs):
        assert not kwargs.get("pretrained"), "a load asked for pretrained backbone weights"
        return real(*args, **kwargs)

    monkeypatch.setattr(timm, "create_model", offline_create)
    model = cxrzoo.load(folder)
    assert model.config.pretrained is False


# -- exit codes and messages of the CLI ------------------------------------------------------
def test_unknown_names_are_user_errors(home: Path) -> None:
    code, output = run_cli("train", "rare_diseas", *QUICK)
    assert_one_line(output, code, 2, "Did you mean 'rare_disease'")
    code, output = run_cli("evaluate", "never-trained")
    assert_one_line(output, code, 2, "No trained model 'never-trained'")


@pytest.mark.parametrize("kind", ["read-only", "a file"])
def test_an_unwritable_home_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    home = tmp_path / "home"
    if kind == "read-only":
        if os.geteuid() == 0:
            pytest.skip("root ignores file permissions")
        home.mkdir()
        home.chmod(0o500)
    else:  # CXRZOO_HOME naming a file: nothing can be created under it, not even by root
        home.write_text("not a folder")
    monkeypatch.setenv("CXRZOO_HOME", str(home))
    for args in (["train", "chest_xray_attention", *QUICK], ["evaluate", "chest_xray_attention"]):
        code, output = run_cli(*args)
        assert "Traceback" not in output and code in (2, 3), output
        assert len([line for line in output.splitlines() if line.startswith("Error: ")]) == 1, output


def test_an_internal_error_is_one_line_with_code_70(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cxrzoo.training import run

    def broken(*args, **kwargs):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(run, "train_model", broken)
    code, output = run_cli("train", "chest_xray_attention", *QUICK)
    assert_one_line(output, code, 70, "internal error", "ZeroDivisionError", "CXRZOO_DEBUG")


def test_a_broken_store_entry_does_not_hide_the_others(home: Path) -> None:
    store.save(tiny_model("chest_xray_attention"), "good")
    broken = store.save(tiny_model("chest_xray_attention"), "broken")
    (broken / "config.json").write_text("[1, 2]")
    code, output = run_cli("list", "--trained")
    assert code == 0, output
    assert "good" in output and "broken" in output and "not a cxrzoo model config" in output
    code, output = run_cli("list", "--trained", "[!")
    assert code == 0 and "No trained model matches '[!'" in output


def test_a_corrupt_cache_index_is_rebuilt(home: Path, tmp_path: Path) -> None:
    from cxrzoo.data.cache import build_cache
    from cxrzoo.data.nih14 import Nih14
    from cxrzoo.data.synthetic import write_kaggle_layout
    from cxrzoo.transforms import Preprocessing

    root = write_kaggle_layout(tmp_path / "nih", 12, size=32, seed=1)
    table = Nih14(root).table()
    pre = Preprocessing(["resize", "scale"], image_size=16)
    first = build_cache(table, pre, progress=False)
    (first.folder / "index.json").write_text("[]")
    again = build_cache(table, pre, progress=False)
    assert len(again) == len(first) and again.built


# -- 6. concurrent writers -------------------------------------------------------------------
def _cli_process(home: Path, *args: str) -> subprocess.Popen:
    env = dict(os.environ, CXRZOO_HOME=str(home), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "cxrzoo", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.slow
def test_two_trainings_of_one_name_do_not_both_save(home: Path) -> None:
    # The first run trains long enough (30 epochs) for the second to start while it holds the lock.
    first = _cli_process(home, "train", "chest_xray_attention", "--name", "dup", *QUICK, "--set", "epochs=30")
    seen = []
    for line in first.stdout:  # the first run holds the entry's lock once it is training
        seen.append(line)
        if line.startswith("Training"):
            break
    second = _cli_process(home, "train", "chest_xray_attention", "--name", "dup", *QUICK)
    second_out = second.communicate(timeout=600)[0]
    first_out = "".join(seen) + first.communicate(timeout=600)[0]
    assert second.returncode == 3, second_out
    assert "being written by another process" in second_out and "Traceback" not in second_out
    assert first.returncode == 0, first_out
    assert "Saved to" in first_out and "Saved to" not in second_out
    cxrzoo.load("dup")  # the winner's entry is whole


@pytest.mark.slow
def test_three_cache_builds_of_one_key_serialise(home: Path, tmp_path: Path) -> None:
    from cxrzoo.data.synthetic import write_kaggle_layout

    root = write_kaggle_layout(tmp_path / "nih", 150, size=64, seed=2)
    args = ("data", "prepare", str(root), "--image-size", "48", "--workers", "1")
    procs = [_cli_process(home, *args) for _ in range(3)]
    results = [(p.wait(timeout=600), p.stdout.read()) for p in procs]
    assert all(code == 0 for code, _ in results), results
    assert not any("Traceback" in out for _, out in results)
    caches = [p for p in (home / "cache").iterdir() if not p.name.startswith(".")]
    assert len(caches) == 1
    assert not [p for p in (home / "cache").iterdir() if ".tmp-" in p.name]


# -- 7. crash leftovers and a full disk -------------------------------------------------------
def test_a_killed_build_leaves_a_temporary_that_the_next_build_removes(home: Path, tmp_path: Path) -> None:
    from cxrzoo.data.cache import build_cache, cache_key
    from cxrzoo.data.nih14 import Nih14
    from cxrzoo.data.synthetic import write_kaggle_layout
    from cxrzoo.transforms import Preprocessing

    root = write_kaggle_layout(tmp_path / "nih", 12, size=32, seed=1)
    table = Nih14(root).table()
    pre = Preprocessing(["resize", "scale"], image_size=16)
    leftover = home / "cache" / f".{cache_key(table, pre)}.tmp-dead"
    leftover.mkdir(parents=True)
    (leftover / "images.npy").write_bytes(b"\0" * 4096)
    build_cache(table, pre, progress=False)
    assert not leftover.exists()


def test_a_cache_build_on_a_full_disk_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() != 0 or sys.platform != "linux":
        pytest.skip("mounting a 1 MiB tmpfs needs root on Linux")
    from cxrzoo.data.synthetic import write_kaggle_layout

    root = write_kaggle_layout(tmp_path / "nih", 40, size=64, seed=3)
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        monkeypatch.setenv("CXRZOO_HOME", str(small))
        code, output = run_cli("data", "prepare", str(root), "--image-size", "256")
        assert_one_line(output, code, 3, "Not enough disk space", "MiB")
        leftovers = [p for p in (small / "cache").rglob("*") if ".tmp-" in p.name]
        assert leftovers == []
    finally:
        subprocess.run(["umount", str(small)], check=False)


# -- 5. a last training batch of one image ----------------------------------------------------
def test_a_last_batch_of_one_image_trains(home: Path) -> None:
    import numpy as np

    from cxrzoo.training.loader import ArrayData, BatchLoader

    data = ArrayData(
        np.zeros((33, 4, 4), np.uint8),
        np.arange(33),
        np.zeros((33, 14), np.float32),
        [str(i) for i in range(33)],
    )
    loader = BatchLoader(data, 32, order=np.arange(33), device=torch.device("cpu"), merge_single=True)
    assert [len(b) for b in loader.batches()] == [33]
    assert [len(x) for x, _ in loader] == [33]
    # End to end: 1x1 feature maps at 32 px, and a batch size that leaves one image over.
    from cxrzoo.training.run import DataSpec, load_splits

    splits = load_splits(DataSpec(dataset="synthetic", options={"n": 60, "size": 32}), echo=lambda _m: None)
    batch = len(splits.train) - 1
    code, output = run_cli(
        "train",
        "chest_xray_attention",
        "--synthetic-n",
        "60",
        "--set",
        "epochs=1",
        "--recipe",
        "quick",
        "--no-progress",
        "--set",
        "backbone=test_resnet",
        "--set",
        "image_size=32",
        "--batch-size",
        str(batch),
    )
    assert code == 0, output


# -- 11. symlink loops ------------------------------------------------------------------------
def test_symlink_loops_are_skipped(home: Path, tmp_path: Path) -> None:
    from cxrzoo.data.synthetic import write_kaggle_layout

    root = write_kaggle_layout(tmp_path / "nih", 10, size=32, seed=1)
    os.symlink("loop2", root / "loop1")
    os.symlink("loop1", root / "loop2")
    os.symlink("..", root / "images_001" / "images" / "back")
    os.symlink("ghost.png", root / "images_001" / "images" / "dangling.png")
    code, output = run_cli("data", "catalog", str(root), "--json")
    assert code == 0, output
    assert json.loads(output)["images"] == 10


# -- 11. checkpoint metadata of the wrong type -------------------------------------------------
@pytest.mark.parametrize(
    "change",
    [
        lambda t: t.update(epoch="three"),
        lambda t: t.update(history={"not": "a list"}),
        lambda t: t.update(best_score="high"),
        lambda t: t.update(bad_epochs=1.5),
        lambda t: t.pop("epoch"),
        "trainer-not-json",
    ],
)
def test_a_checkpoint_with_wrong_metadata_is_one_line(home: Path, change) -> None:
    from safetensors import safe_open

    args = ["train", "chest_xray_attention", "--name", "ck", *QUICK]
    assert run_cli(*args)[0] == 0
    path = store.run_path("ck") / "checkpoint.safetensors"
    with safe_open(str(path), framework="pt") as f:
        metadata = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    if change == "trainer-not-json":
        metadata["trainer"] = "{broken"
    else:
        trainer = json.loads(metadata["trainer"])
        change(trainer)
        metadata["trainer"] = json.dumps(trainer)
    save_file(tensors, str(path), metadata=metadata)
    code, output = run_cli(*args, "--resume")
    assert_one_line(output, code, 3, "checkpoint")


# -- 12. evaluate --synthetic-n is honoured ---------------------------------------------------
def test_evaluate_synthetic_n_is_not_ignored(home: Path) -> None:
    assert run_cli("train", "chest_xray_attention", *QUICK)[0] == 0
    first = json.loads(
        CliRunner().invoke(main, ["evaluate", "chest_xray_attention", "--json", "--bootstrap", "0"]).stdout
    )
    other = CliRunner().invoke(
        main, ["evaluate", "chest_xray_attention", "--synthetic-n", "200", "--json", "--bootstrap", "0"]
    )
    assert other.exit_code == 0, other.output
    assert json.loads(other.stdout)["data"]["options"]["n"] == 200
    assert json.loads(other.stdout)["n_images"] != first["n_images"]


def test_a_preprocessing_list_with_arguments_trains(home: Path) -> None:
    """One parser of transform specs: commas inside a step's parentheses do not split it."""
    spec = "clahe(clip_limit=3.0, tile=8),resize,scale"
    code, output = run_cli("train", "chest_xray_attention", *QUICK, "--set", f"preprocessing={spec}")
    assert code == 0, output
    saved = cxrzoo.load("chest_xray_attention").config.preprocessing
    assert saved == ("clahe(clip_limit=3.0, tile=8)", "resize", "scale")
