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

The Kaggle "VinBigData Chest X-ray Abnormalities Detection" competition (2020) published the
same 15,000 training images in another layout, read here too::

    train.csv   image_id, class_name, class_id, rad_id, x_min, y_min, x_max, y_max
                one row per box (or per "No finding"), so one radiologist marks an image in one or
                more rows; 14 local classes (class_id 0-13: Aortic enlargement, Atelectasis,
                Calcification, Cardiomegaly, Consolidation, ILD, Infiltration, Lung Opacity,
                Nodule/Mass, Other lesion, Pleural effusion, Pleural thickening, Pneumothorax,
                Pulmonary fibrosis) and "No finding" (class_id 14, boxes blank)
    train/<image_id>.dicom   test/<image_id>.dicom (no labels published; not read)

A radiologist of an image is a distinct ``rad_id`` among its rows; a class they did not mark is
a negative from them. The labels the Kaggle file lacks (the 13 other PhysioNet labels) are
unknown (NaN) for every image. A ``class_name`` outside the 15 is counted under
``unmapped_label`` and ignored.

Aggregation of the training readers, the ``vote`` option: ``majority`` (default): positive when
more than half of an image's readers marked the finding, negative when fewer than half did, and
NaN on a tie (2 readers split 1-1); ``any``: positive when any reader marked it. The test file is
the published consensus, read as it is. The official split is kept (train -> train_val, test ->
test). VinDr-CXR publishes no patient ids (each image is from a different study): ``patient``
is the image id. Age, sex and view come from the DICOM headers (``headers=False`` skips them).

Compared with torchxrayvision's ``VinDr_Dataset`` on the Kaggle ``train.csv`` (which it ships):
the same 15,000 images; torchxrayvision reads 14 findings (not No finding) and sets a finding
positive when any radiologist marked it, negative otherwise. That is ``vote="any"`` here, whose
counts equal torchxrayvision's finding by finding; the default ``majority`` gives fewer
positives, and NaN where two readers split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from cxrzoo.data.base import TEST, TRAIN_VAL, DatasetError, DatasetSource, Inventory, scan_tree
from cxrzoo.data.csvfiles import parse_ages, read_csv_frame, value_counts
from cxrzoo.data.readers import (
    build_rows,
    canonical_labels,
    dicom_headers,
    header_has,
    normalise_sex,
)

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
#: The Kaggle competition's file and its classes, in class_id order.
KAGGLE_CSV = "train.csv"
KAGGLE_CLASSES: tuple[str, ...] = (
    "Aortic enlargement",
    "Atelectasis",
    "Calcification",
    "Cardiomegaly",
    "Consolidation",
    "ILD",
    "Infiltration",
    "Lung Opacity",
    "Nodule/Mass",
    "Other lesion",
    "Pleural effusion",
    "Pleural thickening",
    "Pneumothorax",
    "Pulmonary fibrosis",
    "No finding",
)
_KAGGLE_REQUIRED = ("image_id", "class_name", "rad_id")


def _is_kaggle(root: Path) -> bool:
    return header_has(root / KAGGLE_CSV, *_KAGGLE_REQUIRED)


