"""cxrzoo tune: patient-grouped folds, the test split never decoded, pruning, resume, the recipe file."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
from click.testing import CliRunner

from cxrzoo.cli import main
from cxrzoo.metrics import patient_kfold

pytestmark = pytest.mark.xdist_group("tune")

#: Tiny and fast: 2 epochs of a tiny backbone at 32 px on a few synthetic phantoms.
DATA = ["--synthetic-n", "120"]
TINY = ["--recipe", "quick", "--image-size", "32", "--set", "epochs=2", "--set", "backbone=test_resnet"]
TINY += ["--set", "reduction=4", "--no-progress"]
#: A small space, so a few trials cover it.
SPACE = {"replace": True, "lr": {"low": 1e-3, "high": 3e-2, "log": True}, "flip_tta": [False, True]}


def invoke(*args: str, code: int = 0):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


def study_trials(name: str) -> list[optuna.trial.FrozenTrial]:
    from cxrzoo.training.tune import study_path

    storage = f"sqlite:///{study_path(name)}"
    return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)


@pytest.fixture
def space_file(tmp_path: Path) -> Path:
    path = tmp_path / "space.json"
    path.write_text(json.dumps(SPACE))
    return path


def test_grouped_folds_never_share_a_patient():
    rng = np.random.default_rng(0)
    patients = rng.integers(0, 40, size=300).astype(str)
    y = (rng.random((300, 14)) < 0.15).astype(float)
    folds = patient_kfold(patients, y, k=4, seed=3)
    seen: set[int] = set()
    for train, val in folds:
        assert not set(patients[train]) & set(patients[val])
        assert not seen & set(val.tolist())  # each image is scored in one fold only
        seen |= set(val.tolist())
    assert seen == set(range(300))


def test_tune_folds_hold_whole_patients_of_the_training_split(cxrzoo_home, tmp_path):
    """The pool the trials' folds are drawn from is the train and validation splits, and each
    fold's scored patients are absent from its training part."""
    from cxrzoo.data.spec import load_splits
    from cxrzoo.training.run import crossval_arrays, crossval_run
    from cxrzoo.training.spec import resolve_run

    run = resolve_run(
        "chest_xray_attention",
        dataset_options={"n": 120},
        recipe="quick",
        recipe_overrides={"epochs": 1},
        config_overrides={"image_size": 32, "backbone": "test_resnet"},
        save=False,
        progress=False,
    )
    splits = load_splits(run.data, echo=lambda _m: None)
    arrays = crossval_arrays(run, echo=lambda _m: None)
    assert set(arrays.names) == set(splits.train["image"]) | set(splits.val["image"])
    assert not set(arrays.names) & set(splits.test["image"])
    pats = np.asarray(arrays.patients)
    seen = []

    def on_fold(k, result, so_far):
        train, val = patient_kfold(arrays.patients, arrays.labels, k=3, seed=run.seed)[k]
        assert not set(pats[train]) & set(pats[val])
        assert result["patients"] == len(set(pats[val]))
        seen.append(k)

    result = crossval_run(run, folds=3, arrays=arrays, on_fold=on_fold, echo=lambda _m: None)
    assert seen == [0, 1, 2] and len(result["folds"]) == 3


def test_tune_never_decodes_a_test_image(cxrzoo_home, tmp_path, monkeypatch, space_file, make_kaggle_tree):
    """A Kaggle-layout data set whose test images are not images at all: any read of one fails
    this test (the decoder is spied on), and tune still completes on the train_val patients."""
    import cxrzoo.data.cache as cache

    tree = make_kaggle_tree("nih", bad=False, patients=24, per_patient=3)
    test_names = {n for n, lst in tree.lists.items() if lst == "test"}
    assert test_names
    for path in tree.root.rglob("*.png"):
        if path.name in test_names:
            path.write_bytes(b"not an image: the test list must not be read")
    decoded: list[str] = []
    real = cache.read_image

    def spy(path, *args, **kwargs):
        decoded.append(os.path.basename(str(path)))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(cache, "read_image", spy)
    out = tmp_path / "best.json"
    invoke(
        "tune", "chest_xray_attention", "--data", str(tree.root), *TINY, "--trials", "2",
        "--folds", "2", "--space", str(space_file), "--out", str(out),
    )  # fmt: skip
    assert decoded, "the spy saw no decoding at all"
    assert not set(decoded) & test_names, "tune decoded images of the test list"
    doc = json.loads(out.read_text())
    assert doc["search"]["trials"]["complete"] == 2
    assert "test list is not used" in doc["search"]["metric"]


