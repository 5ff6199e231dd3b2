"""The trainer's guarantees: resumable runs, corrupt images skipped by name, DDP in sync,
and the saved model carrying its calibration, data, split and recipe."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

import cxrzoo
from cxrzoo.cli import main
from cxrzoo.training.recipes import Recipe, get_recipe
from cxrzoo.training.trainer import positive_weights

pytestmark = pytest.mark.xdist_group("training")

TINY = ["--set", "backbone=test_resnet", "--set", "reduction=4", "--image-size", "32"]


def cli_env(home: Path) -> dict[str, str]:
    # One thread per process: identical floating-point results across runs.
    return dict(os.environ, CXRZOO_HOME=str(home), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def train_cmd(*extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "cxrzoo",
        "train",
        "chest_xray_attention",
        "--synthetic-n",
        "300",
        "--recipe",
        "quick",
        "--epochs",
        "4",
        "--no-progress",
        "--set",
        "ema=0.99",  # the averaged weights must resume exactly too
        "--set",
        "mixup=0.2",  # and so must the blended batches
        *TINY,
        *extra,
    ]


def log_rows(path: Path) -> int:
    if not path.is_file():
        return 0
    with open(path) as f:
        return max(0, sum(1 for _ in csv.reader(f)) - 1)


def test_killed_run_resumes_to_the_same_result(tmp_path):
    home = tmp_path / "home"
    full = subprocess.run(
        train_cmd("--name", "full"), env=cli_env(home), capture_output=True, text=True, timeout=600
    )
    assert full.returncode == 0, full.stderr

    proc = subprocess.Popen(
        train_cmd("--name", "killed"),
        env=cli_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    log = home / "runs" / "killed" / "train_log.csv"
    deadline = time.time() + 600
    while log_rows(log) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # no chance to clean up, like a lost machine
    proc.wait()
    assert not (home / "models" / "killed").exists(), "the run finished before it could be killed"
    assert 2 <= log_rows(log) < 4

    resumed = subprocess.run(
        train_cmd("--name", "killed", "--resume"),
        env=cli_env(home),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "Resuming from epoch" in resumed.stdout
    a = load_file(home / "models" / "full" / "model.safetensors")
    b = load_file(home / "models" / "killed" / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from the uninterrupted run"
    ca = json.loads((home / "models" / "full" / "config.json").read_text())
    cb = json.loads((home / "models" / "killed" / "config.json").read_text())
    assert ca["config"]["thresholds"] == cb["config"]["thresholds"]
    assert ca["metrics"]["macro_auroc"] == cb["metrics"]["macro_auroc"]


def test_resume_refuses_a_checkpoint_of_other_settings(tmp_path):
    home = tmp_path / "home"
    first = subprocess.run(
        train_cmd("--name", "r", "--epochs", "1"),
        env=cli_env(home),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert first.returncode == 0, first.stderr
    again = subprocess.run(
        train_cmd("--name", "r", "--resume", "--lr", "0.1"),
        env=cli_env(home),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode != 0
    assert "different settings" in again.stderr and "Traceback" not in again.stderr


def test_corrupt_image_is_named_and_skipped(tmp_path, monkeypatch):
    from cxrzoo.data.synthetic import write_kaggle_layout

    monkeypatch.setenv("CXRZOO_HOME", str(tmp_path / "home"))
    root = write_kaggle_layout(tmp_path / "nih", 120, size=48, seed=3)
    images = sorted((root / "images_001" / "images").glob("*.png"))
    bad = images[5]
    bad.write_bytes(bad.read_bytes()[:100])  # truncated
    result = CliRunner().invoke(
        main,
        [
            "train",
            "chest_xray_attention",
            "--data",
            str(root),
            "--epochs",
            "1",
            "--recipe",
            "quick",
            "--no-progress",
            *TINY,
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert bad.name in result.output
    from cxrzoo.training.run import DataSpec, load_splits

    splits = load_splits(DataSpec(data=str(root)), echo=lambda _m: None)
    split = next(k for k in ("train", "val", "test") if bad.name in set(getattr(splits, k)["image"]))
    report = CliRunner().invoke(
        main,
        ["evaluate", "chest_xray_attention", "--bootstrap", "0", "--split", split, "--json", "--no-progress"],
        catch_exceptions=False,
    )
    assert report.exit_code == 0, report.output
    # Evaluation skips it too, by name, and scores the rest of that split.
    assert bad.name in report.stderr
    assert json.loads(report.stdout)["n_images"] == len(getattr(splits, split)) - 1


def test_saved_model_carries_calibration_data_split_and_recipe(tmp_path, monkeypatch):
    monkeypatch.setenv("CXRZOO_HOME", str(tmp_path))
    result = CliRunner().invoke(
        main,
        [
            "train",
            "rare_disease",
            "--synthetic-n",
            "200",
            "--epochs",
            "2",
            "--recipe",
            "quick",
            "--no-progress",
            "--name",
            "rd",
            "--set",
            "backbone=test_resnet",
            "--set",
            "feature_dim=8",
            "--image-size",
            "32",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "built-in synthetic phantoms" in result.output
    folder = tmp_path / "models" / "rd"
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
        "ood.safetensors",
        "train_log.csv",
    ]
    doc = json.loads((folder / "config.json").read_text())
    assert len(doc["config"]["thresholds"]) == 14
    assert doc["calibration"]["method"] == "f1" and doc["calibration"]["split"] == "val"
    training = doc["training"]
    assert training["dataset"] == "synthetic" and training["recipe"]["name"] == "quick"
    assert set(training["split"]) == {"train", "val", "test"}
    assert doc["metrics"]["split"] == "val" and "per_class" in doc["metrics"]
    with open(folder / "train_log.csv") as f:
        assert len(list(csv.DictReader(f))) == 2


def test_ablation_is_one_option_away(tmp_path, monkeypatch):
    monkeypatch.setenv("CXRZOO_HOME", str(tmp_path))
    result = CliRunner().invoke(
        main,
        [
            "train",
            "advanced_resnet",
            "--synthetic-n",
            "120",
            "--epochs",
            "1",
            "--recipe",
            "quick",
            "--no-progress",
            "--name",
            "no_attn",
            "--set",
            "attention=false",
            "--set",
            "fpn=false",
            "--set",
            "backbone=test_resnet",
            "--set",
            "in_chans=1",
            "--image-size",
            "32",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    config = cxrzoo.load("no_attn").config
    assert config.attention is False and config.fpn is False


def test_positive_weights_are_inverse_frequency_and_bounded():
    labels = np.zeros((100, 3))
    labels[:50, 0] = 1  # 1:1
    labels[:1, 1] = 1  # 99:1, bounded
    weights = positive_weights(labels, max_weight=20)
    assert weights.tolist() == [1.0, 20.0, 1.0]


def test_recipes_are_named_and_validated():
    report = get_recipe("report")
    assert (report.optimizer, report.lr, report.schedule, report.batch_size) == ("adam", 1e-4, "plateau", 32)
    with pytest.raises(ValueError, match="Did you mean 'report'"):
        get_recipe("reprot")
    with pytest.raises(ValueError, match="optimizer"):
        Recipe(optimizer="adagrad")


@pytest.mark.slow
def test_two_process_ddp_stays_in_sync(tmp_path):
    home = tmp_path / "home"
    env = cli_env(home)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "cxrzoo",
        "train",
        "rare_disease",
        "--synthetic-n",
        "200",
        "--recipe",
        "quick",
        "--epochs",
        "2",
        "--no-progress",
        "--device",
        "cpu",
        "--name",
        "ddp",
        "--set",
        "backbone=test_resnet",
        "--set",
        "feature_dim=8",
        "--image-size",
        "32",
    ]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "parameters identical on 2 ranks" in result.stdout
    doc = json.loads((home / "models" / "ddp" / "config.json").read_text())
    assert doc["training"]["world_size"] == 2


def test_findings_without_validation_positives_get_a_prevalence_threshold():
    from cxrzoo.testing import tiny_model
    from cxrzoo.training.run import calibrate_and_score

    rng = np.random.default_rng(0)
    labels = (rng.random((400, 14)) < 0.2).astype(np.float32)
    labels[:, 13] = 0  # no Hernia in validation
    probs = np.clip(labels * 0.5 + rng.random((400, 14)) * 0.5, 0, 1).astype(np.float32)
    prevalence = np.full(14, 0.2)
    prevalence[13] = 0.05
    model = tiny_model("chest_xray_attention")
    metrics = calibrate_and_score(
        model, labels, probs, method="f1", split="val", dataset="x", train_prevalence=prevalence
    )
    assert model.metadata["calibration"]["fallback"] == ["Hernia"]
    called = (probs[:, 13] >= model.thresholds[13]).mean()
    assert abs(called - 0.05) < 0.01
    assert metrics["per_class"]["Hernia"]["auroc"] is None  # undefined, not 0.5
    assert all(model.thresholds[k] < 0.75 for k in range(13))  # calibrated, not the 0.5 default everywhere


@pytest.mark.parametrize("ema", [None, 0.9])
def test_select_last_runs_every_epoch_and_keeps_the_final_weights(ema):
    from cxrzoo.data.arrays import arrays_for
    from cxrzoo.data.spec import DataSpec, load_splits
    from cxrzoo.testing import tiny_model
    from cxrzoo.training.trainer import Trainer

    model = tiny_model("chest_xray_attention", seed=0)
    quiet = {"echo": lambda _m: None}
    splits = load_splits(DataSpec(dataset="synthetic", options={"n": 160, "size": 32, "seed": 3}), **quiet)
    train = arrays_for(splits.train, model.config, progress=False, **quiet)
    val = arrays_for(splits.val, model.config, progress=False, **quiet)
    # patience 1 would stop a "best" run early; "last" runs every epoch and keeps the final weights.
    recipe = get_recipe("quick").replace(epochs=5, patience=1, min_epochs=0, select="last", ema=ema)
    trainer = Trainer(model, recipe, train, val, progress=False, **quiet)
    result = trainer.fit()
    assert result.epochs_run == 5 and not result.stopped_early
    assert result.best_epoch == 5
    assert result.best_score == pytest.approx(result.history[-1]["val_macro_auroc"], abs=1e-6)
    final = trainer.eval_model.state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(value, final[key].to(value.device)), key
    with pytest.raises(ValueError, match="select"):
        Recipe(select="median")


def test_mixup_blends_images_and_labels_and_keeps_unknowns_unknown():
    from cxrzoo.training.trainer import mixup_batch

    # Image k is the k-th unit pixel, so each blended image shows which images it came from
    # and by what weights; its labels must be blended by exactly those weights.
    x = torch.eye(4).reshape(4, 1, 2, 2)
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, float("nan")], [0.0, 0.0]])
    blended = 0
    for seed in range(20):
        mx, my = mixup_batch(x, y, np.random.default_rng(seed), alpha=0.4)
        weights = mx.reshape(4, 4)
        assert torch.allclose(weights.sum(1), torch.ones(4)) and (weights >= 0).all()
        for i in range(4):
            used = weights[i] > 0
            assert used[i] and used.sum() <= 2  # itself and at most one partner
            unknown = torch.isnan(y[used]).any(0)
            assert torch.equal(torch.isnan(my[i]), unknown)  # unknown in either image: unknown
            expected = (weights[i, used, None] * y[used].nan_to_num(0)).sum(0)
            assert torch.allclose(my[i][~unknown], expected[~unknown])
            blended += int(used.sum() == 2)
    assert blended > 20  # real blends, not the batch handed back
    with pytest.raises(ValueError, match="mixup"):
        Recipe(mixup=-1.0)


def test_training_with_mixup_still_learns():
    from cxrzoo.data.arrays import arrays_for
    from cxrzoo.data.spec import DataSpec, load_splits
    from cxrzoo.testing import tiny_model
    from cxrzoo.training.trainer import Trainer

    model = tiny_model("chest_xray_attention", seed=0)
    quiet = {"echo": lambda _m: None}
    splits = load_splits(DataSpec(dataset="synthetic", options={"n": 240, "size": 32, "seed": 3}), **quiet)
    train = arrays_for(splits.train, model.config, progress=False, **quiet)
    val = arrays_for(splits.val, model.config, progress=False, **quiet)
    recipe = get_recipe("quick").replace(mixup=0.4)
    result = Trainer(model, recipe, train, val, progress=False, **quiet).fit()
    # The synthetic phantoms carry their findings as drawn shapes: a model that learned ranks
    # them far above chance even when every batch it saw was a blend of two images.
    assert result.best_score > 0.75
