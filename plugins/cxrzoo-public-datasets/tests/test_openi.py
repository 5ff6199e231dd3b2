"""openi on an unpacked ecgen-radiology/ folder, with a report that is not XML."""

from __future__ import annotations

from cxrzoo_public_datasets.testing import write_image

from cxrzoo.data import open_dataset

REPORT = """<?xml version="1.0" encoding="utf-8"?>
<eCitation>
   <uId id="{uid}"/>
   <MeSH>
      {major}
      {automatic}
   </MeSH>
   {images}
</eCitation>
"""


def _write(root, uid, major, automatic, images):
    (root / "ecgen-radiology").mkdir(parents=True, exist_ok=True)
    text = REPORT.format(
        uid=uid,
        major="".join(f"<major>{t}</major>" for t in major),
        automatic="".join(f"<automatic>{t}</automatic>" for t in automatic),
        images="".join(f'<parentImage id="{i}"><figureId>F1</figureId></parentImage>' for i in images),
    )
    (root / "ecgen-radiology" / f"{uid[3:]}.xml").write_text(text)
    for k, image in enumerate(images):
        write_image(root / "NLMCXR_png" / f"{image}.png", k)


def test_reports_folder_and_a_broken_report(tmp_path):
    root = tmp_path / "openi"
    _write(root, "CXR10", ["Calcified Granuloma/lung/upper lobe/right"], ["calcified granuloma"],
           ["CXR10_IM-0002-1001", "CXR10_IM-0002-2001"])  # fmt: skip
    _write(root, "CXR1", ["normal"], [], ["CXR1_1_IM-0001-3001"])
    (root / "ecgen-radiology" / "99.xml").write_text("<eCitation><uId")
    report = open_dataset(root).catalog()
    table = report.table.set_index("image")
    assert report.images == 3 and table.loc["CXR10_IM-0002-1001", "patient"] == "CXR10"
    assert table.loc["CXR10_IM-0002-1001", "Calcified Granuloma"] == 1.0
    assert table.loc["CXR10_IM-0002-1001", "Granuloma"] == 1.0  # contains "granuloma", as torchxrayvision
    assert table.loc["CXR1_1_IM-0001-3001", "No Finding"] == 1.0
    assert table.loc["CXR1_1_IM-0001-3001", "Cardiomegaly"] == 0.0
    (bad,) = report.problems["bad_row"]
    assert bad["file"].endswith("99.xml")
