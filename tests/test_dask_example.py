"""examples/dask_predict.py writes the table of 'cxrzoo predict' (with Dask's synchronous
scheduler when Dask is installed, else a stand-in with Dask's delayed/compute interface)."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from cxrzoo import store
from cxrzoo.cli import main
from cxrzoo.testing import tiny_model

EXAMPLE = Path(__file__).parents[1] / "examples" / "dask_predict.py"
MODEL = "chest_xray_attention"


def load_example():
    spec = importlib.util.spec_from_file_location("dask_predict", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_dask() -> types.ModuleType:
    module = types.ModuleType("dask")
    module.delayed = lambda f: lambda *a, **k: (f, a, k)
    module.compute = lambda *tasks, scheduler=None: tuple(f(*a, **k) for f, a, k in tasks)
    return module


def test_dask_example_writes_the_predict_table(tmp_path, monkeypatch):
    monkeypatch.setenv("CXRZOO_HOME", str(tmp_path / "home"))
    store.save(tiny_model(MODEL), MODEL)
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(5):
        img = np.random.default_rng(i).integers(0, 255, (40, 40), dtype=np.uint8)
        assert cv2.imwrite(str(folder / f"img{i}.png"), img)
    expected = tmp_path / "one.csv"
    args = [MODEL, str(folder), "--batch-size", "1"]
    assert (
        CliRunner().invoke(main, ["predict", *args, "--out", str(expected), "--workers", "0"]).exit_code == 0
    )
    try:
        import dask  # noqa: F401

        scheduler = "synchronous"
    except ImportError:
        monkeypatch.setitem(sys.modules, "dask", fake_dask())
        scheduler = "threads"
    out = tmp_path / "dask.csv"
    example = load_example()
    assert example.main([*args, "--out", str(out), "--chunk", "2", "--scheduler", scheduler]) == 0
    assert out.read_text() == expected.read_text()
    with pytest.raises(Exception, match="not a cxrzoo prediction table"):
        (tmp_path / "notes.csv").write_text("my notes\n")
        example.main([*args, "--out", str(tmp_path / "notes.csv")])
