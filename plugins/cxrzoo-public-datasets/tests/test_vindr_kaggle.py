"""vindr_cxr on the Kaggle VinBigData competition's train.csv layout (one row per box per reader)."""

from __future__ import annotations

import math

import pytest
from cxrzoo_public_datasets.testing import write_dicom

from cxrzoo.data import open_dataset

HEADER = "image_id,class_name,class_id,rad_id,x_min,y_min,x_max,y_max"
ROWS = [
    # three readers; Cardiomegaly by two (one of them with two boxes), Pleural effusion by one
    "a1,Cardiomegaly,3,R10,691.0,1375.0,1653.0,1831.0",
    "a1,Cardiomegaly,3,R10,700.0,1375.0,1653.0,1831.0",
    "a1,Cardiomegaly,3,R8,691.0,1375.0,1653.0,1831.0",
    "a1,Pleural effusion,10,R8,10.0,10.0,50.0,50.0",
    "a1,No finding,14,R9,,,,",
    "b2,No finding,14,R11,,,,",
    "b2,No finding,14,R7,,,,",
    "b2,No finding,14,R2,,,,",
    # two readers split: a tie
    "c3,Aortic enlargement,0,R8,1264.0,743.0,1611.0,1019.0",
    "c3,No finding,14,R9,,,,",
    "c3,Rib fracture,20,R9,1.0,1.0,2.0,2.0",  # not a competition class: counted, ignored
]


@pytest.fixture
def kaggle(tmp_path):
    root = tmp_path / "vinbigdata"
    root.mkdir()
    (root / "train.csv").write_text("\n".join([HEADER, *ROWS]) + "\n")
    for k, image in enumerate(["a1", "b2", "c3"]):
        write_dicom(root / "train" / f"{image}.dicom", k, PatientAge="045Y", PatientSex="F")
    return root


def _table(root, **options):
    source = open_dataset(root) if not options else None
    if source is None:
        from cxrzoo_public_datasets.vindr_cxr import VinDrCxr

        source = VinDrCxr(root, **options)
    report = source.catalog()
    return report, report.table.set_index("image")


def test_kaggle_layout_is_detected_and_votes_by_majority(kaggle):
    report, table = _table(kaggle)
    assert report.images == 3 and set(table["list"]) == {"train_val"}
    assert table.loc["a1", "Cardiomegaly"] == 1.0  # 2 of 3 readers (boxes of one reader count once)
    assert table.loc["a1", "Effusion"] == 0.0  # 1 of 3
    assert table.loc["b2", "No Finding"] == 1.0 and table.loc["b2", "Cardiomegaly"] == 0.0
    assert math.isnan(table.loc["c3", "Aortic Enlargement"])  # 1 of 2: a tie
    assert math.isnan(table.loc["a1", "Rib Fracture"])  # not in the Kaggle file: unknown
    (unmapped,) = report.problems["unmapped_label"]
    assert unmapped["label"] == "Rib fracture" and unmapped["count"] == 1
    values = {v["value"]: v["count"] for v in report.label_values}
    assert values["No finding"] == 5 and values["Cardiomegaly"] == 3


def test_kaggle_vote_any(kaggle):
    _, table = _table(kaggle, vote="any")
    assert table.loc["a1", "Effusion"] == 1.0 and table.loc["c3", "Aortic Enlargement"] == 1.0
    assert table.loc["b2", "Effusion"] == 0.0
