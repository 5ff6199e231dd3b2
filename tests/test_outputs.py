"""Every command that writes a file, walked through the cases that lose a user's data.

For each command with an output path (``predict --out`` in every format, ``evaluate --report``,
``compare --report``, ``explain --out``, ``export --out``, ``data synth OUT``, ``data prepare
--cache-dir``): a foreign file already there is refused before any work and keeps every byte
(and ``--overwrite`` replaces it where the command has the flag); an earlier result of the
same command is replaced; a read-only folder is one line, exit 3, and nothing is created;
missing parent folders are created.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from cxrzoo import store
from cxrzoo.cli import main
from cxrzoo.testing import tiny_model

pytestmark = pytest.mark.xdist_group("outputs")

#: Bytes no cxrzoo command writes: not UTF-8, and no newline at the end.
FOREIGN = b"patient,notes\n1,\xff\xfe caf\xe9 \x00 last line without newline"
EVAL = ["--synthetic-n", "40", "--bootstrap", "0", "--no-progress"]


@dataclass(frozen=True)
class Output:
    """A command writing ``target`` (a path under the working folder ``d``)."""

    args: Callable[[Path, Path], list[str]]  # (working folder, images) -> command line
    target: str  # the output path given on the command line, relative to d
    clash: str  # a file a foreign user may have there, relative to d
    overwrite: bool = True  # whether the command has --overwrite


OUTPUTS = {
    **{
        f"predict-{fmt}": Output(
            lambda d, img, fmt=fmt: ["predict", "cxa", str(img), "--out", str(d / f"preds.{fmt}")],
            f"preds.{fmt}",
            f"preds.{fmt}",
        )
        for fmt in ("csv", "json", "jsonl", "parquet")
    },
    "evaluate": Output(
        lambda d, img: ["evaluate", "cxa", *EVAL, "--report", str(d / "report")],
        "report",
        "report/metrics.json",
    ),
    "compare": Output(
        lambda d, img: ["compare", "cxa", *EVAL, "--report", str(d / "cmp")], "cmp", "cmp/comparison.csv"
    ),
    "explain": Output(
        lambda d, img: ["explain", "cxa", str(img / "img0.png"), "--out", str(d / "cams")],
        "cams",
        "cams/img0_Effusion.png",
    ),
    "export": Output(lambda d, img: ["export", "cxa", "--out", str(d / "m.onnx")], "m.onnx", "m.onnx"),
    "synth": Output(
        lambda d, img: ["data", "synth", str(d / "synth"), "--n", "4", "--size", "32"],
        "synth",
        "synth/Data_Entry_2017.csv",
        overwrite=False,
    ),
}


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    # World-readable and writable, so that an unprivileged user can run the read-only case.
    home = Path(tempfile.mkdtemp(prefix="cxrzoo-outputs-home-"))
    home.chmod(0o777)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CXRZOO_HOME", str(home))
        model = tiny_model("chest_xray_attention", seed=0)
        model.set_thresholds([0.5] * len(model.labels))
        store.save(model, "cxa")
        yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def work(home):
    d = Path(tempfile.mkdtemp(prefix="cxrzoo-outputs-"))
    d.chmod(0o755)
    images = d / "images"
    images.mkdir()
    for i in range(2):
        img = np.random.default_rng(i).integers(0, 255, (40, 40), dtype=np.uint8)
        assert cv2.imwrite(str(images / f"img{i}.png"), img)
    yield d, images
    for p in d.rglob("*"):  # the read-only case leaves folders without write permission
        if p.is_dir():
            p.chmod(0o755)
    shutil.rmtree(d, ignore_errors=True)


def run(args: list[str]):
    return CliRunner().invoke(main, args)


def prepare_args(cache: Path) -> list[str]:
    return [
        "data",
        "prepare",
        "--dataset",
        "synthetic",
        "--synthetic-n",
        "8",
        "--image-size",
        "32",
        "--cache-dir",
        str(cache),
    ]


def snapshot(folder: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(folder.rglob("*"))
        if "images" not in p.parts
    }


@pytest.mark.parametrize("name", list(OUTPUTS))
def test_a_foreign_file_is_refused_and_keeps_every_byte(name, work):
    d, images = work
    out = OUTPUTS[name]
    (d / out.clash).parent.mkdir(parents=True, exist_ok=True)
    (d / out.clash).write_bytes(FOREIGN)
    before = snapshot(d)
    result = run(out.args(d, images))
    assert result.exit_code == 3, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and out.target in lines[0], result.stderr
    assert snapshot(d) == before  # no byte changed, no temporary left behind
    if out.overwrite:
        result = run([*out.args(d, images), "--overwrite"])
        assert result.exit_code == 0, result.output
        assert (d / out.clash).read_bytes() != FOREIGN


@pytest.mark.parametrize("name", list(OUTPUTS))
def test_an_earlier_result_is_replaced(name, work):
    d, images = work
    out = OUTPUTS[name]
    assert run(out.args(d, images)).exit_code == 0
    first = snapshot(d)
    assert (d / out.clash).is_file()
    result = run(out.args(d, images))
    assert result.exit_code == 0, result.output
    after = snapshot(d)
    assert set(after) == set(first)  # the same files, no temporaries beside them
    assert (d / out.clash).stat().st_size > 0


@pytest.mark.parametrize("name", list(OUTPUTS))
def test_missing_parent_folders_are_created(name, work):
    d, images = work
    out = OUTPUTS[name]
    nested = d / "a" / "b"
    args = [
        a.replace(str(d), str(nested)) if a.startswith(str(d / out.target)) else a
        for a in out.args(d, images)
    ]
    result = run(args)
    assert result.exit_code == 0, result.output
    assert (nested / out.clash).is_file()


def test_prepare_leaves_foreign_files_in_the_cache_folder(work):
    d, _ = work
    cache = d / "cache"
    cache.mkdir()
    (cache / "keep.bin").write_bytes(FOREIGN)
    args = prepare_args(cache)
    for _ in range(2):  # built, then reused
        result = run(args)
        assert result.exit_code == 0, result.output
        assert (cache / "keep.bin").read_bytes() == FOREIGN


def _read_only(folder: Path, command: list[str]) -> list[str]:
    """``command`` run where ``folder`` cannot be written: by mode bits for a user, and on a
    read-only bind mount of it (a private mount namespace) for root, whom mode bits do not stop."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return command
    if shutil.which("unshare") is None:
        pytest.skip("root ignores file modes, and unshare(1) is not installed for a read-only mount")
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
    return ["unshare", "-m", "sh", "-c", script, "sh", str(folder), *command]


@pytest.mark.parametrize("name", [*OUTPUTS, "prepare"])
def test_a_read_only_folder_is_one_line_and_nothing_is_created(name, work, home):
    d, images = work
    locked = d / "locked"
    locked.mkdir()
    if name == "prepare":
        args = prepare_args(locked / "c")
    else:
        out = OUTPUTS[name]
        args = [
            a.replace(str(d), str(locked)) if a.startswith(str(d / out.target)) else a
            for a in out.args(d, images)
        ]
    command = _read_only(locked, [sys.executable, "-m", "cxrzoo", *args])
    env = {**os.environ, "CXRZOO_HOME": str(home)}
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=d, timeout=300)
    if proc.stderr.startswith("mount:") or proc.stderr.startswith("unshare:"):
        pytest.skip(f"no read-only mount here: {proc.stderr.strip()}")
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "locked" in lines[0], proc.stderr
    assert list(locked.iterdir()) == []