def test_pruning_stops_bad_trials_after_a_fold(cxrzoo_home, tmp_path):
    """Two good trials complete; the trials at a learning rate that learns nothing score below
    their median on the first fold and are pruned there."""
    from cxrzoo.training.tune import study_path

    space = tmp_path / "space.json"
    space.write_text(json.dumps({"replace": True, "lr": [0.01, 0.02, 1e-9]}))
    name = "prune-test"
    path = study_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(storage=f"sqlite:///{path}", study_name=name, direction="maximize")
    for lr in (0.01, 0.02, 1e-9, 1e-9):
        study.enqueue_trial({"lr": lr})
    out = tmp_path / "best.json"
    result = invoke(
        "tune", "chest_xray_attention", *DATA, *TINY, "--set", "epochs=4", "--trials", "4", "--folds", "3",
        "--space", str(space), "--study", name, "--out", str(out),
    )  # fmt: skip
    trials = study_trials(name)
    states = {t.number: t.state.name for t in trials}
    assert states[0] == states[1] == "COMPLETE"
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    assert pruned and all(t.params["lr"] == 1e-9 for t in pruned), states
    assert all(len(t.intermediate_values) < 3 for t in pruned)
    assert "pruned" in result.output
    doc = json.loads(out.read_text())
    assert doc["search"]["trials"]["pruned"] == len(pruned)
    assert doc["recipe"]["lr"] in (0.01, 0.02)
    summary = (tmp_path / "best.report" / "summary.md").read_text()
    assert "pruned" in summary and "## Trials" in summary


def test_resume_keeps_finished_trials_and_the_recipe_file_trains(cxrzoo_home, tmp_path, space_file):
    out = tmp_path / "best.json"
    args = ["tune", "chest_xray_attention", *DATA, *TINY, "--folds", "2", "--space", str(space_file)]
    invoke(*args, "--trials", "2", "--out", str(out))
    name = json.loads(out.read_text())["search"]["study"]
    first = [(t.number, t.params, t.value) for t in study_trials(name)]
    assert len(first) == 2
    result = invoke(*args, "--trials", "4", "--out", str(out))
    assert "2 finished trial(s) kept, 2 to run" in result.output
    trials = study_trials(name)
    assert len([t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]) == 4
    assert [(t.number, t.params, t.value) for t in trials[:2]] == first
    doc = json.loads(out.read_text())
    assert doc["format"] == "cxrzoo-recipe" and doc["search"]["trials"]["tried"] == 4
    report = tmp_path / "best.report"
    rows = json.loads((report / "trials.json").read_text())
    assert len(rows) == 4 and all(r["mean"] is not None for r in rows if r["state"] == "COMPLETE")
    for name_ in ("summary.md", "trials.csv", "importance.json", "importance.png", "history.png"):
        assert (report / name_).is_file()

    # The best recipe trains as it is, model config values included.
    invoke("train", "chest_xray_attention", *DATA, "--recipe", str(out), "--no-progress", "--name", "tuned")
    import cxrzoo

    model = cxrzoo.load("tuned")
    assert model.config.flip_tta == doc["config"]["flip_tta"]
    assert model.config.image_size == 32 and model.config.backbone == "test_resnet"
    recorded = model.metadata["training"]["recipe"]
    assert recorded["name"] == "best" and recorded["lr"] == doc["recipe"]["lr"]


def test_an_interrupted_trial_runs_again(cxrzoo_home, tmp_path, space_file):
    """A trial left running by a killed search is marked failed and its parameters run again."""
    out = tmp_path / "best.json"
    args = ["tune", "chest_xray_attention", *DATA, *TINY, "--folds", "2", "--space", str(space_file)]
    invoke(*args, "--trials", "1", "--out", str(out), "--study", "killed")
    study = optuna.load_study(study_name="killed", storage=f"sqlite:///{cxrzoo_home / 'tune' / 'killed.db'}")
    dists = {"lr": optuna.distributions.FloatDistribution(1e-3, 3e-2, log=True)}
    stale = study.ask(fixed_distributions=dists)  # RUNNING, as a killed process leaves it
    result = invoke(*args, "--trials", "2", "--out", str(out), "--study", "killed")
    assert f"Trial {stale.number} was interrupted" in result.output
    trials = study_trials("killed")
    assert trials[stale.number].state.name == "FAIL"
    rerun = [t for t in trials if t.number > stale.number]
    assert rerun and rerun[0].params["lr"] == stale.params["lr"] and rerun[0].state.name == "COMPLETE"


