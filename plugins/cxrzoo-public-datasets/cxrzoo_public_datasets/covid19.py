"""The COVID-19 image data collection (ieee8023/covid-chestxray-dataset on GitHub).

Layout (Cohen et al., "COVID-19 Image Data Collection: Prospective Predictions Are the Future",
MELBA 2020, arXiv:2006.11988; the repository's README and CONTRIBUTING.md)::

    metadata.csv   patientid, offset, sex, age, finding, RT_PCR_positive, survival, …, view,
                   modality, date, location, folder, filename, doi, url, license, clinical_notes,
                   other_notes
    images/<filename>      (X-rays and CT slices)   volumes/  (CT volumes; not read)

``finding`` is a path from the general to the specific, such as ``Pneumonia/Viral/COVID-19``,
``Pneumonia/Bacterial/Streptococcus``, ``Pneumonia/Fungal/Pneumocystis``, ``Pneumonia``,
``Tuberculosis`` or ``No Finding``. ``view`` is PA, AP, AP Supine, L (X-ray) or Axial / Coronal
(CT); ``modality`` is X-ray or CT.

Read here: X-ray rows only (CT rows are reported as ``skipped_row``). Labels: Pneumonia,
Viral Pneumonia, Bacterial Pneumonia, Fungal Pneumonia (registered in the vocabulary by this
reader: the collection publishes them as finding levels), COVID-19, Tuberculosis, No Finding.
A finding sets its levels positive and the other labels negative; a pneumonia whose kind is not
one of the three leaves the three kinds unknown (NaN). A finding whose first level is none of
Pneumonia / Tuberculosis / No Finding (e.g. "todo", "Unknown") is reported as
``unknown_label``. The collection has no official split; ``patient`` is patientid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from cxrzoo.data.base import DatasetError, DatasetSource, Inventory, scan_tree
from cxrzoo.data.csvfiles import parse_ages, read_csv_frame
from cxrzoo.labels import canonical, register_finding
from cxrzoo_public_datasets._common import build_rows, header_has, normalise_sex

METADATA = "metadata.csv"
KINDS = {"viral": "Viral Pneumonia", "bacterial": "Bacterial Pneumonia", "fungal": "Fungal Pneumonia"}
for _kind in KINDS.values():
    if canonical(_kind) is None:
        register_finding(_kind, source="cxrzoo-public-datasets")
LABELS: tuple[str, ...] = ("Pneumonia", *KINDS.values(), "COVID-19", "Tuberculosis", "No Finding")
_ROOTS = {"pneumonia": "Pneumonia", "tuberculosis": "Tuberculosis", "no finding": "No Finding"}


def parse_finding(text: str) -> np.ndarray | None:
    """One ``finding`` path -> values in :data:`LABELS` order, or None when it is not understood."""
    levels = [level.strip() for level in text.split("/") if level.strip()]
    if not levels or levels[0].lower() not in _ROOTS:
        return None
    values = np.zeros(len(LABELS), dtype=np.float32)
    root = _ROOTS[levels[0].lower()]
    values[LABELS.index(root)] = 1.0
    if root == "Pneumonia":
        kind = KINDS.get(levels[1].lower()) if len(levels) > 1 else None
        for name in KINDS.values():
            values[LABELS.index(name)] = np.nan if kind is None else float(name == kind)
    if any(canonical(level) == "COVID-19" for level in levels):
        values[LABELS.index("COVID-19")] = 1.0
    return values


class Covid19(DatasetSource):
    """The X-rays of ieee8023/covid-chestxray-dataset, read from a clone of the repository."""

    name: ClassVar[str] = "covid19"
    labels: ClassVar[tuple[str, ...]] = LABELS

    @classmethod
    def detect(cls, root: Path) -> bool:
        return header_has(root / METADATA, "patientid", "finding", "filename", "modality")

    def inventory(self) -> Inventory:
        root = self._folder()
        path = root / METADATA
        if not path.is_file():
            raise DatasetError(f"No {METADATA} in {root}: not a covid-chestxray-dataset folder")
        problems: dict[str, list[Any]] = {}
        frame, lines = read_csv_frame(path, problems, required=("patientid", "finding", "filename", "folder"))
        modality = frame["modality"].str.strip() if "modality" in frame else pd.Series(["X-ray"] * len(frame))
        xray = (modality.str.lower() == "x-ray").to_numpy()
        skipped = frame["filename"].str.strip()[~xray].tolist()
        problems["skipped_row"] = [
            {"image": frame["filename"].iat[i], "row": int(lines[i]), "file": str(path),
             "reason": f"modality {modality.iat[i]!r}, not X-ray"}
            for i in np.flatnonzero(~xray)
        ]  # fmt: skip
        if not problems["skipped_row"]:
            del problems["skipped_row"]
        frame, lines = frame.loc[xray].reset_index(drop=True), lines[xray]
        matrix = np.full((len(frame), len(LABELS)), np.nan, dtype=np.float32)
        unknown = np.full(len(frame), "", dtype=object)
        for i, text in enumerate(frame["finding"].tolist()):
            values = parse_finding(text)
            if values is None:
                unknown[i] = text or "(empty)"
            else:
                matrix[i] = values
        image = frame["filename"].str.strip()
        files = scan_tree(root / "images", relative_to=None)
        files = files.loc[~files["image"].isin(set(skipped))]  # CT slices share images/: not "without a row"
        rows = build_rows(
            self.label_names,
            matrix,
            image=image.tolist(),
            patient=frame["patientid"].str.strip().tolist(),
            row=lines,
            age=parse_ages(frame["age"], image, lines, problems, path, "age") if "age" in frame else None,
            sex=normalise_sex(frame["sex"]) if "sex" in frame else None,
            view=frame["view"].str.strip() if "view" in frame else None,
            unknown=unknown,
            finding=frame["finding"],
        )
        return Inventory(rows=rows, files=files, metadata_file=str(path), has_lists=False, problems=problems)
