"""The COVID-19 image data collection (ieee8023/covid-chestxray-dataset on GitHub).

Layout (Cohen et al., "COVID-19 Image Data Collection: Prospective Predictions Are the Future",
MELBA 2020, arXiv:2006.11988; the repository's README, SCHEMA.md and CONTRIBUTING.md)::

    metadata.csv   patientid, offset, sex, age, finding, RT_PCR_positive, survival, …, view,
                   modality, date, location, folder, filename, doi, url, license, clinical_notes,
                   other_notes
    images/<filename>      (X-rays and CT slices)   volumes/  (CT volumes; not read)

The file changed shape while the collection grew, and every version is read:

- the first versions (March 2020) have ``Patientid`` (capital P), `` url`` (leading space), no
  ``modality`` or ``folder`` column (a CT image says ``CT`` in ``view``) and a flat ``finding``:
  ``COVID-19``, ``SARS``, ``ARDS``, ``Streptococcus``, ``Pneumocystis``, ``COVID-19, ARDS``,
  ``No Finding``, …;
- later versions end the header with a trailing comma (an unnamed last column some rows fill)
  and write ``finding`` as a path from the general to the specific: ``Pneumonia/Viral/COVID-19``,
  ``Pneumonia/Bacterial/Streptococcus``, ``Pneumonia/Fungal/Pneumocystis``, ``Pneumonia/Lipoid``,
  ``Pneumonia``, ``Tuberculosis``, ``No Finding``, and ``todo`` / ``Unknown`` for rows not yet read.

Read here: X-ray rows only (CT rows, by ``modality`` or, without that column, by a ``view`` of CT /
Axial / Coronal, are reported as ``skipped_row``). Labels: Pneumonia, Viral Pneumonia, Bacterial
Pneumonia, Fungal Pneumonia (registered in the vocabulary by this reader: the collection publishes
them as finding levels), COVID-19, ARDS, Tuberculosis, No Finding. A flat name is first read as the
path the later versions give it (:data:`FLAT`: ``SARS`` is ``Pneumonia/Viral/SARS``,
``Streptococcus`` is ``Pneumonia/Bacterial/Streptococcus`` …); a comma-separated finding is the
union of its parts. A finding sets its levels positive and the other labels negative, except
that a pneumonia whose kind is not one of the three leaves the three kinds unknown (NaN), and
ARDS is known only where a finding names it (1) or says No Finding (0): the later versions stopped
recording it, so its absence is not a negative. ARDS alone leaves the pneumonia labels unknown.
A finding none of whose parts is understood (``todo``, ``Unknown``, blank) is reported as
``unknown_label``; :meth:`Covid19.label_values` counts every value and what it became.
The collection has no official split; ``patient`` is patientid.

Compared with torchxrayvision's ``COVID19_Dataset`` (which makes one label per "/"-level name and
sets a label where ``finding`` contains it, reading PA and AP views): the level names are the
same, but cxrzoo reads every view, maps the flat names of the first versions onto the same levels
(torchxrayvision labels ``SARS`` only ``SARS``, not Viral Pneumonia), and leaves rows it does not
understand out instead of reading them as negatives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from cxrzoo.data.base import DatasetError, DatasetSource, Inventory, scan_tree
from cxrzoo.data.csvfiles import parse_ages, read_csv_frame, value_counts
from cxrzoo.data.readers import build_rows, header_has, normalise_sex
from cxrzoo.labels import canonical, register_finding

METADATA = "metadata.csv"
KINDS = {"viral": "Viral Pneumonia", "bacterial": "Bacterial Pneumonia", "fungal": "Fungal Pneumonia"}
for _kind in KINDS.values():
    if canonical(_kind) is None:
        register_finding(_kind, source="cxrzoo-public-datasets")
if canonical("ARDS") is None:
    register_finding(
        "ARDS", synonyms=("Acute Respiratory Distress Syndrome",), source="cxrzoo-public-datasets"
    )
LABELS: tuple[str, ...] = (
    "Pneumonia",
    *KINDS.values(),
    "COVID-19",
    "ARDS",
    "Tuberculosis",
    "No Finding",
)
_ROOTS = {
    "pneumonia": "Pneumonia",
    "tuberculosis": "Tuberculosis",
    "no finding": "No Finding",
    "ards": "ARDS",
}
#: Flat findings of the first versions (lower case) -> the path the later versions write.
FLAT: dict[str, str] = {
    "covid-19": "Pneumonia/Viral/COVID-19",
    "covid19": "Pneumonia/Viral/COVID-19",
    "sars": "Pneumonia/Viral/SARS",
    "mers": "Pneumonia/Viral/MERS-CoV",
    "mers-cov": "Pneumonia/Viral/MERS-CoV",
    "influenza": "Pneumonia/Viral/Influenza",
    "h1n1": "Pneumonia/Viral/Influenza/H1N1",
    "varicella": "Pneumonia/Viral/Varicella",
    "herpes": "Pneumonia/Viral/Herpes",
    "streptococcus": "Pneumonia/Bacterial/Streptococcus",
    "klebsiella": "Pneumonia/Bacterial/Klebsiella",
    "e.coli": "Pneumonia/Bacterial/E.Coli",
    "legionella": "Pneumonia/Bacterial/Legionella",
    "mycoplasma": "Pneumonia/Bacterial/Mycoplasma",
    "chlamydophila": "Pneumonia/Bacterial/Chlamydophila",
    "nocardia": "Pneumonia/Bacterial/Nocardia",
    "staphylococcus": "Pneumonia/Bacterial/Staphylococcus",
    "mrsa": "Pneumonia/Bacterial/Staphylococcus/MRSA",
    "pneumocystis": "Pneumonia/Fungal/Pneumocystis",
    "aspergillosis": "Pneumonia/Fungal/Aspergillosis",
    "lipoid": "Pneumonia/Lipoid",
    "aspiration": "Pneumonia/Aspiration",
    "normal": "No Finding",
}
#: ``view`` values that mark a CT image in versions without a ``modality`` column.
CT_VIEWS = frozenset({"ct", "axial", "coronal"})


def _parse_path(text: str) -> np.ndarray | None:
    levels = [level.strip() for level in text.split("/") if level.strip()]
    if len(levels) == 1 and levels[0].lower() in FLAT:
        levels = FLAT[levels[0].lower()].split("/")
    if not levels or levels[0].lower() not in _ROOTS:
        return None
    values = np.zeros(len(LABELS), dtype=np.float32)
    values[LABELS.index("ARDS")] = np.nan
    root = _ROOTS[levels[0].lower()]
    values[LABELS.index(root)] = 1.0
    if root == "Pneumonia":
        kind = KINDS.get(levels[1].lower()) if len(levels) > 1 else None
        for name in KINDS.values():
            values[LABELS.index(name)] = np.nan if kind is None else float(name == kind)
    elif root == "ARDS":  # ARDS of an unnamed cause: whether it is a pneumonia is not said
        for name in ("Pneumonia", *KINDS.values(), "COVID-19", "Tuberculosis"):
            values[LABELS.index(name)] = np.nan
    elif root == "No Finding":
        values[LABELS.index("ARDS")] = 0.0
    if any(canonical(level) == "COVID-19" for level in levels):
        values[LABELS.index("COVID-19")] = 1.0
    if any(level.lower() == "ards" for level in levels):
        values[LABELS.index("ARDS")] = 1.0
    return values


def parse_finding(text: str) -> np.ndarray | None:
    """One ``finding`` (a path, a flat name, or a comma-separated list of them) -> values in
    :data:`LABELS` order, or None when no part of it is understood."""
    parsed = [_parse_path(part) for part in text.split(",") if part.strip()]
    known = [p for p in parsed if p is not None]
    if not known:
        return None
    if len(known) == 1:
        return known[0]
    stack = np.stack(known)
    # Positive where a part says so, else negative where a part says so, else unknown.
    out = np.where((stack == 1.0).any(axis=0), 1.0, np.where((stack == 0.0).any(axis=0), 0.0, np.nan))
    no_finding = LABELS.index("No Finding")
    if np.delete(out, no_finding).max(initial=0.0) == 1.0:  # a finding next to "No Finding" wins
        out[no_finding] = 0.0
    return out.astype(np.float32)


def describe_values(values: np.ndarray | None) -> str:
    """What one parsed finding became, for the catalog's table of label values."""
    if values is None:
        return "not understood: row not used"
    parts = [name for name, v in zip(LABELS, values, strict=True) if v == 1.0]
    unknown = [name for name, v in zip(LABELS, values, strict=True) if np.isnan(v)]
    text = " + ".join(parts) if parts else "none"
    return text + (f" (unknown: {', '.join(unknown)})" if unknown else "")


