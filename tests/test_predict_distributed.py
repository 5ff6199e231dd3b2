"""``torchrun --nproc-per-node 2 -m cxrzoo predict`` on CPU (gloo): the same table as one process,
and ``--resume`` after a rank dies completes it exactly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from cxrzoo import store
from cxrzoo.cli import main
from cxrzoo.reports.distributed import parts_folder
from cxrzoo.testing import tiny_model

pytestmark = pytest.mark.xdist_group("distributed")

MODEL = "chest_xray_attention"

#: Run under torchrun instead of ``-m cxrzoo``: rank 1 dies (as if killed) once its first batch
#: is on disk, so that the job stops half done.
CRASH = """
import os, sys
from cxrzoo.reports import distributed

if os.environ.get("RANK") == "1":
    write = distributed._Part.write

    def write_then_die(self, rows):
        write(self, rows)
        if rows:
            os._exit(9)

    distributed._Part.write = write_then_die
from cxrzoo.cli import main

sys.exit(main())
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    folder = tmp_path_factory.mktemp("images")
    for i in range(9):
        img = np.random.default_rng(i).integers(0, 255, (48, 40), dtype=np.uint8)
        cv2.rectangle(img, (4 + i, 6), (22, 30), 230, -1)
        assert cv2.imwrite(str(folder / f"img{i}.png"), img)
    (folder / "broken.png").write_bytes(b"not an image")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CXRZOO_HOME", str(home))
        model = tiny_model(MODEL)
        model.set_thresholds([0.3, 0.7] * 7)
        store.save(model, MODEL)
        yield home, folder


def one_process(folder: Path, out: Path, *options: str) -> str:
    args = ["predict", MODEL, str(folder), "--out", str(out), "--batch-size", "1", "--workers", "0"]
    result = CliRunner().invoke(main, [*args, *options])
    assert result.exit_code == 1, result.output  # broken.png is named, the others predicted
    return out.read_text()


def torchrun(
    home: Path, *args: str, script: Path | None = None, timeout: float = 240
) -> subprocess.CompletedProcess:
    env = {**os.environ, "CXRZOO_HOME": str(home), "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    target = [str(script)] if script else ["-m", "cxrzoo"]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        *target,
        *args,
    ]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def test_two_ranks_write_the_table_of_one_process(setup, tmp_path):
    home, folder = setup
    expected = one_process(folder, tmp_path / "one.csv", "--uncertainty")
    assert "uncertainty_Edema" in expected.splitlines()[0]
    out = tmp_path / "two.csv"
    args = ("--out", str(out), "--batch-size", "1", "--workers", "0", "--uncertainty")
    run = torchrun(home, "predict", MODEL, str(folder), *args)
    assert run.returncode != 0  # broken.png: exit code 1, as in one process
    assert "Predicted 9 image(s) on 2 rank(s)" in run.stderr + run.stdout, run.stderr[-3000:]
    assert "broken.png (undecodable" in run.stderr + run.stdout
    # The same rows, in input order, each once, with the same probabilities (and uncertainty
    # columns) to the last bit.
    assert out.read_text() == expected
    assert not parts_folder(out).exists()


def test_resume_after_a_rank_dies_completes_the_table_exactly(setup, tmp_path):
    home, folder = setup
    expected = one_process(folder, tmp_path / "one.csv")
    out = tmp_path / "two.csv"
    crash = tmp_path / "crash.py"
    crash.write_text(CRASH)
    args = ("predict", MODEL, str(folder), "--out", str(out), "--batch-size", "1", "--workers", "0")
    died = torchrun(home, *args, script=crash)
    assert died.returncode != 0
    assert not out.exists()  # the table is only ever written complete
    parts = sorted(parts_folder(out).glob("rank-*.jsonl"))
    kept = sum(len(p.read_text().splitlines()) for p in parts)
    assert 1 <= kept < 10
    resumed = torchrun(home, *args, "--resume")
    text = resumed.stderr + resumed.stdout
    assert f"{kept} already done skipped" in text, text[-3000:]
    assert out.read_text() == expected
    assert not parts_folder(out).exists()


def test_a_dead_job_can_be_resumed_by_one_process(setup, tmp_path):
    home, folder = setup
    expected = one_process(folder, tmp_path / "one.csv")
    out = tmp_path / "two.csv"
    crash = tmp_path / "crash.py"
    crash.write_text(CRASH)
    args = ["predict", MODEL, str(folder), "--out", str(out), "--batch-size", "1", "--workers", "0"]
    assert torchrun(home, *args, script=crash).returncode != 0
    result = CliRunner().invoke(main, [*args, "--resume"])
    assert result.exit_code == 1 and "on 1 rank(s)" in result.output, result.output
    assert out.read_text() == expected


def test_under_torchrun_predict_needs_out(setup, tmp_path, monkeypatch):
    _, folder = setup
    monkeypatch.setenv("WORLD_SIZE", "2")
    result = CliRunner().invoke(main, ["predict", MODEL, str(folder)])
    assert result.exit_code == 2 and "Under torchrun, cxrzoo predict needs --out FILE" in result.output


def test_rank_0_writes_each_image_once_in_input_order_and_refuses_gaps(tmp_path):
    from cxrzoo.errors import DataError
    from cxrzoo.reports.distributed import _assemble
    from cxrzoo.reports.predictions import make_row

    labels = ["A", "B"]
    paths = [tmp_path / f"img{i}.png" for i in range(4)]
    out = tmp_path / "table.csv"
    parts = parts_folder(out)
    parts.mkdir()

    def part(name: str, indices: list[int], tail: str = "") -> None:
        rows = [make_row(str(paths[i]), labels, np.array([i / 10, 1 - i / 10]), [], None) for i in indices]
        (parts / name).write_text("".join(json.dumps(r) + "\n" for r in rows) + tail)

    # Image 2 in two parts (a resumed job with another number of ranks), an unfinished line.
    part("rank-0.jsonl", [0, 2], tail='{"path": "cut')
    part("rank-1.jsonl", [3, 2])
    with pytest.raises(DataError, match=r"1 image\(s\) have no row.*img1.png.*--resume"):
        _assemble(out, parts, paths, labels, [], resume=False, overwrite=False)
    assert not out.exists() and parts.is_dir()
    part("rank-2.jsonl", [1])
    assert _assemble(out, parts, paths, labels, [], resume=False, overwrite=False) == []
    lines = out.read_text().splitlines()
    assert lines[0] == "path,A,B,positives,error"
    assert [line.split(",")[0] for line in lines[1:]] == [str(p) for p in paths]
    assert not parts.exists()
