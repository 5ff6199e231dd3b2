"""cxrzoo train --find-lr: the learning-rate range test on synthetic data."""

from __future__ import annotations

import csv
import itertools
import re

import numpy as np
from click.testing import CliRunner

from cxrzoo.cli import main
from cxrzoo.training.lr_finder import steepest_descent

TINY = ["--synthetic-n", "120", "--recipe", "quick", "--image-size", "32", "--set", "backbone=test_resnet"]


def test_steepest_descent_finds_the_fastest_fall():
    lrs = np.logspace(-6, 0, 200)
    loss = 1.0 - 0.5 / (1 + np.exp(-(np.log10(lrs) + 3) * 4))  # falls fastest at 1e-3
    assert abs(np.log10(steepest_descent(lrs, loss)) + 3) < 0.1


def test_find_lr_suggests_a_rate_inside_the_sweep_and_records_the_curve(cxrzoo_home):
    from cxrzoo import store

    result = CliRunner().invoke(
        main,
        ["train", "chest_xray_attention", *TINY, "--find-lr", "--find-lr-steps", "60", "--no-progress"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    match = re.search(r"Suggested learning rate: (\S+)", result.output)
    assert match, result.output
    suggested = float(match.group(1))
    assert 1e-6 <= suggested <= 1.0
    path = store.run_path("chest_xray_attention") / "lr_find.csv"
    rows = list(csv.DictReader(path.open()))
    assert 11 <= len(rows) <= 60
    lrs = [float(r["lr"]) for r in rows]
    assert lrs[0] == 1e-6 and all(b > a for a, b in itertools.pairwise(lrs))
    assert min(lrs) <= suggested <= max(lrs)
    assert all(np.isfinite(float(r["loss"])) for r in rows[:-1])
    assert (path.parent / "lr_find.png").stat().st_size > 1000
    assert str(path.parent / "lr_find.png") in result.output
    assert store.list_trained() == []  # no model is saved


def test_find_lr_refuses_resume(cxrzoo_home):
    result = CliRunner().invoke(main, ["train", "chest_xray_attention", *TINY, "--find-lr", "--resume"])
    assert result.exit_code == 2 and "--find-lr" in result.output
