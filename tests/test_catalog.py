"""The catalog: bad input reported by name, good images kept; the CLI; full scale without pixels."""

from __future__ import annotations

import json
import time

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from cxrzoo.data import Nih14, make_splits
from cxrzoo.data.catalog import PROBLEMS, classify_failure
from cxrzoo.data.cli import data
from cxrzoo.data.nih14 import write_empty_layout

DECODED_BAD = ("truncated", "empty", "unsupported_mode", "undecodable")


def test_verified_catalog_names_every_bad_file(kaggle_tree):
    source = Nih14(kaggle_tree.root)
    report = source.catalog(verify=True, workers=2)
    problems = report.problems
    for key, names in kaggle_tree.bad.items():
        found = [p["image"] for p in problems[key]] if key == "unknown_label" else problems[key]
        assert found == names, key
    assert problems["unknown_label"][0]["labels"] == "Pneumonitis|Effusion"
    # Line 1 is the header; the unknown row is the 5th bad row after the good ones.
    assert problems["unknown_label"][0]["row"] == len(kaggle_tree.good) + 5
    assert report.verified and report.problem_count == sum(len(v) for v in kaggle_tree.bad.values())
    assert report.rows == kaggle_tree.rows
    assert report.images == len(kaggle_tree.good) == len(report.table)
    assert sorted(source.table()["image"]) == sorted(kaggle_tree.good)
    assert report.unverified_empty == []


def test_fast_catalog_reports_presence_only(kaggle_tree):
    report = Nih14(kaggle_tree.root).catalog()
    assert not report.verified
    for key in ("missing", "no_row", "duplicate_row"):
        assert report.problems[key] == kaggle_tree.bad[key]
    assert [p["image"] for p in report.problems["unknown_label"]] == kaggle_tree.bad["unknown_label"]
    for key in DECODED_BAD:
        assert report.problems[key] == []
    assert report.unverified_empty == kaggle_tree.bad["empty"]
    assert sorted(report.usable) == kaggle_tree.present_unverified


def test_table_after_verify_leaves_out_undecodable(kaggle_tree):
    source = Nih14(kaggle_tree.root)
    assert len(source.table()) == len(kaggle_tree.present_unverified)
    assert sorted(source.table(verify=True)["image"]) == sorted(kaggle_tree.good)
    assert len(source.table()) == len(kaggle_tree.good)  # the verified catalog is reused


def test_report_json_has_every_key(kaggle_tree):
    doc = json.loads(json.dumps(Nih14(kaggle_tree.root).catalog(verify=True).to_dict()))
    for key in (
        "root",
        "verified",
        "rows",
        "images",
        "problems",
        "problem_count",
        "unverified_empty",
        "seconds",
    ):
        assert key in doc
    assert set(PROBLEMS) <= set(doc["problems"])


def test_lists_entries_without_rows_and_images_in_both_lists(make_kaggle_tree):
    tree = make_kaggle_tree(bad=False)
    first = tree.good[0]
    with open(tree.root / "test_list.txt", "a") as f:
        f.write(f"{first}\n99999998_000.png\n")
    report = Nih14(tree.root).catalog()
    assert report.problems["in_both_lists"] == [first]
    assert report.problems["list_no_row"] == ["99999998_000.png"]
    assert report.table.set_index("image").loc[first, "list"] == "test"


def test_decode_failures_tell_truncated_from_corrupt(tmp_path):
    from cxrzoo.data.io import ImageReadError, read_image

    rng = np.random.default_rng(0)
    whole = cv2.imencode(".png", rng.integers(0, 255, (24, 24), dtype=np.uint8))[1].tobytes()
    damaged = bytearray(whole)
    damaged[60:80] = bytes(20)
    (tmp_path / "corrupt.png").write_bytes(bytes(damaged))
    (tmp_path / "cut.png").write_bytes(whole[:-30])
    for name, key in (("corrupt.png", "undecodable"), ("cut.png", "truncated")):
        with pytest.raises(ImageReadError) as info:
            read_image(tmp_path / name)
        assert classify_failure(str(tmp_path / name), info.value.reason) == key
    assert classify_failure("x.png", "empty file") == "empty"


def test_cli_catalog_prints_every_problem_without_traceback(kaggle_tree):
    result = CliRunner().invoke(data, ["catalog", str(kaggle_tree.root), "--verify"])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    for names in kaggle_tree.bad.values():
        for name in names:
            assert name in result.output
    assert f"{len(kaggle_tree.good)} usable images" in result.output
    strict = CliRunner().invoke(data, ["catalog", str(kaggle_tree.root), "--strict"])
    assert strict.exit_code == 1


def test_cli_catalog_json_parses(kaggle_tree):
    result = CliRunner().invoke(data, ["catalog", str(kaggle_tree.root), "--verify", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["images"] == len(kaggle_tree.good)
    assert doc["problems"]["truncated"] == kaggle_tree.bad["truncated"]


def test_cli_long_problem_lists_are_truncated(make_kaggle_tree):
    tree = make_kaggle_tree(bad=False)
    for i in range(25):
        (tree.root / "images_001" / "images" / f"88888888_{i:03d}.png").write_bytes(b"")
    result = CliRunner().invoke(data, ["catalog", str(tree.root), "--limit", "5"])
    assert "25 no_row" in result.output and "and 20 more no_row" in result.output
    assert "88888888_024.png" not in result.output


@pytest.mark.parametrize(
    "args", [["catalog", "{tmp}/nowhere"], ["split", "{tmp}/nowhere"], ["catalog", "{tmp}"]]
)
def test_cli_errors_are_one_line(tmp_path, args):
    result = CliRunner().invoke(data, [a.format(tmp=tmp_path) for a in args])
    assert result.exit_code == 3  # a data error (2 is for a bad command line)
    assert "Traceback" not in result.output
    assert result.output.startswith("Error: ") and len(result.output.strip().splitlines()) == 1


@pytest.mark.realdata
def test_real_sample_verifies(nih_sample, nih_raw):
    report = Nih14(nih_sample).catalog(verify=True)
    assert report.images == len(nih_raw.images) and report.problem_count == 0
    listed = {name: len(members & nih_raw.images) for name, members in nih_raw.lists.items()}
    unlisted = len(nih_raw.images - set().union(*nih_raw.lists.values()))
    assert report.lists == {**listed, "unlisted": unlisted}


@pytest.mark.realdata
def test_full_scale_tree_of_empty_files(nih_metadata, tmp_path):
    """112,120 empty files named after NIH's metadata: catalogued in seconds, split exactly."""
    root = write_empty_layout(nih_metadata, tmp_path / "nih", n_test=25_596)
    source = Nih14(root)
    start = time.perf_counter()
    report = source.catalog()
    seconds = time.perf_counter() - start
    assert report.images == 112_120 and report.problem_count == 0
    assert len(report.unverified_empty) == 112_120
    assert report.lists == {"train_val": 86_524, "test": 25_596, "unlisted": 0}
    assert seconds < 5.0
    splits = make_splits(source.table(), fraction=0.05, seed=0)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (3_460, 866, 1_280)
    assert not set(splits.train["patient"]) & set(splits.val["patient"])
