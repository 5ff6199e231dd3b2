"""MIMIC-CXR-JPG 2.x (PhysioNet), as downloaded from physionet.org/content/mimic-cxr-jpg/.

Layout (Johnson et al., "MIMIC-CXR-JPG, a large publicly available database of labeled chest
radiographs", arXiv:1901.07042; the PhysioNet project page, version 2.0.0 / 2.1.0)::

    mimic-cxr-2.0.0-metadata.csv.gz   dicom_id, subject_id, study_id, PerformedProcedureStepDescription,
                                      ViewPosition, Rows, Columns, StudyDate, StudyTime, …
    mimic-cxr-2.0.0-split.csv.gz      dicom_id, study_id, subject_id, split (train / validate / test)
    mimic-cxr-2.0.0-chexpert.csv.gz   subject_id, study_id, then 14 labels (CheXpert labeler)
    mimic-cxr-2.0.0-negbio.csv.gz     the same columns (NegBio labeler)
    files/p10/p10000032/s50414267/02aa804e-bde0afdd-112c0b34-7bc16630-4e384014.jpg

Label files have one row per study, joined to the images by subject_id + study_id, with the
columns Atelectasis, Cardiomegaly, Consolidation, Edema, Enlarged Cardiomediastinum, Fracture,
Lung Lesion, Lung Opacity, No Finding, Pleural Effusion, Pleural Other, Pneumonia, Pneumothorax,
Support Devices, valued 1.0 / 0.0 / -1.0 (uncertain) / blank, as CheXpert's.

Read here: the ``labeler`` option (``chexpert`` or ``negbio``) chooses the label file; -1.0 under
the ``uncertain`` option (ignore = NaN, ones, zeros); blank and a study without a label row ->
NaN. The official split is kept (train -> train_val, validate -> val, test -> test); any other
``split`` value (``TRAIN``, ``bogus``) is counted by value under ``unmapped_value`` and its images
are unlisted. Image ids
are the dicom_ids, ``patient`` the subject_id, ``view`` ViewPosition. Age and sex are not part of
MIMIC-CXR-JPG (they are in MIMIC-IV), so they are unknown.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from cxrzoo.data.base import TEST, TRAIN_VAL, VAL, DatasetError, DatasetSource, Inventory, scan_tree
from cxrzoo.data.csvfiles import read_csv_frame, value_counts
from cxrzoo.data.readers import (
    UNCERTAIN_CHOICE,
    UNCERTAIN_OPTION,
    build_rows,
    canonical_labels,
    code_matrix,
    code_values,
    locate,
)

#: MIMIC-CXR-JPG's label columns as published, in its order.
PUBLISHED_LABELS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Enlarged Cardiomediastinum",
    "Fracture",
    "Lung Lesion",
    "Lung Opacity",
    "No Finding",
    "Pleural Effusion",
    "Pleural Other",
    "Pneumonia",
    "Pneumothorax",
    "Support Devices",
)
PREFIX = "mimic-cxr-2.0.0"
SPLITS = {"train": TRAIN_VAL, "validate": VAL, "test": TEST}


def _file(root: Path, suffix: str) -> Path | None:
    for name in (f"{PREFIX}-{suffix}.csv.gz", f"{PREFIX}-{suffix}.csv"):
        if (root / name).is_file():
            return root / name
    return None


class MimicCxr(DatasetSource):
    """MIMIC-CXR-JPG 2.x, read from the folder holding the mimic-cxr-2.0.0-*.csv.gz files."""

    name: ClassVar[str] = "mimic_cxr"
    title: ClassVar[str] = "MIMIC-CXR-JPG"
    labels: ClassVar[tuple[str, ...]] = canonical_labels(PUBLISHED_LABELS)
    options_defaults: ClassVar[dict[str, Any]] = {**UNCERTAIN_OPTION, "labeler": "chexpert"}
    option_choices: ClassVar[dict[str, tuple[Any, ...]]] = {
        **UNCERTAIN_CHOICE,
        "labeler": ("chexpert", "negbio"),
    }

    @classmethod
    def detect(cls, root: Path) -> bool:
        return _file(locate(root, f"{PREFIX}-metadata.csv.gz", "2.0.0", "2.1.0"), "metadata") is not None

    def inventory(self) -> Inventory:
        folder = self._folder()
        root = locate(folder, f"{PREFIX}-metadata.csv.gz", "2.0.0", "2.1.0")
        problems: dict[str, list[Any]] = {}
        paths = {key: _file(root, key) for key in ("metadata", "split", self.options["labeler"])}
        if paths["metadata"] is None or paths[self.options["labeler"]] is None:
            wanted = ", ".join(f"{PREFIX}-{k}.csv.gz" for k, p in paths.items() if p is None and k != "split")
            raise DatasetError(f"No {wanted} in {folder}: not a MIMIC-CXR-JPG folder")
        meta, lines = read_csv_frame(
            paths["metadata"], problems, required=("dicom_id", "subject_id", "study_id", "ViewPosition")
        )
        meta["dicom_id"] = meta["dicom_id"].str.strip()
        labels_file = paths[self.options["labeler"]]
        assert labels_file is not None
        labels, _ = read_csv_frame(
            labels_file, problems, required=("subject_id", "study_id", *PUBLISHED_LABELS)
        )
        matrix, unknown = code_matrix(labels, PUBLISHED_LABELS, self.options["uncertain"])
        key = labels["subject_id"].str.strip() + "/" + labels["study_id"].str.strip()
        first = ~key.duplicated().to_numpy()
        position = pd.Series(np.arange(len(labels))[first], index=key[first].to_numpy())
        where = position.reindex(
            (meta["subject_id"].str.strip() + "/" + meta["study_id"].str.strip()).to_numpy()
        )
        found = where.notna().to_numpy()
        index = where.fillna(0).to_numpy(dtype=np.int64)
        values = np.where(found[:, None], matrix[index], np.nan)
        bad = np.where(found, unknown.to_numpy()[index], "")
        seen = code_values(labels, PUBLISHED_LABELS, self.options["uncertain"], labels_file)
        listed: list[Any] = [None] * len(meta)
        if paths["split"] is not None:
            split, _ = read_csv_frame(paths["split"], problems, required=("dicom_id", "split"))
            text = split["split"].str.strip()
            counts = text.value_counts()
            for value, count in counts[~counts.index.isin(list(SPLITS))].items():
                problems.setdefault("unmapped_value", []).append(
                    {"file": str(paths["split"]), "column": "split", "value": value, "count": int(count),
                     "reason": f"{int(count)} row(s); expected one of {', '.join(SPLITS)}; their images are unlisted"}
                )  # fmt: skip
            names = {k: f"{v} list" for k, v in SPLITS.items()}
            seen += value_counts(
                "split", text, lambda v: names.get(v, "not a split: image unlisted"), paths["split"]
            )
            by_id = pd.Series(text.map(SPLITS).to_numpy(), index=split["dicom_id"].str.strip())
            by_id = by_id[~by_id.index.duplicated()]
            listed = by_id.reindex(meta["dicom_id"]).where(lambda s: s.notna(), None).tolist()
        rows = build_rows(
            self.label_names,
            values,
            image=meta["dicom_id"].tolist(),
            patient=meta["subject_id"].str.strip().tolist(),
            row=lines,
            view=meta["ViewPosition"].str.strip(),
            lists=listed,
            unknown=bad,
            finding=bad,
            file=[str(labels_file)] * len(meta),
        )
        files = scan_tree(root / "files", suffixes=(".jpg",), strip_suffix=True, problems=problems)
        return Inventory(
            rows=rows,
            files=files,
            metadata_file=str(paths["metadata"]),
            has_lists=paths["split"] is not None,
            problems=problems,
            label_values=seen,
        )