class Covid19(DatasetSource):
    """The X-rays of ieee8023/covid-chestxray-dataset, read from a clone of the repository."""

    name: ClassVar[str] = "covid19"
    title: ClassVar[str] = "COVID-19 image data collection (ieee8023)"
    labels: ClassVar[tuple[str, ...]] = LABELS

    @classmethod
    def detect(cls, root: Path) -> bool:
        return header_has(root / METADATA, "patientid", "finding", "filename", fold_case=True)

    def inventory(self) -> Inventory:
        root = self._folder()
        path = root / METADATA
        if not path.is_file():
            raise DatasetError(f"No {METADATA} in {root}: not a covid-chestxray-dataset folder")
        problems: dict[str, list[Any]] = {}
        frame, lines = read_csv_frame(
            path, problems, required=("patientid", "finding", "filename"), fold_case=True
        )
        n = len(frame)
        view_text = frame["view"].str.strip() if "view" in frame else pd.Series([""] * n, dtype=object)
        if "modality" in frame:
            modality = frame["modality"].str.strip()
            xray = (modality.str.lower() == "x-ray").to_numpy()
            why = "modality " + modality.map(repr) + ", not X-ray"
        else:  # the first versions: a CT image says so in ``view``
            xray = ~view_text.str.lower().isin(CT_VIEWS).to_numpy()
            why = "view " + view_text.map(repr) + " (a CT image), not X-ray"
        skipped = frame["filename"].str.strip()[~xray].tolist()
        problems["skipped_row"] = [
            {"image": frame["filename"].iat[i].strip(), "row": int(lines[i]), "file": str(path),
             "reason": why.iat[i]}
            for i in np.flatnonzero(~xray)
        ]  # fmt: skip
        if not problems["skipped_row"]:
            del problems["skipped_row"]
        frame, lines, view_text = frame.loc[xray].reset_index(drop=True), lines[xray], view_text[xray]
        findings = frame["finding"].str.strip()
        parsed = {text: parse_finding(text) for text in findings.unique().tolist()}
        matrix = np.full((len(frame), len(LABELS)), np.nan, dtype=np.float32)
        unknown = np.full(len(frame), "", dtype=object)
        for i, text in enumerate(findings.tolist()):
            values = parsed[text]
            if values is None:
                unknown[i] = text or "(empty)"
            else:
                matrix[i] = values
        image = frame["filename"].str.strip()
        files = scan_tree(root / "images", relative_to=None, problems=problems)
        files = files.loc[~files["image"].isin(set(skipped))]  # CT slices share images/: not "without a row"
        rows = build_rows(
            self.label_names,
            matrix,
            image=image.tolist(),
            patient=frame["patientid"].str.strip().tolist(),
            row=lines,
            age=parse_ages(frame["age"], image, lines, problems, path, "age") if "age" in frame else None,
            sex=normalise_sex(frame["sex"]) if "sex" in frame else None,
            view=view_text.reset_index(drop=True),
            unknown=unknown,
            finding=frame["finding"],
        )
        values = value_counts("finding", findings, lambda text: describe_values(parsed[text]), path)
        return Inventory(
            rows=rows,
            files=files,
            metadata_file=str(path),
            has_lists=False,
            problems=problems,
            label_values=values,
        )
