"""The covid19 reader on every shape its metadata.csv has had, written by the test.

The headers and the value forms are those of published versions of
ieee8023/covid-chestxray-dataset (the first version of March 2020 and the later ones); the rows
are made up. Every X-ray row is either usable or reported with its reason.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from cxrzoo_public_datasets.covid19 import LABELS, parse_finding
from cxrzoo_public_datasets.testing import write_image

from cxrzoo.data import open_dataset

#: The first version's header: capital P, " url" with a leading space, no modality/folder.
FIRST_HEADER = "Patientid,offset,sex,age,finding,survival,view,date,location,filename,doi, url,license,notes"
#: A later version's header, ending with a comma.
LATER_HEADER = (
    "patientid,offset,sex,age,finding,RT_PCR_positive,survival,intubated,intubation_present,went_icu,"
    "in_icu,needed_supplemental_O2,extubated,temperature,pO2_saturation,leukocyte_count,"
    "neutrophil_count,lymphocyte_count,view,modality,date,location,folder,filename,doi,url,license,"
    "clinical_notes,other_notes,"
)
FIRST_ROWS = [  # patient, finding, view, filename
    ("1", "COVID-19", "PA", "covid-a.jpg"),
    ("2", "COVID-19", "L", "covid-b.jpeg"),
    ("3", "SARS", "PA", "sars-a.jpeg"),
    ("5", "ARDS", "PA", "ARDSSevere.png"),
    ("6", "Streptococcus", "PA", "strep.jpg"),
    ("7", "Pneumocystis", "AP", "pcp.jpg"),
    ("8", "COVID-19, ARDS", "AP", "covid-ards.jpg"),
    ("9", "No Finding", "PA", "normal.png"),
    ("17", "COVID-19", "CT", "ct-slice.jpg"),
    ("20", "todo", "PA", "todo.png"),
]
LATER_ROWS = [  # patient, finding, view, modality, filename
    ("1", "Pneumonia/Viral/COVID-19", "PA", "X-ray", "covid-a.jpg"),
    ("2", "Pneumonia/Viral/COVID-19", "AP Supine", "X-ray", "covid-b.jpeg"),
    ("3", "Pneumonia/Viral/SARS", "PA", "X-ray", "sars-a.jpeg"),
    ("6", "Pneumonia/Bacterial/Streptococcus", "PA", "X-ray", "strep.jpg"),
    ("7", "Pneumonia/Fungal/Pneumocystis", "AP", "X-ray", "pcp.jpg"),
    ("10", "Pneumonia/Lipoid", "PA", "X-ray", "lipoid.jpg"),
    ("11", "Pneumonia", "PA", "X-ray", "pneumonia.jpg"),
    ("12", "Tuberculosis", "PA", "X-ray", "tb.png"),
    ("9", "No Finding", "PA", "X-ray", "normal.png"),
    ("17", "Pneumonia/Viral/COVID-19", "Axial", "CT", "ct-slice.jpg"),
    ("20", "todo", "PA", "X-ray", "todo.png"),
    ("21", "Unknown", "PA", "X-ray", "unknown.png"),
]


def _quote(value: str) -> str:
    return f'"{value}"' if "," in value else value


def write_first(root, *, bom=False, crlf=False):
    root.mkdir(parents=True)
    lines = [FIRST_HEADER]
    for patient, finding, view, name in FIRST_ROWS:
        notes = "Case 2: ground-glass, bilateral"  # a quoted field with commas
        fields = [patient, "0", "M", "65", finding, "", view, "2020", "", name, "", "https://x", "", notes]
        lines.append(",".join(_quote(f) for f in fields))
    end = "\r\n" if crlf else "\n"
    (root / "metadata.csv").write_bytes((("\ufeff" if bom else "") + end.join(lines) + end).encode())
    _images(root, [r[3] for r in FIRST_ROWS])


def write_later(root):
    root.mkdir(parents=True)
    names = LATER_HEADER.split(",")
    lines = [LATER_HEADER]
    for k, (patient, finding, view, modality, name) in enumerate(LATER_ROWS):
        row = dict.fromkeys(names, "")
        row.update(patientid=patient, sex="F", age="52", finding=finding, view=view, modality=modality,
                   folder="images", filename=name, clinical_notes="opacity, right lower lobe")  # fmt: skip
        if k < 2:
            row[""] = "credit: a figure, with thanks"  # a row that fills the header's unnamed column
        lines.append(",".join(_quote(row[n]) for n in names))
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    _images(root, [r[4] for r in LATER_ROWS])


def _images(root, names):
    for seed, name in enumerate(names):
        write_image(root / "images" / name, seed)


def _value(table, image, label):
    return float(table.set_index("image").loc[image, label])


@pytest.mark.parametrize("bom, crlf", [(False, False), (True, True)])
def test_first_version_flat_findings(tmp_path, bom, crlf):
    write_first(tmp_path / "c", bom=bom, crlf=crlf)
    source = open_dataset(tmp_path / "c")
    assert source.name == "covid19"
    report = source.catalog()
    table = report.table
    xray = [r for r in FIRST_ROWS if r[2] != "CT"]
    assert report.images == len(xray) - 1  # all but "todo"
    assert [p["image"] for p in report.problems["unknown_label"]] == ["todo.png"]
    assert [p["image"] for p in report.problems["skipped_row"]] == ["ct-slice.jpg"]
    assert not report.problems["bad_row"] and not report.problems["missing"]
    assert _value(table, "sars-a.jpeg", "Viral Pneumonia") == 1.0
    assert _value(table, "sars-a.jpeg", "COVID-19") == 0.0
    assert _value(table, "strep.jpg", "Bacterial Pneumonia") == 1.0
    assert _value(table, "pcp.jpg", "Fungal Pneumonia") == 1.0
    assert _value(table, "covid-ards.jpg", "ARDS") == 1.0
    assert _value(table, "covid-ards.jpg", "COVID-19") == 1.0
    assert _value(table, "covid-ards.jpg", "Bacterial Pneumonia") == 0.0
    assert math.isnan(_value(table, "ARDSSevere.png", "Pneumonia"))
    assert math.isnan(_value(table, "covid-a.jpg", "ARDS"))  # not recorded is not negative
    assert _value(table, "normal.png", "ARDS") == 0.0
    values = {v["value"]: v for v in report.label_values}
    assert values["COVID-19"]["count"] == 2 and "COVID-19" in values["COVID-19"]["mapped"]
    assert values["todo"]["mapped"].startswith("not understood")


def test_later_version_paths_and_trailing_header_comma(tmp_path):
    write_later(tmp_path / "c")
    report = open_dataset(tmp_path / "c").catalog()
    xray = [r for r in LATER_ROWS if r[3] == "X-ray"]
    assert not report.problems["bad_row"]  # rows filling the unnamed last column are read
    assert report.images == len(xray) - 2
    assert sorted(p["image"] for p in report.problems["unknown_label"]) == ["todo.png", "unknown.png"]
    table = report.table
    assert _value(table, "lipoid.jpg", "Pneumonia") == 1.0
    assert math.isnan(_value(table, "lipoid.jpg", "Viral Pneumonia"))
    assert _value(table, "tb.png", "Tuberculosis") == 1.0


def test_flat_and_path_forms_give_the_same_labels():
    flat = {"COVID-19": "Pneumonia/Viral/COVID-19", "SARS": "Pneumonia/Viral/SARS",
            "Streptococcus": "Pneumonia/Bacterial/Streptococcus", "Pneumocystis": "Pneumonia/Fungal/Pneumocystis"}  # fmt: skip
    for a, b in flat.items():
        np.testing.assert_array_equal(parse_finding(a), parse_finding(b))
    assert parse_finding("todo") is None and parse_finding("") is None
    assert len(parse_finding("No Finding")) == len(LABELS)


@pytest.mark.parametrize("writer", [write_first, write_later])
def test_counts_agree_with_torchxrayvision(tmp_path, writer):
    xrv = pytest.importorskip("torchxrayvision", reason="torchxrayvision is not installed")
    writer(tmp_path / "c")
    table = open_dataset(tmp_path / "c").catalog().table
    peer = xrv.datasets.COVID19_Dataset(
        imgpath=str(tmp_path / "c" / "images"), csvpath=str(tmp_path / "c" / "metadata.csv"), views=["*"]
    )
    # torchxrayvision keeps CT rows when every view is asked for; cxrzoo reads X-rays only.
    ct = peer.csv["view"].isin(["CT", "Axial", "Coronal"]).to_numpy()
    if "modality" in peer.csv:
        ct = ct | (peer.csv["modality"] == "CT").to_numpy()
    labels = peer.labels[~ct]
    assert len(labels) == len(table)
    for name in ("COVID-19", "Pneumocystis", "Streptococcus", "Tuberculosis", "ARDS"):
        if name in peer.pathologies:
            ours = {"Pneumocystis": "Fungal Pneumonia", "Streptococcus": "Bacterial Pneumonia"}.get(
                name, name
            )
            assert int(np.nansum(labels[:, peer.pathologies.index(name)])) == int((table[ours] == 1).sum()), (
                name
            )