class VinDrCxr(DatasetSource):
    """VinDr-CXR, read from the folder holding annotations/, train/ and test/."""

    name: ClassVar[str] = "vindr_cxr"
    title: ClassVar[str] = "VinDr-CXR"
    labels: ClassVar[tuple[str, ...]] = canonical_labels(PUBLISHED_LABELS)
    options_defaults: ClassVar[dict[str, Any]] = {"vote": "majority", "headers": True}
    option_choices: ClassVar[dict[str, tuple[Any, ...]]] = {
        "vote": ("majority", "any"),
        "headers": (True, False),
    }

    @classmethod
    def detect(cls, root: Path) -> bool:
        return (root / FILES[TRAIN_VAL][0]).is_file() or _is_kaggle(root)

    def inventory(self) -> Inventory:
        root = self._folder()
        if not (root / FILES[TRAIN_VAL][0]).is_file():
            if _is_kaggle(root):
                return self._kaggle(root)
            raise DatasetError(
                f"No {FILES[TRAIN_VAL][0]} (PhysioNet) or {KAGGLE_CSV} with columns "
                f"{', '.join(_KAGGLE_REQUIRED)} (Kaggle) in {root}: not a VinDr-CXR folder"
            )
        problems: dict[str, list[Any]] = {}
        parts, all_files = [], []
        seen: list[dict[str, Any]] = []
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
            mark = "one reader's mark" if listed == TRAIN_VAL else "the consensus"
            meaning = {"1": f"1 ({mark})", "0": f"0 ({mark})", "1.0": f"1 ({mark})", "0.0": f"0 ({mark})"}
            for c in known:
                seen += value_counts(
                    c, frame[c], lambda v, m=meaning: m.get(v, "not 0 or 1: image not used"), path
                )
            values = frame[known].apply(lambda s: pd.to_numeric(s.str.strip(), errors="coerce"))
            bad_cell = ~values.isin([0, 1]).to_numpy()
            frame = frame.assign(image_id=frame["image_id"].str.strip(), line=lines)
            per_image = self._aggregate(frame, values, bad_cell, known, listed)
            files = scan_tree(
                root / folder, suffixes=(".dicom", ".dcm"), strip_suffix=True, problems=problems
            )
            all_files.append(files)
            parts.append((per_image, path, listed, files))
        files = pd.concat(all_files, ignore_index=True)
        headers = self._headers(files)
        rows = [
            self._rows(images, matrix, line, unknown, path, listed, headers, problems)
            for (images, matrix, line, unknown), path, listed, _ in parts
        ]
        return Inventory(
            rows=pd.concat(rows, ignore_index=True),
            files=files,
            metadata_file=str(root / FILES[TRAIN_VAL][0]),
            has_lists=True,
            problems=problems,
            label_values=seen,
        )

    def _headers(self, files: pd.DataFrame) -> pd.DataFrame | None:
        if not self.options["headers"] or not len(files):
            return None
        return dicom_headers(files.drop_duplicates("image"), ("PatientAge", "PatientSex", "ViewPosition"))

    def _rows(
        self,
        images: list[str],
        matrix: np.ndarray,
        line: np.ndarray,
        unknown: np.ndarray,
        path: Path,
        listed: str,
        headers: pd.DataFrame | None,
        problems: dict[str, list[Any]],
    ) -> pd.DataFrame:
        age = sex = view = None
        if headers is not None:
            h = headers.reindex(pd.Index(images)).fillna("")
            view, sex = h["ViewPosition"], normalise_sex(h["PatientSex"])
            age = parse_ages(h["PatientAge"], pd.Series(images), line, problems, path, "PatientAge (DICOM)")
        return build_rows(
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

    def _kaggle(self, root: Path) -> Inventory:
        """The Kaggle competition's train.csv: one row per box, aggregated per image."""
        path = root / KAGGLE_CSV
        problems: dict[str, list[Any]] = {}
        frame, lines = read_csv_frame(path, problems, required=_KAGGLE_REQUIRED)
        image = frame["image_id"].str.strip().to_numpy()
        reader = frame["rad_id"].str.strip().to_numpy()
        name = frame["class_name"].str.strip()
        counts = name.value_counts()
        known = name.isin(KAGGLE_CLASSES).to_numpy()
        unmapped = counts[~counts.index.isin(KAGGLE_CLASSES)]
        if len(unmapped):
            problems["unmapped_label"] = [
                {"label": label, "count": int(n), "file": str(path), "column": "class_name",
                 "value": label, "reason": f"not one of the competition's 15 classes; in {int(n)} row(s), ignored"}
                for label, n in unmapped.items()
            ]  # fmt: skip
        images, first = np.unique(image, return_index=True)
        inverse = np.searchsorted(images, image)
        # Readers of an image: its distinct rad_ids; a reader's vote for a class: any row of theirs.
        pair = pd.DataFrame({"i": inverse, "r": reader})
        readers = pair.drop_duplicates().groupby("i").size().reindex(range(len(images)), fill_value=0)
        readers = readers.to_numpy(dtype=np.float64)[:, None]
        cls = name.map({c: j for j, c in enumerate(KAGGLE_CLASSES)})
        votes = pd.DataFrame({"i": inverse[known], "r": reader[known], "c": cls[known].to_numpy(dtype=int)})
        votes = votes.drop_duplicates()
        positives = np.zeros((len(images), len(KAGGLE_CLASSES)))
        np.add.at(positives, (votes["i"].to_numpy(), votes["c"].to_numpy()), 1.0)
        vote = self._vote(positives, readers, self.options["vote"])
        matrix = np.full((len(images), len(PUBLISHED_LABELS)), np.nan, dtype=np.float32)
        matrix[:, [PUBLISHED_LABELS.index(c) for c in KAGGLE_CLASSES]] = vote
        order = np.argsort(first, kind="stable")
        line = lines[first][order]
        files = scan_tree(root / "train", suffixes=(".dicom", ".dcm"), strip_suffix=True, problems=problems)
        ids = images[order].tolist()
        rows = self._rows(
            ids, matrix[order], line, np.full(len(ids), "", dtype=object), path, TRAIN_VAL,
            self._headers(files), problems,
        )  # fmt: skip
        mapped = {c: f"{canonical_labels([c])[0]} (one radiologist's mark)" for c in KAGGLE_CLASSES}
        mapped["No finding"] = "No Finding (one radiologist's mark); the other classes 0 from that reader"
        return Inventory(
            rows=rows,
            files=files,
            metadata_file=str(path),
            has_lists=True,
            problems=problems,
            label_values=value_counts("class_name", name, mapped, path),
        )

    @staticmethod
    def _vote(positives: np.ndarray, readers: np.ndarray, rule: str) -> np.ndarray:
        """Per image and finding, the readers' verdict under ``rule`` (the ``vote`` option)."""
        if rule == "majority":
            share = positives / np.maximum(readers, 1.0)
            return np.where(share > 0.5, 1.0, np.where(share < 0.5, 0.0, np.nan))
        return (positives > 0).astype(np.float64)

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
