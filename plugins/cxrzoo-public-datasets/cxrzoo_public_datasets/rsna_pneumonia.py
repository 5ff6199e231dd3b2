"""RSNA Pneumonia Detection Challenge (Kaggle, 2018), stage 2, as the competition's data page ships it.

Layout (Shih et al., "Augmenting the NIH Chest Radiograph Dataset with Expert Annotations of
Possible Pneumonia", Radiology: AI 2019; kaggle.com/c/rsna-pneumonia-detection-challenge/data)::

    stage_2_train_labels.csv          patientId,x,y,width,height,Target   (one row per box;
                                      x..height blank and Target 0 without opacity)
    stage_2_detailed_class_info.csv   patientId,class   ("Lung Opacity", "No Lung Opacity / Not
                                      Normal", "Normal"; one row per box too)
    stage_2_train_images/<patientId>.dcm
    stage_2_test_images/<patientId>.dcm   (no labels published; not read)

``patientId`` names one image (one per patient). The competition's "Lung Opacity" class is its
definition of evidence of pneumonia (Target = 1): opacities of other causes were labelled "No Lung
Opacity / Not Normal".

Labels chosen here: ``Pneumonia`` = Target (1 / 0); ``Lung Opacity`` = 1 where Target is 1 and
NaN otherwise (an image without a pneumonia-like opacity may still hold another opacity, so
Target 0 is not a negative for the broad finding); ``No Finding`` = 1 for class "Normal", 0 for
the other classes. Rows of one image are aggregated (Target: any box). A class the challenge does
not define, or a Target that is not 0/1 or contradicts the class, is reported as
``unknown_label``. View position, age and sex come from the DICOM headers (``headers=False``
skips reading them). There is no official split of the labelled images.

Compared with torchxrayvision's ``RSNA_Pneumonia_Dataset`` on the stage 2 labels it ships
(tests/test_real_files.py): the same 26,684 images and Pneumonia (6,012 positive, 20,672
negative); torchxrayvision copies Target into Lung Opacity, so its 20,672 Lung Opacity negatives
are unknown here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from cxrzoo.data.base import DatasetError, DatasetSource, Inventory, scan_tree
from cxrzoo.data.csvfiles import parse_ages, read_csv_frame, value_counts
from cxrzoo.data.readers import build_rows, dicom_headers, normalise_sex

LABELS_CSV = "stage_2_train_labels.csv"
CLASS_CSV = "stage_2_detailed_class_info.csv"
IMAGES = "stage_2_train_images"
CLASSES = {"Lung Opacity": 1, "No Lung Opacity / Not Normal": 0, "Normal": 0}


class RsnaPneumonia(DatasetSource):
    """The RSNA Pneumonia Detection Challenge's labelled (stage 2 train) images."""

    name: ClassVar[str] = "rsna_pneumonia"
    title: ClassVar[str] = "RSNA Pneumonia Detection Challenge"
    labels: ClassVar[tuple[str, ...]] = ("Pneumonia", "Lung Opacity", "No Finding")
    options_defaults: ClassVar[dict[str, Any]] = {"headers": True}
    option_choices: ClassVar[dict[str, tuple[Any, ...]]] = {"headers": (True, False)}

    @classmethod
    def detect(cls, root: Path) -> bool:
        return (root / LABELS_CSV).is_file()

    def inventory(self) -> Inventory:
        root = self._folder()
        path = root / LABELS_CSV
        if not path.is_file():
            raise DatasetError(f"No {LABELS_CSV} in {root}: not an RSNA Pneumonia folder")
        problems: dict[str, list[Any]] = {}
        boxes, lines = read_csv_frame(path, problems, required=("patientId", "Target"))
        boxes["patientId"] = boxes["patientId"].str.strip()
        target = pd.to_numeric(boxes["Target"].str.strip(), errors="coerce")
        bad_target = ~target.isin([0, 1])
        boxes["line"] = lines
        boxes["t"] = target.where(~bad_target, np.nan)
        first = boxes.groupby("patientId", sort=False).agg(
            line=("line", "first"), t=("t", "max"), bad=("t", lambda s: bool(s.isna().any()))
        )
        info = pd.Series(dtype=object)
        if (root / CLASS_CSV).is_file():
            classes, _ = read_csv_frame(root / CLASS_CSV, problems, required=("patientId", "class"))
            info = (
                classes.assign(patientId=classes["patientId"].str.strip())
                .drop_duplicates("patientId")
                .set_index("patientId")["class"]
                .str.strip()
            )
        cls = info.reindex(first.index)
        n = len(first)
        t = first["t"].to_numpy(dtype=np.float64)
        matrix = np.full((n, 3), np.nan, dtype=np.float32)
        matrix[:, 0] = t
        matrix[:, 1] = np.where(t == 1, 1.0, np.nan)
        known_cls = cls.isin(list(CLASSES)).to_numpy()
        matrix[:, 2] = np.where(known_cls, (cls == "Normal").to_numpy(dtype=np.float64), np.nan)
        unknown = np.full(n, "", dtype=object)
        text = np.full(n, "", dtype=object)
        for i, (_, row) in enumerate(first.iterrows()):
            c = cls.iat[i]
            text[i] = f"Target={row['t']!r} class={c!r}"
            if row["bad"]:
                unknown[i] = "Target is not 0 or 1"
            elif isinstance(c, str) and c not in CLASSES:
                unknown[i] = f"class {c!r}"
            elif isinstance(c, str) and CLASSES[c] != row["t"]:
                unknown[i] = f"class {c!r} contradicts Target {int(row['t'])}"
        files = scan_tree(root / IMAGES, suffixes=(".dcm",), strip_suffix=True, problems=problems)
        images = first.index.to_series()
        view = age = sex = None
        if self.options["headers"] and len(files):
            headers = dicom_headers(files.drop_duplicates("image")).reindex(first.index).fillna("")
            view, sex = headers["ViewPosition"], normalise_sex(headers["PatientSex"])
            age = parse_ages(
                headers["PatientAge"], images, first["line"].to_numpy(), problems, path, "PatientAge (DICOM)"
            )
        rows = build_rows(
            self.label_names,
            matrix,
            image=images.tolist(),
            patient=images.tolist(),
            row=first["line"].to_numpy(),
            age=age,
            sex=sex,
            view=view,
            unknown=unknown,
            finding=np.where(unknown != "", text, ""),
        )
        targets = {"1": "Pneumonia 1, Lung Opacity 1", "0": "Pneumonia 0, Lung Opacity unknown"}
        values = value_counts(
            "Target", boxes["Target"], lambda v: targets.get(v, "not 0 or 1: image not used"), path
        )
        if len(info):
            named = {"Normal": "No Finding 1", "Lung Opacity": "No Finding 0 (Target 1)",
                     "No Lung Opacity / Not Normal": "No Finding 0 (Target 0)"}  # fmt: skip
            values += value_counts("class", info, lambda v: named.get(v, "unknown class: image not used"),
                                   root / CLASS_CSV)  # fmt: skip
        return Inventory(
            rows=rows,
            files=files,
            metadata_file=str(path),
            has_lists=False,
            problems=problems,
            label_values=values,
        )
