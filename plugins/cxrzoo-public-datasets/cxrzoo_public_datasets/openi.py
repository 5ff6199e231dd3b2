"""OpenI: the Indiana University chest X-ray collection (NLM Open-i), as NLM ships it.

Layout (Demner-Fushman et al., "Preparing a collection of radiology examinations for distribution
and retrieval", JAMIA 23(2), 2016; openi.nlm.nih.gov/faq)::

    NLMCXR_reports.tgz   ecgen-radiology/<n>.xml: one report per study (or the folder unpacked)
    NLMCXR_png/CXR<n>_IM-<series>-<k>.png   (NLMCXR_png.tgz unpacked; any folder under the root)

A report holds ``<uId id="CXR10"/>`` (the study), ``<MeSH>`` with ``<major>`` terms
("Calcified Granuloma/lung/upper lobe/right") and ``<automatic>`` terms ("calcified granuloma"),
and one ``<parentImage id="CXR10_IM-0002-1001">`` per image of the study.

Read here: one row per parentImage; ``patient`` is the study's uId (the collection publishes no
patient ids, and one study is one patient visit). Labels come from the automatic MeSH terms the
way torchxrayvision's ``Openi_Dataset`` reads them, so that the two agree: a finding is 1 where
an automatic term contains its name (or a synonym of :data:`SYNONYMS`), else 0; No Finding is 1
where the major terms say "normal". An unreadable report is reported as ``bad_row`` by file.
There is no official split.

Compared with torchxrayvision (the reports file it ships, every view, one row per image): the
same images, studies and counts for its 18 findings (tests/test_real_files.py).
"""

from __future__ import annotations

import tarfile
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from cxrzoo.data.base import DatasetError, DatasetSource, Inventory, scan_tree
from cxrzoo.data.readers import build_rows
from cxrzoo.labels import canonical, register_finding

REPORTS = ("NLMCXR_reports.tgz", "ecgen-radiology")
#: The findings read, vocabulary names, with the text looked for in the automatic terms.
FINDINGS: dict[str, str] = {
    "Atelectasis": "atelectasis",
    "Fibrosis": "fibrosis",
    "Pneumonia": "pneumonia",
    "Effusion": "effusion",
    "Lung Lesion": "lesion",
    "Cardiomegaly": "cardiomegaly",
    "Calcified Granuloma": "calcified granuloma",
    "Fracture": "fracture",
    "Edema": "edema",
    "Granuloma": "granuloma",
    "Emphysema": "emphysema",
    "Hernia": "hernia",
    "Mass": "mass",
    "Nodule": "nodule",
    "Lung Opacity": "opacity",
    "Infiltration": "infiltration",
    "Pleural_Thickening": "pleural_thickening",
    "Pneumothorax": "pneumothorax",
}
#: More text that marks a finding (torchxrayvision's synonyms).
SYNONYMS: dict[str, tuple[str, ...]] = {
    "Pleural_Thickening": ("pleural thickening",),
    "Infiltration": ("infiltrate",),
    "Atelectasis": ("atelectases",),
}
if canonical("Calcified Granuloma") is None:
    register_finding("Calcified Granuloma", source="cxrzoo-public-datasets")
LABELS: tuple[str, ...] = (*FINDINGS, "No Finding")


def _reports(root: Path) -> tuple[Path, list[tuple[str, bytes]]]:
    tgz, folder = root / REPORTS[0], root / REPORTS[1]
    if tgz.is_file():
        try:
            with tarfile.open(tgz, "r:gz") as tar:
                return tgz, [
                    (m.name, tar.extractfile(m).read())  # type: ignore[union-attr]
                    for m in tar.getmembers()
                    if m.isfile() and m.name.endswith(".xml")
                ]
        except (OSError, tarfile.TarError) as exc:
            raise DatasetError(f"{tgz}: cannot be read as a .tgz archive ({exc})") from None
    if folder.is_dir():
        return folder, [(str(p), p.read_bytes()) for p in sorted(folder.glob("*.xml"))]
    raise DatasetError(f"No {REPORTS[0]} or {REPORTS[1]}/ in {root}: not an OpenI folder")


class OpenI(DatasetSource):
    """OpenI (NLMCXR), read from the folder holding NLMCXR_reports.tgz and the PNGs."""

    name: ClassVar[str] = "openi"
    title: ClassVar[str] = "OpenI / Indiana University chest X-rays (NLM)"
    labels: ClassVar[tuple[str, ...]] = LABELS

    @classmethod
    def detect(cls, root: Path) -> bool:
        return (root / REPORTS[0]).is_file() or (root / REPORTS[1]).is_dir()

    def inventory(self) -> Inventory:
        root = self._folder()
        source, reports = _reports(root)
        problems: dict[str, list[Any]] = {}
        image, patient, automatic, major, files = [], [], [], [], []
        for name, data in reports:
            try:
                doc = ET.fromstring(data)
                uid = doc.find("uId").attrib["id"]  # type: ignore[union-attr]
            except (ET.ParseError, AttributeError, KeyError) as exc:
                problems.setdefault("bad_row", []).append(
                    {"file": f"{source}:{name}", "reason": f"not a report ({exc}); left out"}
                )
                continue
            terms_a = sorted({(n.text or "").strip().lower() for n in doc.findall(".//MeSH/automatic")})
            terms_m = sorted({(n.text or "").strip().lower() for n in doc.findall(".//MeSH/major")})
            for node in doc.findall(".//parentImage"):
                image.append(node.attrib.get("id", ""))
                patient.append(uid)
                automatic.append(terms_a)
                major.append(terms_m)
                files.append(f"{source}:{name}")
        matrix = np.zeros((len(image), len(LABELS)), dtype=np.float32)
        for j, (label, text) in enumerate(FINDINGS.items()):
            keys = (text, *SYNONYMS.get(label, ()))
            matrix[:, j] = [float(any(k in t for t in terms for k in keys)) for terms in automatic]
        matrix[:, -1] = [float("normal" in terms) for terms in major]
        rows = build_rows(
            self.label_names,
            matrix,
            image=image,
            patient=patient,
            row=np.arange(1, len(image) + 1),
            finding=["|".join(t) for t in automatic],
            file=files,
        )
        counts = Counter(t for terms in automatic for t in terms)

        def became(term: str) -> str:
            hit = [
                lab
                for lab, text in FINDINGS.items()
                if any(k in term for k in (text, *SYNONYMS.get(lab, ())))
            ]
            return " + ".join(hit) if hit else "no finding of the source (ignored)"

        values = [
            {"column": "MeSH automatic", "value": t, "count": n, "mapped": became(t), "file": str(source)}
            for t, n in counts.most_common()
        ]
        png = scan_tree(root, suffixes=(".png",), strip_suffix=True, problems=problems)
        return Inventory(
            rows=rows,
            files=png,
            metadata_file=str(source),
            has_lists=False,
            problems=problems,
            label_values=values,
        )
