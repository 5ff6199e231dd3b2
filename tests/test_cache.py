"""The preprocessing cache: built once, reused, rebuilt on change, never half-built."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from click.testing import CliRunner

from cxrzoo.data import Nih14
from cxrzoo.data import cache as cache_module
from cxrzoo.data.cache import INDEX_FILE, CacheError, ImageCache, build_cache, cache_path
from cxrzoo.data.cli import data
from cxrzoo.data.io import read_image
from cxrzoo.transforms.base import Preprocessing


@pytest.fixture
def count_decodes(monkeypatch):
    calls: list[str] = []
    lock = threading.Lock()

    def counting(path):
        with lock:
            calls.append(str(path))
        return read_image(path)

    monkeypatch.setattr(cache_module, "read_image", counting)
    return calls


def _pre(size: int = 16, *steps: str) -> Preprocessing:
    return Preprocessing([*steps, "resize", "scale"], image_size=size)


def test_built_once_then_reused(kaggle_tree, cxrzoo_home, count_decodes):
    table = Nih14(kaggle_tree.root).table(verify=True)
    cache = build_cache(table, _pre(), progress=False, workers=2)
    assert cache.built and len(cache) == len(table) == len(count_decodes)
    assert cache.folder.parent == cxrzoo_home / "cache"
    assert isinstance(cache.images, np.memmap) and not cache.images.flags.writeable
    assert cache.images.shape == (len(table), 16, 16) and cache.images.dtype == np.uint8
    name = table["image"].iloc[3]
    expected = _pre().image(read_image(table["path"].iloc[3]), name=name)
    np.testing.assert_array_equal(cache.images[cache.index_of(name)], expected)
    assert (cache.indices(table["image"]) >= 0).all()

    again = build_cache(table.sample(frac=1.0, random_state=0), _pre(), progress=False)
    assert not again.built and len(count_decodes) == len(table)
    assert again.folder == cache.folder
    assert ImageCache.lookup(table, _pre()) is not None


def test_threaded_build_matches_one_by_one(kaggle_tree, cxrzoo_home):
    table = Nih14(kaggle_tree.root).table(verify=True)
    pre = _pre(16, "clahe(tile=2)")
    cache = build_cache(table, pre, progress=False, workers=2)
    for row in table.itertuples(index=False):
        np.testing.assert_array_equal(cache.get(row.image), pre.image(read_image(row.path), name=row.image))


def test_rebuilt_when_preprocessing_or_data_change(kaggle_tree, cxrzoo_home, count_decodes):
    table = Nih14(kaggle_tree.root).table(verify=True)
    first = build_cache(table, _pre(), progress=False)
    other = build_cache(table, _pre(16, "clahe"), progress=False)
    assert other.built and other.folder != first.folder
    assert len(count_decodes) == 2 * len(table)
    bigger = build_cache(table, _pre(24), progress=False)
    assert bigger.images.shape[1:] == (24, 24)
    path = table["path"].iloc[0]
    with open(path, "ab") as f:  # same name, new content
        f.write(b"\0")
    assert cache_path(table, _pre()) != first.folder


def test_corrupt_image_is_skipped_and_named(kaggle_tree, cxrzoo_home):
    table = Nih14(kaggle_tree.root).table()  # not verified: the bad files are still in it
    with pytest.warns(UserWarning, match=kaggle_tree.bad["truncated"][0]):
        cache = build_cache(table, _pre(), progress=False)
    bad = {n for k in ("truncated", "empty", "undecodable", "unsupported_mode") for n in kaggle_tree.bad[k]}
    assert set(cache.failed) == bad
    assert sorted(cache.names) == sorted(kaggle_tree.good)
    assert cache.images.shape[0] == len(kaggle_tree.good)
    with pytest.raises(KeyError, match="truncated"):
        cache.index_of(kaggle_tree.bad["truncated"][0])
    index = json.loads((cache.folder / INDEX_FILE).read_text())
    assert set(index["failed"]) == bad and index["shape"] == [len(kaggle_tree.good), 16, 16]
    for name in kaggle_tree.good:
        assert cache.images[cache.index_of(name)].any()


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_interrupted_build_leaves_no_cache(kaggle_tree, cxrzoo_home, count_decodes, error):
    table = Nih14(kaggle_tree.root).table(verify=True)
    pre = _pre()
    real_image = pre.image
    seen = []

    def failing(img, **context):
        seen.append(1)
        if len(seen) == len(table) // 2:
            raise error("interrupted")
        return real_image(img, **context)

    pre.image = failing  # type: ignore[method-assign]
    with pytest.raises(error):
        build_cache(table, pre, progress=False, workers=2)
    folder = cache_path(table, _pre())
    assert not folder.exists()
    # No temporary folder left either (the hidden folder of lock files is not one).
    assert [p for p in (cxrzoo_home / "cache").iterdir() if p.name != ".locks"] == []
    with pytest.raises(CacheError):
        ImageCache.open(folder)
    assert ImageCache.lookup(table, _pre()) is None

    count_decodes.clear()
    cache = build_cache(table, _pre(), progress=False)
    assert cache.built and len(count_decodes) == len(table) and len(cache) == len(table)


def test_folder_without_index_is_not_a_cache(kaggle_tree, tmp_path):
    (tmp_path / "images.npy").write_bytes(b"")
    with pytest.raises(CacheError, match="No complete image cache"):
        ImageCache.open(tmp_path)


def test_empty_table(kaggle_tree, cxrzoo_home):
    table = Nih14(kaggle_tree.root).table().iloc[:0]
    cache = build_cache(table, _pre(), progress=False)
    assert len(cache) == 0 and cache.images.shape == (0, 16, 16)
    assert not build_cache(table, _pre(), progress=False).built


def test_cli_prepare(kaggle_tree, cxrzoo_home):
    args = [
        "prepare",
        str(kaggle_tree.root),
        "--image-size",
        "16",
        "--preprocessing",
        "clahe(clip_limit=2.0, tile=4),resize",
    ]
    result = CliRunner().invoke(data, args)
    assert result.exit_code == 0, result.output
    assert "images/s" in result.output and str(cxrzoo_home / "cache") in result.output
    assert kaggle_tree.bad["truncated"][0] in result.output
    again = CliRunner().invoke(data, args)
    assert "reused" in again.output
    bad = CliRunner().invoke(
        data, ["prepare", str(kaggle_tree.root), "--image-size", "16", "--preprocessing", "nope"]
    )
    # An unknown transform is a user error: exit code 2.
    assert bad.exit_code == 2 and "Traceback" not in bad.output and "nope" in bad.output


def test_cli_prepare_builds_the_cache_training_uses_at_that_size(kaggle_tree, cxrzoo_home):
    # Without --preprocessing, prepare caches what `cxrzoo train --image-size N` will ask for:
    # CLAHE on the full image from 128 px up, none below.
    for size, steps in (("64", "center_crop, resize"), ("128", "center_crop, clahe, resize")):
        result = CliRunner().invoke(data, ["prepare", str(kaggle_tree.root), "--image-size", size])
        assert result.exit_code == 0, result.output
        assert f"of {size}x{size} ({steps})" in result.output


@pytest.mark.realdata
def test_real_sample_cache(nih_sample, cxrzoo_home):
    table = Nih14(nih_sample).table()
    cache = build_cache(table, Preprocessing(["clahe", "resize", "scale"], image_size=64), progress=False)
    assert len(cache) == len(table) and not cache.failed
    assert cache.images_per_second > 0
