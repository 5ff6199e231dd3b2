"""Each reader of cxrzoo-public-datasets on a miniature of its data set in the official layout."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from cxrzoo_public_datasets.testing import WRITERS, Miniature

from cxrzoo.data import detect_datasets, make_splits, open_dataset
from cxrzoo.data.base import TABLE_COLUMNS, DatasetError, label_targets
from cxrzoo.plugins import datasets

NAMES = sorted(WRITERS)


@pytest.fixture(params=NAMES)
def mini(request, tmp_path) -> Miniature:
    return WRITERS[request.param](tmp_path / request.param)


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def test_every_reader_is_registered_and_declares_canonical_labels():
    from cxrzoo.labels import canonical

    for name in NAMES:
        cls = datasets.get(name)
        assert cls.name == name
        assert cls.labels and len(set(cls.labels)) == len(cls.labels)
        assert all(canonical(label) == label for label in cls.labels), name


def test_reader_reads_its_miniature_end_to_end(mini):
    source = open_dataset(mini.root)
    assert source.name == mini.name
    report = source.catalog(verify=True)  # every image decodes, DICOM ones included
    table = report.table
    assert list(table.columns) == [*TABLE_COLUMNS, *source.label_names]
    assert set(table["source"]) == {mini.name}
    assert sorted(table["image"]) == sorted(mini.labels)
    for key, expected in mini.problems.items():
        found = report.problems.get(key, [])
        names = [
            item.get("image") or item.get("label") or item.get("row") if isinstance(item, dict) else item
            for item in found
        ]
        assert sorted(map(str, names)) == sorted(map(str, expected)), (key, found)
    rows = table.set_index("image")
    for image, labels in mini.labels.items():
        for label, value in labels.items():
            got = float(rows.loc[image, label])
            assert _same(got, value), (image, label, got, value)
        assert rows.loc[image, "patient"] == mini.patients[image]
        listed = rows.loc[image, "list"]
        assert (listed if isinstance(listed, str) else None) == mini.lists[image]
        if image in mini.views:
            assert rows.loc[image, "view"] == mini.views[image]
    for dtype in table[list(source.label_names)].dtypes:
        assert dtype == np.float32
    # the problems are named in the printed report
    text = "\n".join(report.lines(limit=50))
    for expected in mini.problems.values():
        for item in expected:
            assert str(item) in text


def test_split_is_patient_wise_and_honours_the_official_lists(mini):
    table = open_dataset(mini.root).table()
    splits = make_splits(table, seed=0, val_fraction=0.3, test_fraction=0.3)
    sides = {name: set(df["patient"]) for name, df in splits.items().items()}
    if not (table["list"] == "val").any():
        assert not sides["train"] & sides["val"]
    assert sum(len(df) for df in splits.items().values()) == len(table)
    for name, listed in (("test", "test"), ("val", "val")):
        official = set(table.loc[table["list"] == listed, "image"])
        if official:
            assert set(splits.items()[name]["image"]) == official
    doc = splits.to_dict()
    assert set(doc["splits"]["train"]["labels"]) == set(open_dataset(mini.root).label_names)


@pytest.mark.parametrize("policy, expected", [("ignore", math.nan), ("ones", 1.0), ("zeros", 0.0)])
@pytest.mark.parametrize("name", ["chexpert", "mimic_cxr"])
def test_uncertain_labels_follow_the_option(tmp_path, name, policy, expected):
    mini = WRITERS[name](tmp_path / name)
    assert mini.uncertain
    rows = open_dataset(mini.root, uncertain=policy).table().set_index("image")
    for image, label in mini.uncertain:
        assert _same(float(rows.loc[image, label]), expected), (image, label)
    # certain labels do not move
    certain = open_dataset(mini.root).table().set_index("image")
    for image, labels in mini.labels.items():
        for label, value in labels.items():
            if (image, label) not in mini.uncertain:
                assert _same(float(certain.loc[image, label]), value)


@pytest.mark.parametrize("name", ["chexpert", "mimic_cxr"])
def test_an_invalid_uncertain_value_names_the_option_and_the_choices(tmp_path, name):
    from cxrzoo.errors import UserError

    with pytest.raises(UserError, match=r"uncertain='maybe'.*ignore, ones, zeros"):
        open_dataset(WRITERS[name](tmp_path / name).root, uncertain="maybe")


def test_mimic_labeler_option(tmp_path):
    mini = WRITERS["mimic_cxr"](tmp_path / "m")
    negbio = open_dataset(mini.root, labeler="negbio").table().set_index("image")
    image = "2a2277a9-b0ded155-c0de8eb9-c124d10e-82c5caab"  # CheXpert says Edema -1, NegBio 1
    assert negbio.loc[image, "Edema"] == 1.0
    assert math.isnan(open_dataset(mini.root).table().set_index("image").loc[image, "Edema"])


def test_vindr_vote_any(tmp_path):
    mini = WRITERS["vindr_cxr"](tmp_path / "v")
    rows = open_dataset(mini.root, vote="any").table().set_index("image")
    image = "0005e8e3701dfb1dd93d53e2ff537b6e"  # Pneumothorax marked by 1 reader of 3
    assert rows.loc[image, "Pneumothorax"] == 1.0
    assert open_dataset(mini.root).table().set_index("image").loc[image, "Pneumothorax"] == 0.0


def test_a_model_label_the_source_lacks_is_unknown_for_every_image(mini):
    table = open_dataset(mini.root).table()
    model_labels = ["Effusion", "Hernia", "Pneumothorax", "Tuberculosis", "Fracture"]
    targets, known = label_targets(table, model_labels)
    for k, label in enumerate(model_labels):
        if label not in table.columns:
            assert np.isnan(targets[:, k]).all() and not known[:, k].any()
        else:
            np.testing.assert_array_equal(targets[:, k], table[label].to_numpy(dtype=np.float32))


def test_each_miniature_is_detected_as_its_own_layout(mini):
    assert detect_datasets(mini.root) == [mini.name]


def test_empty_and_ambiguous_folders_are_clear_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"no known dataset layout.*chexpert.*--dataset NAME"):
        open_dataset(tmp_path / "empty")
    both = tmp_path / "both"
    WRITERS["siim_pneumothorax"](both)
    WRITERS["rsna_pneumonia"](both)
    with pytest.raises(
        DatasetError, match=r"several datasets \(rsna_pneumonia, siim_pneumothorax\).*--dataset NAME"
    ):
        open_dataset(both)
    assert open_dataset(both, dataset="rsna_pneumonia").name == "rsna_pneumonia"


def test_problems_are_reported_by_file_and_line(tmp_path):
    mini = WRITERS["chexpert"](tmp_path / "c")
    report = open_dataset(mini.root).catalog()
    (bad,) = report.problems["bad_row"]
    assert bad["row"] == mini.problems["bad_row"][0] and bad["file"].endswith("train.csv")
    text = "\n".join(report.lines())
    assert f"train.csv line {bad['row']}" in text and "Fracture='2.0'" in text


def test_padchest_labels_are_parsed_safely(tmp_path):
    from cxrzoo_public_datasets.padchest import parse_labels

    assert parse_labels("['pleural effusion', ' Cardiomegaly']") == ["pleural effusion", "cardiomegaly"]
    assert parse_labels("__import__('os').system('echo no')") is None
    assert parse_labels("[1, 2]") is None and parse_labels("['a'") is None


def test_multi_source_table_nih_and_chexpert_phantoms(tmp_path):
    from cxrzoo.data.synthetic import write_chexpert_layout, write_kaggle_layout
    from cxrzoo.labels import LABELS

    nih = write_kaggle_layout(tmp_path / "nih", 12, size=32, seed=3)
    chex = write_chexpert_layout(tmp_path / "chex", 12, size=32, seed=3)
    source = open_dataset([nih, chex])
    table = source.table()
    assert set(table["source"]) == {"nih14", "chexpert"} and len(table) == 24
    assert table["image"].is_unique and table["image"].str.startswith(("nih14/", "chexpert/")).all()
    labels = list(source.label_names)
    assert labels[:14] == list(LABELS)
    assert {"Lung Opacity", "Support Devices", "No Finding", "Enlarged Cardiomediastinum"} <= set(labels)
    nih_rows, chex_rows = table[table["source"] == "nih14"], table[table["source"] == "chexpert"]
    assert nih_rows[["Lung Opacity", "Support Devices", "Fracture"]].isna().all().all()
    assert chex_rows[["Infiltration", "Nodule", "Hernia"]].isna().all().all()
    assert nih_rows[list(LABELS)].notna().all().all()
    # the same phantoms: CheXpert's known answers agree with NIH's labels
    both = pd.merge(
        nih_rows.assign(
            key=nih_rows["image"]
            .str.extract(r"(\d{8})_(\d{3})")
            .apply(lambda r: f"{int(r[0])}-{int(r[1]) + 1}", axis=1)
        ),
        chex_rows.assign(
            key=chex_rows["image"]
            .str.extract(r"patient(\d+)/study(\d+)")
            .apply(lambda r: f"{int(r[0])}-{int(r[1])}", axis=1)
        ),
        on="key",
        suffixes=("_nih", "_chex"),
    )
    assert len(both) == 12
    for label in ("Cardiomegaly", "Effusion", "Edema", "Pneumothorax"):
        known = both[f"{label}_chex"].notna()
        assert (both.loc[known, f"{label}_chex"] == both.loc[known, f"{label}_nih"]).all()
    splits = make_splits(table, seed=0)
    for df in splits.items().values():
        assert not (set(df["patient"]) & set()).__len__()
    train_patients = set(splits.train["patient"])
    assert not train_patients & set(splits.val["patient"]) - set(table.loc[table["list"] == "val", "patient"])
    assert set(splits.val.loc[splits.val["source"] == "chexpert", "list"]) == {"val"}
    assert set(splits.test.loc[splits.test["source"] == "nih14", "list"]) == {"test"}
