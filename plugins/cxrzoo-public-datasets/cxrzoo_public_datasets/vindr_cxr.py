"""VinDr-CXR 1.0.0 (PhysioNet), as downloaded from physionet.org/content/vindr-cxr/1.0.0/.

Layout (Nguyen et al., "VinDr-CXR: An open dataset of chest X-rays with radiologist's
annotations", Scientific Data 9, 429, 2022; the PhysioNet project page)::

    annotations/image_labels_train.csv   image_id, rad_id, then one 0/1 column per finding;
                                         one row per radiologist (3 per training image)
    annotations/image_labels_test.csv    image_id, then the same columns: the consensus of 5
                                         radiologists, one row per image
    annotations/annotations_train.csv, annotations_test.csv   (boxes; not read)
    train/<image_id>.dicom   test/<image_id>.dicom

The finding columns, in the published order: 22 local labels (Aortic enlargement, Atelectasis,
Calcification, Cardiomegaly, Clavicle fracture, Consolidation, Edema, Emphysema, Enlarged PA,
ILD, Infiltration, Lung Opacity, Lung cavity, Lung cyst, Mediastinal shift, Nodule/Mass, Pleural
effusion, Pleural thickening, Pneumothorax, Pulmonary fibrosis, Rib fracture, Other lesion) and 6
global ones (COPD, Lung tumor, Pneumonia, Tuberculosis, Other diseases, No finding). The labels
are the columns the file has (mapped to vocabulary names), in its order.

Aggregation of the training readers, the ``vote`` option: ``majority`` (default): positive when
more than half of an image's readers marked the finding, negative when fewer than half did, and
NaN on a tie (2 readers split 1-1); ``any``: positive when any reader marked it. The test file is
the published consensus, read as it is. The official split is kept (train -> train_val, test ->
test). VinDr-CXR publishes no patient ids (each image is from a different study): ``patient``
is the image id. Age, sex and view come from the DICOM headers (``headers=False`` skips them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from cxrzoo.data.base import TEST, TRAIN_VAL, DatasetError, DatasetSource, Inventory, scan_tree
from cxrzoo.data.csvfiles import parse_ages, read_csv_frame
from cxrzoo_public_datasets._common import build_rows, canonical_labels, dicom_headers, normalise_sex

PUBLISHED_LABELS: tuple[str, ...] = (
    "Aortic enlargement",
    "Atelectasis",
    "Calcification",
    "Cardiomegaly",
    "Clavicle fracture",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Enlarged PA",
    "ILD",
    "Infiltration",
    "Lung Opacity",
    "Lung cavity",
    "Lung cyst",
    "Mediastinal shift",
    "Nodule/Mass",
    "Pleural effusion",
    "Pleural thickening",
    "Pneumothorax",
    "Pulmonary fibrosis",
    "Rib fracture",
    "Other lesion",
    "COPD",
    "Lung tumor",
    "Pneumonia",
    "Tuberculosis",
    "Other diseases",
    "No finding",
)
FILES: dict[str, tuple[str, str, str]] = {
    TRAIN_VAL: ("annotations/image_labels_train.csv", "train", TRAIN_VAL),
    TEST: ("annotations/image_labels_test.csv", "test", TEST),
}
_BOOKKEEPING = {"image_id", "rad_id"}


class VinDrCxr(DatasetSource):
    """VinDr-CXR, read from the folder holding annotations/, train/ and test/."""

    name: ClassVar[str] = "vindr_cxr"
    labels: ClassVar[tuple[str, ...]] = canonical_labels(PUBLISHED_LABELS)
    options_defaults: ClassVar[dict[str, Any]] = {"vote": "majority", "headers": True}
    option_choices: ClassVar[dict[str, tuple[Any, ...]]] = {
        "vote": ("majority", "any"),
        "headers": (True, False),
    }

    @classmethod
    def detect(cls, root: Path) -> bool:
        return (root / FILES[TRAIN_VAL][0]).is_file()

    def inventory(self) -> Inventory:
        root = self._folder()
        if not (root / FILES[TRAIN_VAL][0]).is_file():
            raise DatasetError(f"No {FILES[TRAIN_VAL][0]} in {root}: not a VinDr-CXR folder")
        problems: dict[str, list[Any]] = {}
        parts, all_files = [], []
        for listed, (name, folder, _) in FILES.items():
            path = root / name
            if not path.is_file():
                continue
            frame, lines = read_csv_frame(path, problems, required=("image_id",))
            columns = [c for c in frame.columns if c not in _BOOKKEEPING and not c.startswith("Unnamed:")]
            known = [c for c in PUBLISHED_LABELS if c in columns]
            extra = [c for c in columns if c not in PUBLISHED_LABELS]
            if extra:
                problems.setdefault("unmapped_label", []).extend(
                    {"label": c, "count": len(frame), "file": str(path)} for c in extra
                )
            values = frame[known].apply(lambda s: pd.to_numeric(s.str.strip(), errors="coerce"))
            bad_cell = ~values.isin([0, 1]).to_numpy()
            frame = frame.assign(image_id=frame["image_id"].str.strip(), line=lines)
            per_image = self._aggregate(frame, values, bad_cell, known, listed)
            files = scan_tree(root / folder, suffixes=(".dicom", ".dcm"), strip_suffix=True)
            all_files.append(files)
            parts.append((per_image, path, listed, files))
        files = pd.concat(all_files, ignore_index=True)
        headers = None
        if self.options["headers"] and len(files):
            headers = dicom_headers(
                files.drop_duplicates("image"), ("PatientAge", "PatientSex", "ViewPosition")
            )
        rows = []
        for (images, matrix, line, unknown), path, listed, _ in parts:
            index = pd.Index(images)
            age = sex = view = None
            if headers is not None:
                h = headers.reindex(index).fillna("")
                view, sex = h["ViewPosition"], normalise_sex(h["PatientSex"])
                age = parse_ages(
                    h["PatientAge"], pd.Series(images), line, problems, path, "PatientAge (DICOM)"
                )
            rows.append(
                build_rows(
                    self.label_names,
                    matrix,
                    image=images,
                    patient=images,
                    row=line,
                    age=age,
                    sex=sex,
                    view=view,
                    lists=[listed] * len(images),
                    unknown=unknown,
                    finding=unknown,
                    file=[str(path)] * len(images),
                )
            )
        return Inventory(
            rows=pd.concat(rows, ignore_index=True),
            files=files,
            metadata_file=str(root / FILES[TRAIN_VAL][0]),
            has_lists=True,
            problems=problems,
        )

    def _aggregate(
        self, frame: pd.DataFrame, values: pd.DataFrame, bad_cell: np.ndarray, known: list[str], listed: str
    ) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
        """Per image: the readers' vote (train) or the consensus (test), in PUBLISHED_LABELS order."""
        order = [PUBLISHED_LABELS.index(c) for c in known]
        ids = frame["image_id"].to_numpy()
        images, inverse = np.unique(ids, return_inverse=True)
        first_line = np.full(len(images), np.iinfo(np.int64).max)
        np.minimum.at(first_line, inverse, frame["line"].to_numpy())
        arr = np.where(bad_cell, 0.0, values.to_numpy(dtype=np.float64))
        positives = np.zeros((len(images), len(known)))
        np.add.at(positives, inverse, arr)
        readers = np.bincount(inverse, minlength=len(images)).astype(np.float64)[:, None]
        if listed == TEST or self.options["vote"] == "majority":
            share = positives / readers
            vote = np.where(share > 0.5, 1.0, np.where(share < 0.5, 0.0, np.nan))
        else:
            vote = (positives > 0).astype(np.float64)
        matrix = np.full((len(images), len(PUBLISHED_LABELS)), np.nan, dtype=np.float32)
        matrix[:, order] = vote
        unknown = np.full(len(images), "", dtype=object)
        for r, c in zip(*np.nonzero(bad_cell), strict=True):
            k = inverse[r]
            cell = f"{known[c]}={frame[known[c]].iat[r]!r} (line {frame['line'].iat[r]})"
            unknown[k] = f"{unknown[k]}|{cell}" if unknown[k] else cell
        order_by_line = np.argsort(first_line, kind="stable")
        return (
            images[order_by_line].tolist(),
            matrix[order_by_line],
            first_line[order_by_line],
            unknown[order_by_line],
        )