def test_a_killed_tune_process_resumes(cxrzoo_home, tmp_path, space_file):
    out = tmp_path / "best.json"
    args = [sys.executable, "-m", "cxrzoo", "tune", "chest_xray_attention", *DATA, *TINY]
    args += ["--folds", "2", "--space", str(space_file), "--study", "sigkill", "--out", str(out)]
    env = {**os.environ, "CXRZOO_HOME": str(cxrzoo_home), "OMP_NUM_THREADS": "1"}
    db = cxrzoo_home / "tune" / "sigkill.db"
    proc = subprocess.Popen(
        [*args, "--trials", "50"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            if db.is_file():
                with sqlite3.connect(db) as con:
                    try:
                        n = con.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
                    except sqlite3.OperationalError:
                        n = 0
                if n >= 1:
                    break
            time.sleep(0.5)
        else:
            pytest.fail("no trial completed in 240 s")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    kept = [(t.number, t.params, t.value) for t in study_trials("sigkill") if t.state.name == "COMPLETE"]
    assert not out.exists()
    subprocess.run([*args, "--trials", str(len(kept) + 1)], env=env, check=True, capture_output=True)
    trials = study_trials("sigkill")
    assert [(t.number, t.params, t.value) for t in trials if t.number in {k[0] for k in kept}] == kept
    assert len([t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]) == len(kept) + 1
    assert json.loads(out.read_text())["search"]["study"] == "sigkill"


@pytest.mark.parametrize(
    ("extra", "code", "words"),
    [
        (["--out", "best.txt"], 2, "--out best.txt: expected a path ending in .json"),
        (["--out", "best.json", "--space", "space.json"], 2, "'learning_rate' is neither"),
        (["--out", "foreign.json"], 3, "--out foreign.json: exists and is not a cxrzoo recipe file"),
        (["--out", "best.json", "--set", "lr=0.01", "--space", "only-lr.json"], 2, "nothing left to search"),
    ],
)
def test_bad_input_is_one_line(cxrzoo_home, tmp_path, monkeypatch, extra, code, words):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "space.json").write_text(json.dumps({"learning_rate": [0.1]}))
    (tmp_path / "only-lr.json").write_text(json.dumps({"replace": True, "lr": [0.1, 0.01]}))
    (tmp_path / "foreign.json").write_text("{}")
    result = CliRunner().invoke(main, ["tune", "chest_xray_attention", *DATA, *TINY, *extra])
    assert result.exit_code == code, result.output
    assert words in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert (tmp_path / "foreign.json").read_text() == "{}"


def test_space_checks_its_ranges_before_any_trial(cxrzoo_home, tmp_path):
    from cxrzoo.plugins import models
    from cxrzoo.training.tune import SpaceError, build_space

    cls = models.get("chest_xray_attention").config_class
    params, fixed = build_space(
        {"lr": {"low": 1e-4, "high": 1e-2, "log": True}, "epochs": {"low": 2, "high": 8, "step": 2},
         "augment": ["augment_light", None], "image_size": 48},
        config_class=cls, fixed={},
    )  # fmt: skip
    assert [p.kind for p in params] == ["float", "int", "choice"] and fixed == {"image_size": 48}
    for bad, words in [
        ({"lr": {"low": -1, "high": 1, "log": True}}, "log range needs low > 0"),
        ({"lr": {"low": 0.1, "high": 20}}, "lr"),
        ({"augment": ["augment_nope"]}, "augment_nope"),
        ({"epochs": {"low": 1.5, "high": 4}}, "whole"),
        ({"max_pos_weight": {"low": 2, "high": 5, "when": {"loss2": ["bce"]}}}, "'when' names 'loss2'"),
    ]:
        with pytest.raises(SpaceError, match=words):
            build_space(bad, config_class=cls, fixed={})


def test_recipe_file_errors_name_the_option(cxrzoo_home, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"recipe": {"lr": 0.01, "epochz": 3}}))
    result = CliRunner().invoke(main, ["train", "chest_xray_attention", "--recipe", str(bad)])
    assert result.exit_code == 2 and f"--recipe {bad}" in result.output and "epochz" in result.output
    result = CliRunner().invoke(
        main, ["train", "chest_xray_attention", "--recipe", str(tmp_path / "no.json")]
    )
    assert result.exit_code == 3 and "no such file" in result.output


def test_budget_stops_new_trials_and_image_size_can_be_searched(cxrzoo_home, tmp_path):
    """A budget of a few milliseconds lets one trial run (a running trial always finishes); the
    phantoms' default image size is a default, not a --set, so a space may search it."""
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"replace": True, "image_size": [32, 40], "lr": [0.01]}))
    out = tmp_path / "best.json"
    tiny = [a for a in TINY if a not in ("--image-size", "32")]
    result = invoke(
        "tune", "chest_xray_attention", *DATA, *tiny, "--folds", "2", "--trials", "5", "--budget", "0.0001",
        "--space", str(space), "--out", str(out),
    )  # fmt: skip
    doc = json.loads(out.read_text())
    assert doc["search"]["trials"]["tried"] == 1, result.output
    assert doc["search"]["space"] == {"image_size": {"choices": [32, 40]}}
    assert doc["config"]["image_size"] in (32, 40) and doc["recipe"]["lr"] == 0.01
