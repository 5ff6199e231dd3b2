"""The nih14 dataset: the Kaggle layout read as it is, and the dataset registry."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxrzoo.data import TABLE_COLUMNS, DatasetError, Nih14, open_dataset
from cxrzoo.data.nih14 import parse_findings, read_metadata
from cxrzoo.labels import LABELS


def _expected_labels(findings: str) -> list[int]:
    parts = set(findings.split("|"))
    return [int(label in parts) for label in LABELS]


@pytest.mark.parametrize("csv", ["2017", "v2020", "v2020.gz"])
def test_reads_every_csv_flavour(make_kaggle_tree, csv):
    tree = make_kaggle_tree(csv=csv, bad=False)
    table = Nih14(tree.root).table()
    assert list(table.columns) == [*TABLE_COLUMNS, *LABELS]
    assert set(table["source"]) == {"nih14"}
    assert "Unnamed: 11" not in table.columns
    assert sorted(table["image"]) == sorted(tree.good)
    for row in table.itertuples(index=False):
        assert [getattr(row, label) for label in LABELS] == _expected_labels(tree.findings[row.image])
        assert row.list == tree.lists[row.image]
    # Labels are float (1 / 0 / NaN) for every source; NIH's are 0 or 1, never unknown.
    assert all(table[label].dtype == np.float32 for label in LABELS)
    assert table[list(LABELS)].isin([0.0, 1.0]).all().all()
    assert table["age"].dtype == np.float64 and table["age"].notna().all()
    assert set(table["sex"]) == {"M", "F"} and set(table["view"]) == {"PA", "AP"}
    assert table["patient"].map(type).eq(str).all()
    assert all(p.startswith(str(tree.root)) for p in table["path"])


def test_ages_in_nih_first_release_format(make_kaggle_tree):
    tree = make_kaggle_tree(csv="2017", bad=False)
    raw = pd.read_csv(tree.metadata_file, dtype=str)
    assert raw["Patient Age"].str.endswith("Y").any()
    rows = read_metadata(tree.metadata_file)
    expected = raw["Patient ID"].astype(int) + 30
    assert (rows["age"] == expected.to_numpy()).all()


@pytest.mark.parametrize("layout", ["kaggle", "flat", "subfolders"])
def test_finds_images_in_every_layout(make_kaggle_tree, layout):
    tree = make_kaggle_tree(layout=layout, bad=False)
    assert sorted(Nih14(tree.root).table()["image"]) == sorted(tree.good)


def test_without_lists_every_image_is_unlisted(make_kaggle_tree):
    tree = make_kaggle_tree(lists=False, bad=False)
    table = Nih14(tree.root).table()
    assert table["list"].isna().all()


def test_parse_findings():
    onehot, unknown = parse_findings(pd.Series(["No Finding", "Hernia|Effusion", "Pneumonitis|Mass", ""]))
    assert onehot.dtype == np.uint8 and onehot.shape == (4, len(LABELS))
    assert onehot[0].sum() == 0
    assert onehot[1, LABELS.index("Hernia")] == 1 and onehot[1, LABELS.index("Effusion")] == 1
    assert onehot[2, LABELS.index("Mass")] == 1
    assert list(unknown) == ["", "", "Pneumonitis", "(empty)"]


def test_missing_folder_and_missing_csv_are_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        Nih14(tmp_path / "nowhere").table()
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="Data_Entry_2017"):
        Nih14(tmp_path / "empty").table()


def test_csv_without_required_columns(tmp_path):
    (tmp_path / "Data_Entry_2017.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DatasetError, match="Image Index"):
        Nih14(tmp_path).table()


def test_bboxes(make_kaggle_tree):
    tree = make_kaggle_tree(bad=False)
    assert Nih14(tree.root).bboxes() is None
    (tree.root / "BBox_List_2017.csv").write_text(
        "Image Index,Finding Label,Bbox [x,y,w,h],,,\n00000001_000.png,Atelectasis,225.0,547.0,86.7,79.1\n"
    )
    boxes = Nih14(tree.root).bboxes()
    assert list(boxes.columns) == ["image", "label", "x", "y", "w", "h"]
    assert boxes.iloc[0]["label"] == "Atelectasis" and boxes.iloc[0]["w"] == pytest.approx(86.7)


def test_registered_and_opened_by_name_or_path(make_kaggle_tree):
    import cxrzoo

    assert {"nih14", "synthetic"} <= set(cxrzoo.list_datasets())
    tree = make_kaggle_tree(bad=False)
    source = open_dataset(tree.root)
    assert isinstance(source, Nih14) and source.root == tree.root
    assert isinstance(open_dataset(str(tree.root)), Nih14)
    with pytest.raises(DatasetError, match="does not exist"):
        open_dataset(str(tree.root / "missing"))
    with pytest.raises(DatasetError, match="no dataset of that name"):
        open_dataset("nih15")


def test_unknown_option_is_refused(tmp_path):
    with pytest.raises(TypeError, match="no option"):
        Nih14(tmp_path, size=3)


def test_synthetic_materialises_once_in_the_store(cxrzoo_home, monkeypatch):
    synthetic = pytest.importorskip("cxrzoo.data.synthetic")
    calls = []
    real = synthetic.write_kaggle_layout

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(synthetic, "write_kaggle_layout", counting)
    source = open_dataset(None, n=40, size=32, seed=3)
    assert source.root == cxrzoo_home / "data" / "synthetic-n40-s32-seed3-default"
    table = source.table()
    assert len(table) == 40 and calls == [1]
    again = open_dataset("synthetic", n=40, size=32, seed=3).table()
    assert calls == [1]
    pd.testing.assert_frame_equal(table, again)
    assert not [p for p in (cxrzoo_home / "data").iterdir() if p.name.startswith(".")]


@pytest.mark.realdata
def test_real_sample_table(nih_sample, nih_raw):
    table = Nih14(nih_sample).table()
    assert len(table) == len(nih_raw.images) and table["patient"].nunique() == len(nih_raw.patients)
    counts = table.groupby("list")[list(LABELS)].sum()
    for list_name, positives in nih_raw.positives.items():
        for label in LABELS:
            assert counts.loc[list_name, label] == positives.get(label, 0), (list_name, label)
        assert (table["list"] == list_name).sum() == len(nih_raw.lists[list_name] & nih_raw.images)
    no_finding = table[list(LABELS)].sum(axis=1) == 0
    assert no_finding.sum() == sum(p.get("No Finding", 0) for p in nih_raw.positives.values())


def test_cli_synth_writes_a_readable_dataset(tmp_path):
    pytest.importorskip("cxrzoo.data.synthetic")
    from click.testing import CliRunner

    from cxrzoo.data.cli import data

    out = tmp_path / "phantoms"
    args = ["synth", str(out), "--n", "12", "--size", "32", "--seed", "1", "--prevalence", "Hernia=0.5"]
    result = CliRunner().invoke(data, args)
    assert result.exit_code == 0, result.output
    table = Nih14(out).table(verify=True)
    assert len(table) == 12 and set(table["list"]) == {"train_val", "test"}
    # Its own earlier output is replaced; a folder it did not write is refused (exit 3), untouched.
    again = CliRunner().invoke(data, args)
    assert again.exit_code == 0, again.output
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    refused = CliRunner().invoke(data, ["synth", str(foreign), "--n", "4"])
    assert refused.exit_code == 3 and "Traceback" not in refused.output
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    bad = CliRunner().invoke(data, ["synth", str(tmp_path / "x"), "--n", "4", "--prevalence", "Hernio=0.5"])
    assert bad.exit_code == 2 and "Hernio" in bad.output and "Traceback" not in bad.output


# Reliability: malformed metadata and list files are named, never a traceback or a silent loss.


def _tree_with(make_kaggle_tree, edit):
    tree = make_kaggle_tree(csv="v2020", bad=False)
    lines = tree.metadata_file.read_text().splitlines()
    edit(tree, lines)
    tree.metadata_file.write_text("\n".join(lines) + "\n")
    return tree


def test_a_row_with_extra_fields_is_named_and_skipped(make_kaggle_tree):
    def edit(tree, lines):
        lines[1] = lines[1].replace(",", ",Effusion,", 1)  # a comma inside Finding Labels

    tree = _tree_with(make_kaggle_tree, edit)
    shifted = tree.good[0]
    report = Nih14(tree.root).catalog()
    (bad,) = report.problems["bad_row"]
    assert bad["row"] == 2 and "columns would shift" in bad["reason"]
    assert report.images == len(tree.good) - 1 and shifted not in report.usable
    assert "Data_Entry_2017_v2020.csv line 2" in "\n".join(report.lines())


def test_the_first_row_with_extra_fields_does_not_shift_the_others(make_kaggle_tree):
    # pandas reads a first row with one field too many as an index column and shifts every column.
    def edit(tree, lines):
        lines[1] = lines[1] + ",extra"

    tree = _tree_with(make_kaggle_tree, edit)
    report = Nih14(tree.root).catalog()
    assert report.images == len(tree.good) - 1
    assert [b["row"] for b in report.problems["bad_row"]] == [2]


@pytest.mark.parametrize("value", ["-5", "1e400", "150", "abc", "nan"])
def test_invalid_ages_are_reported_and_unknown(make_kaggle_tree, value):
    def edit(tree, lines):
        fields = lines[3].split(",")
        fields[4] = value
        lines[3] = ",".join(fields)

    tree = _tree_with(make_kaggle_tree, edit)
    report = Nih14(tree.root).catalog()
    (bad,) = report.problems["bad_value"]
    assert bad["row"] == 4 and bad["column"] == "Patient Age" and bad["value"] == value
    table = report.table.set_index("image")
    assert np.isnan(table.loc[tree.good[2], "age"])
    assert table.drop(index=tree.good[2])["age"].notna().all()


@pytest.mark.parametrize("value", ["1.5", "-1", "x"])
def test_invalid_follow_up_is_reported_not_a_traceback(make_kaggle_tree, value):
    def edit(tree, lines):
        fields = lines[2].split(",")
        fields[2] = value
        lines[2] = ",".join(fields)

    tree = _tree_with(make_kaggle_tree, edit)
    report = Nih14(tree.root).catalog()
    (bad,) = report.problems["bad_value"]
    assert bad["row"] == 3 and bad["column"] == "Follow-up #"
    assert report.table.set_index("image").loc[tree.good[1], "follow_up"] is pd.NA


def test_a_utf8_bom_keeps_the_first_list_entry(make_kaggle_tree):
    tree = make_kaggle_tree(bad=False)
    path = tree.root / "test_list.txt"
    first = path.read_text().split()[0]
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    table = Nih14(tree.root).table().set_index("image")
    assert table.loc[first, "list"] == "test"
    assert not Nih14(tree.root).catalog().problems.get("list_no_row")


def test_a_list_that_is_a_folder_is_a_clear_error(make_kaggle_tree):
    tree = make_kaggle_tree(bad=False)
    (tree.root / "test_list.txt").unlink()
    (tree.root / "test_list.txt").mkdir()
    with pytest.raises(DatasetError, match=r"test_list.txt is a folder; expected a text file"):
        Nih14(tree.root).table()


def test_a_latin1_list_is_a_clear_error(make_kaggle_tree):
    tree = make_kaggle_tree(bad=False)
    path = tree.root / "train_val_list.txt"
    path.write_bytes(path.read_bytes() + "caf\xe9.png\n".encode("latin-1"))
    with pytest.raises(DatasetError, match=r"train_val_list.txt: not UTF-8 text \(byte 0xe9"):
        Nih14(tree.root).table()


def test_a_folder_of_phantoms_is_detected_as_nih14_and_synthetic_never_detects(tmp_path):
    from cxrzoo.data import detect_datasets
    from cxrzoo.data.synthetic import write_kaggle_layout

    root = write_kaggle_layout(tmp_path / "p", 6, size=32)
    assert "nih14" in detect_datasets(root) and "synthetic" not in detect_datasets(root)
    assert open_dataset(root).name == "nih14"
