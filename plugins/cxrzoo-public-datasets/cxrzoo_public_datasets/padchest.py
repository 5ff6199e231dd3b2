"""PadChest (BIMCV, Hospital San Juan, Alicante), as downloaded from bimcv.cipf.es.

Layout (Bustos et al., "PadChest: A large chest x-ray image dataset with multi-label annotated
reports", Medical Image Analysis 66, 2020, arXiv:1901.07441; the BIMCV download page)::

    PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv   (also .csv.gz)
    0/216840111366964012339356563862009072111404053_00-174-076.png   … 54/…

The CSV has one row per image with, among ~35 columns, ``ImageID`` (the PNG's file name),
``ImageDir`` (its numbered folder, 0 … 54), ``StudyDate_DICOM`` (YYYYMMDD), ``StudyID``,
``PatientID``, ``PatientBirth`` (year), ``PatientSex_DICOM``, ``Projection`` (PA, L, AP,
AP_horizontal, COSTAL, EXCLUDE, UNK …) and ``Labels``: the findings extracted from the report, a
Python list written as text such as ``"['pleural effusion', 'cardiomegaly']"`` (``['normal']``
for a normal study). Images are 16-bit greyscale PNGs.

Read here: ``Labels`` is parsed with :func:`ast.literal_eval` (never ``eval``); a cell that is
not a list of strings is reported as ``unknown_label`` with its line. PadChest terms map to
vocabulary findings through :data:`TERMS` and the vocabulary's synonyms; the source's labels are
the findings they map to (:data:`PUBLISHED_ORDER`). As in NIH, a report's labels list every
finding it names, so a finding not listed is negative (0) for a row with a valid list. Terms
that map to none of them are counted under ``unmapped_label`` (ignored, the row is used); a list
containing ``exclude`` marks an image the publishers excluded (``skipped_row``). ``age`` is
the study year minus the birth year; PadChest has no official split.

Compared with torchxrayvision's ``PC_Dataset`` on the 160K file it ships
(tests/test_real_files.py). Rows: torchxrayvision keeps the 1,303 ``exclude`` rows and the 743
rows whose Labels is ``['']`` (as all-negative), which cxrzoo reports; it drops the patients born
10 years or less before 2019 or of unknown birth year, and 21 files it knows are broken, which
cxrzoo reads (the catalog finds broken files). On the rows both read, these findings agree
exactly: Atelectasis, Aortic Elongation, Bronchiectasis, Cardiomegaly, Fibrosis, Granuloma, Hernia,
Pleural_Thickening, Pneumonia, Pneumothorax, Scoliosis, Tuberculosis. The others differ by the
choice of terms: torchxrayvision matches substrings, so "subcutaneous emphysema" is Emphysema,
"rib fracture" is Fracture, "pseudonodule" is Nodule, "mediastinal mass" is Mass, and it adds
adenopathy to Hilar Enlargement and the interstitial and alveolar patterns to Infiltration, giving
it more positives of Emphysema, Fracture, Hilar Enlargement, Infiltration, Mass and Nodule; cxrzoo
counts "heart insufficiency" as Edema and tubes and catheters as Support Devices (more positives
there), "alveolar pattern" as Consolidation (torchxrayvision: "air bronchogram") and "costophrenic
angle blunting" as Effusion (torchxrayvision: "pericardial effusion" by substring).
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from cxrzoo.data.base import DatasetError, DatasetSource, Inventory, scan_tree
from cxrzoo.data.csvfiles import read_csv_frame
from cxrzoo.data.readers import build_rows, normalise_sex
from cxrzoo.labels import LABELS, canonical

CSV_NAMES: tuple[str, ...] = (
    "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv",
    "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz",
)
#: PadChest terms (lower case, as published) whose vocabulary finding the synonyms do not give.
TERMS: dict[str, str] = {
    "normal": "No Finding",
    "infiltrates": "Infiltration",
    "nodule": "Nodule",
    "multiple nodules": "Nodule",
    "pulmonary mass": "Mass",
    "mass": "Mass",
    "segmental atelectasis": "Atelectasis",
    "round atelectasis": "Atelectasis",
    "total atelectasis": "Atelectasis",
    "apical pleural thickening": "Pleural_Thickening",
    "calcified pleural thickening": "Pleural_Thickening",
    "pulmonary edema": "Edema",
    "heart insufficiency": "Edema",
    "copd signs": "COPD",
    "calcified granuloma": "Granuloma",
    "cavitation": "Lung Cavity",
    "vertebral fracture": "Fracture",
    "humeral fracture": "Fracture",
    "clavicle fracture": "Clavicle Fracture",
    "rib fracture": "Rib Fracture",
    "dual chamber device": "Support Devices",
    "single chamber device": "Support Devices",
    "tracheostomy tube": "Support Devices",
    "chest drain tube": "Support Devices",
    "electrical device": "Support Devices",
    # Kinds of a finding that PadChest names on their own (read from the 160K file's terms).
    "atelectasis basal": "Atelectasis",
    "loculated pleural effusion": "Effusion",
    "loculated fissural effusion": "Effusion",
    "hydropneumothorax": "Pneumothorax",
    "atypical pneumonia": "Pneumonia",
    "supra aortic elongation": "Aortic Elongation",
    "descendent aortic elongation": "Aortic Elongation",
    "ascendent aortic elongation": "Aortic Elongation",
    "vascular hilar enlargement": "Hilar Enlargement",
    "callus rib fracture": "Rib Fracture",
}
#: The source's labels: the vocabulary findings PadChest terms map to, NIH's first.
PUBLISHED_ORDER: tuple[str, ...] = (
    *LABELS,
    "No Finding",
    "Tuberculosis",
    "COPD",
    "Granuloma",
    "Lung Cavity",
    "Interstitial Lung Disease",
    "Fracture",
    "Rib Fracture",
    "Clavicle Fracture",
    "Support Devices",
    "Scoliosis",
    "Kyphosis",
    "Bronchiectasis",
    "Hilar Enlargement",
    "Aortic Elongation",
    "Other Disease",
)
#: Terms that say something about the study, not a finding: ignored without a report.
NOT_FINDINGS = frozenset({"suboptimal study", "unchanged"})
EXCLUDE = "exclude"


def map_term(term: str) -> str | None:
    """The source label of a PadChest term, or None."""
    name = TERMS.get(term) or canonical(term)
    return name if name in PUBLISHED_ORDER else None


def parse_labels(text: str) -> list[str] | None:
    """``"['a', 'b']"`` -> ``["a", "b"]`` (stripped, lower case); None when it is not such a list."""
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        return None
    if not isinstance(value, (list, tuple)) or not all(isinstance(t, str) for t in value):
        return None
    return [t.strip().lower() for t in value if t.strip()]


class PadChest(DatasetSource):
    """PadChest, read from the folder holding the labels CSV and the numbered image folders."""

    name: ClassVar[str] = "padchest"
    title: ClassVar[str] = "PadChest (BIMCV)"
    labels: ClassVar[tuple[str, ...]] = PUBLISHED_ORDER

    @classmethod
    def detect(cls, root: Path) -> bool:
        return any((root / n).is_file() for n in CSV_NAMES)

    def inventory(self) -> Inventory:
        root = self._folder()
        path = next((root / n for n in CSV_NAMES if (root / n).is_file()), None)
        if path is None:
            raise DatasetError(f"No {CSV_NAMES[0]} in {root}: not a PadChest folder")
        problems: dict[str, list[Any]] = {}
        frame, lines = read_csv_frame(
            path, problems, required=("ImageID", "ImageDir", "PatientID", "Projection", "Labels")
        )
        n = len(frame)
        position = {name: j for j, name in enumerate(PUBLISHED_ORDER)}
        codes, texts = pd.factorize(frame["Labels"], sort=False)  # many studies share one list
        per_text = np.zeros((len(texts), len(PUBLISHED_ORDER)), dtype=np.float32)
        bad_text = np.zeros(len(texts), dtype=bool)
        excluded_text = np.zeros(len(texts), dtype=bool)
        per_text_unmapped: list[list[str]] = [[] for _ in texts]
        term_counts: Counter[str] = Counter()
        mapped_terms: dict[str, str | None] = {}
        uses = np.bincount(codes, minlength=len(texts))
        for k, text in enumerate(texts.tolist()):
            terms = parse_labels(text)
            if not terms:
                bad_text[k] = True
                continue
            for term in terms:
                term_counts[term] += int(uses[k])
            if EXCLUDE in terms:
                excluded_text[k] = True
                continue
            for term in terms:
                if term not in mapped_terms:
                    mapped_terms[term] = map_term(term)
                label = mapped_terms[term]
                if label is not None:
                    per_text[k, position[label]] = 1.0
                elif term not in NOT_FINDINGS:
                    per_text_unmapped[k].append(term)
        matrix = per_text[codes]
        unknown = np.where(bad_text[codes], "Labels=" + frame["Labels"].map(repr), "").astype(object)
        keep = ~excluded_text[codes]
        skipped = problems.setdefault("skipped_row", [])
        for i in np.flatnonzero(~keep):
            skipped.append({"image": frame["ImageID"].iat[i], "row": int(lines[i]), "file": str(path),
                            "reason": "Labels says 'exclude'"})  # fmt: skip
        unmapped: Counter[str] = Counter()
        for k in np.flatnonzero(~excluded_text & ~bad_text):
            for term in per_text_unmapped[k]:
                unmapped[term] += int(uses[k])
        if unmapped:
            problems["unmapped_label"] = [
                {"label": term, "count": count, "file": str(path)} for term, count in unmapped.most_common()
            ]
        if not skipped:
            del problems["skipped_row"]
        image = frame["ImageID"].str.strip()
        study_year = pd.to_numeric(frame.get("StudyDate_DICOM", pd.Series([""] * n)).str[:4], errors="coerce")
        birth = pd.to_numeric(frame.get("PatientBirth", pd.Series([""] * n)), errors="coerce")
        age = (study_year - birth).where(lambda a: (a >= 0) & (a <= 120))
        sex = frame["PatientSex_DICOM"] if "PatientSex_DICOM" in frame else pd.Series([""] * n)
        rows = build_rows(
            self.label_names,
            matrix,
            image=image.tolist(),
            patient=frame["PatientID"].str.strip().tolist(),
            row=lines,
            age=age.to_numpy(dtype=np.float64),
            sex=normalise_sex(sex),
            view=frame["Projection"].str.strip(),
            unknown=unknown,
            finding=frame["Labels"],
        ).loc[keep]
        files = scan_tree(root, suffixes=(".png",), problems=problems)
        excluded = set(image[~keep])
        files = files.loc[~files["image"].isin(excluded)]

        def became(term: str) -> str:
            if term == EXCLUDE:
                return "excluded by the publishers: row not used"
            label = mapped_terms.get(term, map_term(term))
            if label is not None:
                return label
            return "not a finding (ignored)" if term in NOT_FINDINGS else "unmapped (ignored, row used)"

        values = [
            {
                "column": "Labels (terms)",
                "value": term,
                "count": count,
                "mapped": became(term),
                "file": str(path),
            }
            for term, count in term_counts.most_common()
        ]
        if bad_text.any():
            values.append({"column": "Labels (terms)", "value": "(not a list of terms)",
                           "count": int(uses[bad_text].sum()), "mapped": "row not used", "file": str(path)})  # fmt: skip
        return Inventory(
            rows=rows,
            files=files,
            metadata_file=str(path),
            has_lists=False,
            problems=problems,
            label_values=values,
        )
