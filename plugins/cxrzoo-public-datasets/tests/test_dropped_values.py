"""Values a reader drops are counted by value and reason; linked folders are read; loops are not."""

from __future__ import annotations

import gzip
import os

import pytest
from cxrzoo_public_datasets.testing import WRITERS

from cxrzoo.data import open_dataset


def _rewrite_gz(path, edit):
    with gzip.open(path, "rt") as f:
        lines = f.read().splitlines()
    with gzip.open(path, "wt") as f:
        f.write("\n".join(edit(lines)) + "\n")


def test_mimic_split_values_outside_the_three_are_counted(tmp_path):
    mini = WRITERS["mimic_cxr"](tmp_path / "m")
    path = mini.root / "mimic-cxr-2.0.0-split.csv.gz"

    def edit(lines):
        out = [lines[0]]
        for k, line in enumerate(lines[1:]):
            head, _, _ = line.rpartition(",")
            out.append(f"{head},{['TRAIN', 'bogus', 'TRAIN'][k]}" if k < 3 else line)
        return out

    _rewrite_gz(path, edit)
    report = open_dataset(mini.root).catalog()
    dropped = {p["value"]: p["count"] for p in report.problems["unmapped_value"]}
    assert dropped == {"TRAIN": 2, "bogus": 1}
    assert all(
        p["column"] == "split" and p["file"].endswith("split.csv.gz")
        for p in report.problems["unmapped_value"]
    )
    text = "\n".join(report.lines())
    assert "split = 'TRAIN'" in text and "2 row(s)" in text
    split_values = {v["value"]: v for v in report.label_values if v["column"] == "split"}
    assert split_values["bogus"]["mapped"].startswith("not a split")


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_every_reader_reports_its_label_values(tmp_path, name):
    mini = WRITERS[name](tmp_path / name)
    report = open_dataset(mini.root).catalog()
    if name in ("shenzhen", "montgomery"):  # the label is the file name's suffix, not a column
        return
    assert report.label_values, name
    assert all({"column", "value", "count", "mapped"} <= set(v) for v in report.label_values)
    assert report.value_lines()[0].startswith("label values seen")


def test_a_linked_image_folder_is_read_and_a_loop_is_reported(tmp_path):
    mini = WRITERS["covid19"](tmp_path / "c")
    images = mini.root / "images"
    elsewhere = tmp_path / "other-disk" / "images"
    elsewhere.parent.mkdir()
    os.replace(images, elsewhere)
    images.symlink_to(elsewhere, target_is_directory=True)  # images/ lives on another disk
    (elsewhere / "again").symlink_to(elsewhere, target_is_directory=True)  # a loop
    report = open_dataset(mini.root).catalog()
    assert sorted(report.table["image"]) == sorted(mini.labels)
    assert not report.problems["missing"]
    (loop,) = report.problems["skipped_folder"]
    assert loop["image"].endswith("again") and "loop" in loop["reason"]
