"""Sampling by label and patient-wise splits."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from cxrzoo.data import Nih14, make_splits, split_by_patient
from cxrzoo.data.cli import data
from cxrzoo.data.splits import allocate, stratified_sample
from cxrzoo.labels import LABELS


def synthetic_table(n_patients: int = 400, seed: int = 0, lists: bool = True) -> pd.DataFrame:
    """A table with NIH-like label rarity and 1-6 images per patient."""
    rng = np.random.default_rng(seed)
    rows = []
    prevalence = np.linspace(0.002, 0.2, len(LABELS))
    for p in range(n_patients):
        listed = "test" if p % 5 == 0 else "train_val"
        for k in range(int(rng.integers(1, 7))):
            labels = (rng.random(len(LABELS)) < prevalence).astype(np.uint8)
            rows.append(
                {"image": f"{p:08d}_{k:03d}.png", "path": "", "patient": str(p), "age": 50.0, "sex": "M",
                 "view": "PA", "list": listed if lists else None, "follow_up": k,
                 **dict(zip(LABELS, labels))}
            )  # fmt: skip
    return pd.DataFrame(rows)


def test_allocate_is_exact_and_keeps_every_stratum():
    sizes = np.array([1, 2, 50, 500, 3])
    for total in (5, 7, 28, 100, 555):
        quota = allocate(sizes, total)
        assert quota.sum() == min(total, sizes.sum())
        assert (quota <= sizes).all()
        if total >= len(sizes):
            assert (quota >= 1).all()
    assert allocate(sizes, 2).tolist() == [1, 1, 0, 0, 0]  # the rarest strata first
    assert allocate(sizes, 1000).tolist() == sizes.tolist()


def test_stratified_sample_keeps_rare_labels():
    table = synthetic_table()
    rng = np.random.default_rng(0)
    sample = stratified_sample(table, 0.05, rng)
    assert len(sample) == int(0.05 * len(table) + 0.5)
    present = table[list(LABELS)].sum() > 0
    assert (sample[list(LABELS)].sum()[present] > 0).all()


def test_split_by_patient_is_exact_and_disjoint():
    table = synthetic_table()
    for n_held in (1, 37, 250, len(table) // 2):
        rest, held = split_by_patient(table, n_held, 1)
        assert len(held) == n_held and len(rest) + len(held) == len(table)
        assert not set(rest["patient"]) & set(held["patient"])


def test_make_splits_counts_and_patients():
    table = synthetic_table()
    splits = make_splits(table, fraction=0.5, seed=3)
    n_train_val = int(0.5 * (table["list"] == "train_val").sum() + 0.5)
    n_test = int(0.5 * (table["list"] == "test").sum() + 0.5)
    n_val = int(np.ceil(0.2 * n_train_val - 1e-9))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (n_train_val - n_val, n_val, n_test)
    assert not set(splits.train["patient"]) & set(splits.val["patient"])
    assert set(splits.test["list"]) == {"test"}
    assert splits.test_source == "the official test list"


def test_make_splits_is_deterministic_by_seed():
    table = synthetic_table()
    a, b, c = (make_splits(table, 0.3, seed=s) for s in (7, 7, 8))
    for name in ("train", "val", "test"):
        pd.testing.assert_frame_equal(a.items()[name], b.items()[name])
    assert set(a.val["image"]) != set(c.val["image"])


def test_without_lists_falls_back_to_patient_wise_test_and_says_so():
    table = synthetic_table(lists=False)
    splits = make_splits(table, seed=0)
    assert len(splits.test) == int(np.ceil(0.2 * len(table)))
    everyone = [set(df["patient"]) for df in splits.items().values()]
    assert (
        not (everyone[0] & everyone[1])
        and not (everyone[0] & everyone[2])
        and not (everyone[1] & everyone[2])
    )
    assert "patient-wise" in splits.test_source
    assert any("no train_val_list.txt" in note for note in splits.notes)
    assert "patient-wise" in splits.summary()


def test_distribution_and_dict():
    splits = make_splits(synthetic_table(), fraction=0.5, seed=0)
    dist = splits.distribution()
    assert list(dist.index) == [*LABELS, "No Finding", "Images"]
    assert dist.loc["Images", "train"] == len(splits.train)
    assert dist.loc["Images", "val %"] == 100.0
    doc = json.loads(json.dumps(splits.to_dict()))
    assert doc["splits"]["val"]["images"] == len(splits.val)
    assert doc["splits"]["test"]["patients"] == splits.test["patient"].nunique()
    assert doc["splits"]["train"]["labels"]["Effusion"] == int(splits.train["Effusion"].sum())


def test_bad_arguments():
    with pytest.raises(ValueError, match="fraction"):
        make_splits(synthetic_table(), fraction=0)
    with pytest.raises(ValueError, match="val_fraction"):
        make_splits(synthetic_table(), val_fraction=1.0)


def test_cli_split(kaggle_tree):
    result = CliRunner().invoke(data, ["split", str(kaggle_tree.root), "--seed", "1", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    splits = doc["splits"]
    assert sum(splits[s]["images"] for s in ("train", "val", "test")) == doc["catalog"]["images"]
    assert all("patients" in splits[s] and "labels" in splits[s] for s in splits)
    table = CliRunner().invoke(data, ["split", str(kaggle_tree.root)])
    assert table.exit_code == 0 and "No Finding" in table.output and "Hernia" in table.output


@pytest.mark.realdata
def test_real_sample_split_is_patient_disjoint_and_deterministic(nih_sample):
    table = Nih14(nih_sample).table()
    n_train_val, n_test = (table["list"] == "train_val").sum(), (table["list"] == "test").sum()
    a = make_splits(table, fraction=1.0, seed=0)
    assert (len(a.train) + len(a.val), len(a.test)) == (n_train_val, n_test)
    assert abs(len(a.val) / n_train_val - 0.2) < 0.05  # 80/20, up to whole patients
    assert not set(a.train["patient"]) & set(a.val["patient"])
    assert set(a.test["image"]) == set(table.loc[table["list"] == "test", "image"])
    b = make_splits(table, fraction=1.0, seed=0)
    pd.testing.assert_frame_equal(a.val, b.val)
    half = make_splits(table, fraction=0.5, seed=2)
    assert abs(len(half.train) + len(half.val) - n_train_val / 2) <= 1
    assert abs(len(half.test) - n_test / 2) <= 1
    assert not set(half.train["patient"]) & set(half.val["patient"])


# Tables of any labels, NaN = unknown, official validation lists, several sources.


def _source_table(source: str, n_patients: int, labels: list[str], *, lists: dict[int, str] | None = None,
                  seed: int = 0, unknown: float = 0.0) -> pd.DataFrame:  # fmt: skip
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        for k in range(2):
            values = (rng.random(len(labels)) < 0.2).astype(np.float32)
            values[rng.random(len(labels)) < unknown] = np.nan
            rows.append({"image": f"{source}-{p}-{k}", "path": "", "patient": f"{source}{p}", "age": 40.0, "sex": "F",
                         "view": "PA", "list": (lists or {}).get(p % 10, "train_val") if lists is not None else None,
                         "follow_up": k, "source": source, **dict(zip(labels, values))})  # fmt: skip
    return pd.DataFrame(rows)


def test_unknown_labels_are_not_counted_as_negative_or_positive():
    from cxrzoo.data.splits import strata

    table = _source_table("a", 40, ["Edema", "Fracture"], unknown=0.5)
    table.loc[0, ["Edema", "Fracture"]] = [np.nan, np.nan]
    assert strata(table).iloc[0] == "No Finding"
    dist = make_splits(table, seed=0).distribution()
    assert "train unknown" in dist.columns
    total_unknown = sum(int(dist.loc["Edema", f"{s} unknown"]) for s in ("train", "val", "test"))
    assert total_unknown == int(table["Edema"].isna().sum())
    total_pos = sum(int(dist.loc["Edema", s]) for s in ("train", "val", "test"))
    assert total_pos == int((table["Edema"] == 1).sum())


def test_an_official_validation_list_is_honoured():
    table = _source_table("chex", 60, ["Edema", "Effusion"], lists={0: "val", 1: "val"})
    splits = make_splits(table, seed=1)
    assert set(splits.val["image"]) == set(table.loc[table["list"] == "val", "image"])
    assert not set(splits.train["patient"]) & set(splits.test["patient"])
    assert "patient-wise" in splits.test_source and any("official validation" in n for n in splits.notes)
    assert len(splits.train) + len(splits.val) + len(splits.test) == len(table)


def test_several_sources_are_split_each_on_its_own():
    a = _source_table("a", 50, ["Edema", "Hernia"], lists={0: "test", 1: "test"})
    b = _source_table("b", 30, ["Edema", "Fracture"], seed=2)
    table = pd.concat([a, b], ignore_index=True)
    splits = make_splits(table, seed=0)
    for name, df in splits.items().items():
        assert set(df["source"]) == {"a", "b"}, name
    assert set(splits.test.loc[splits.test["source"] == "a", "image"]) == set(
        a.loc[a["list"] == "test", "image"]
    )
    assert not set(splits.train["patient"]) & set(splits.val["patient"])
    assert splits.test_source.startswith("a: the official test list; b: a patient-wise")
    doc = splits.to_dict()
    assert doc["splits"]["train"]["sources"].keys() == {"a", "b"}
    assert doc["splits"]["train"]["labels"].keys() == {"Edema", "Hernia", "Fracture"}
    # NIH's tables give the same split as before: the per-source path is only taken with several
    single = make_splits(a, seed=0)
    pd.testing.assert_frame_equal(
        single.test,
        make_splits(a.drop(columns="source"), seed=0).test.assign(source="a")[single.test.columns],
    )


def test_data_spec_reads_configs_saved_before_several_sources(make_kaggle_tree):
    from cxrzoo.data.spec import DataSpec

    tree = make_kaggle_tree(bad=False)
    old = {
        "dataset": "nih14",
        "data": str(tree.root),
        "options": {},
        "fraction": 0.5,
        "seed": 3,
        "val_fraction": 0.2,
    }
    spec = DataSpec.from_dict(old)
    assert spec.name == "nih14" and spec.fraction == 0.5 and spec.open().name == "nih14"
    doc = spec.to_dict()
    assert {k: doc[k] for k in old} == old and doc["datasets"] == ["nih14"]
    assert DataSpec.from_dict(doc) == DataSpec(data=str(tree.root), dataset="nih14", fraction=0.5, seed=3)
    synthetic = DataSpec.from_dict({"dataset": "synthetic", "data": None, "options": {"n": 40}})
    assert synthetic.name == "synthetic" and synthetic.options == {"n": 40}
    several = DataSpec(data=[str(tree.root), str(tree.root)])
    assert several.name == "nih14+nih14" and DataSpec.from_dict(several.to_dict()).folders == several.folders
