"""SIIM-ACR Pneumothorax Segmentation (Kaggle, 2019), as its data page ships the training set.

Layout (kaggle.com/c/siim-acr-pneumothorax-segmentation/data; the images are NIH ChestX-ray14
radiographs re-annotated by SIIM/ACR radiologists)::

    train-rle.csv          header "ImageId, EncodedPixels" (note the space before EncodedPixels);
                           one row per pneumothorax mask, run-length encoded, or " -1" where the
                           image has none
    dicom-images-train/<StudyInstanceUID>/<SeriesInstanceUID>/<ImageId>.dcm

Read here: ``Pneumothorax`` = 1 where an image has any mask, 0 where its row is -1; an empty or
otherwise unreadable EncodedPixels cell is reported as ``unknown_label`` with its line. The
patient id, view position, age and sex are read from each DICOM header (``PatientID``,
``ViewPosition``, ``PatientAge``, ``PatientSex``); with ``headers=False`` the ImageId stands for
the patient. There is no official split of the training images (dicom-images-test is not read).

Compared with torchxrayvision's ``SIIM_Pneumothorax_Dataset`` on the train-rle.csv it ships
(tests/test_real_files.py): torchxrayvision has one item per row (12,954, one per mask: 3,576
positive), cxrzoo one per image (12,047: 2,669 positive, 9,378 negative); per image the two agree.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from cxrzoo.data.base import DatasetError, DatasetSource, Inventory, scan_tree
from cxrzoo.data.csvfiles import parse_ages, read_csv_frame, value_counts
from cxrzoo.data.readers import build_rows, dicom_headers, normalise_sex

RLE_CSV = "train-rle.csv"
IMAGES = "dicom-images-train"
_RLE = re.compile(r"^\d+( \d+)*$")


class SiimPneumothorax(DatasetSource):
    """The SIIM-ACR Pneumothorax training images and their masks' presence."""

    name: ClassVar[str] = "siim_pneumothorax"
    title: ClassVar[str] = "SIIM-ACR Pneumothorax Segmentation"
    labels: ClassVar[tuple[str, ...]] = ("Pneumothorax",)
    options_defaults: ClassVar[dict[str, Any]] = {"headers": True}
    option_choices: ClassVar[dict[str, tuple[Any, ...]]] = {"headers": (True, False)}

    @classmethod
    def detect(cls, root: Path) -> bool:
        return (root / RLE_CSV).is_file()

    def inventory(self) -> Inventory:
        root = self._folder()
        path = root / RLE_CSV
        if not path.is_file():
            raise DatasetError(f"No {RLE_CSV} in {root}: not a SIIM-ACR Pneumothorax folder")
        problems: dict[str, list[Any]] = {}
        frame, lines = read_csv_frame(path, problems, required=("ImageId", "EncodedPixels"))
        image = frame["ImageId"].str.strip()
        rle = frame["EncodedPixels"].str.strip()
        value = np.where(rle == "-1", 0.0, np.where(rle.str.match(_RLE.pattern), 1.0, np.nan))
        per_row = frame.assign(image=image, value=value, line=lines, text=rle)
        grouped = per_row.groupby("image", sort=False).agg(
            line=("line", "first"), value=("value", "max"), bad=("value", lambda s: bool(np.isnan(s).any())),
            text=("text", "first"),
        )  # fmt: skip
        unknown = np.where(grouped["bad"], "EncodedPixels=" + grouped["text"].map(repr), "")
        files = scan_tree(root / IMAGES, suffixes=(".dcm",), strip_suffix=True, problems=problems)
        images = grouped.index.to_series()
        patient = images
        view = age = sex = None
        if self.options["headers"] and len(files):
            headers = dicom_headers(files.drop_duplicates("image")).reindex(grouped.index).fillna("")
            patient = headers["PatientID"].where(headers["PatientID"] != "", images)
            view, sex = headers["ViewPosition"], normalise_sex(headers["PatientSex"])
            age = parse_ages(
                headers["PatientAge"],
                images,
                grouped["line"].to_numpy(),
                problems,
                path,
                "PatientAge (DICOM)",
            )
        rows = build_rows(
            self.label_names,
            grouped["value"].to_numpy()[:, None],
            image=images.tolist(),
            patient=list(patient),
            row=grouped["line"].to_numpy(),
            age=age,
            sex=sex,
            view=view,
            unknown=unknown,
            finding=unknown,
        )
        kind = np.where(rle == "-1", "-1", np.where(value == 1.0, "(a run-length mask)", rle))
        meaning = {"-1": "Pneumothorax 0 (no mask)", "(a run-length mask)": "Pneumothorax 1"}
        values = value_counts(
            "EncodedPixels", pd.Series(kind), lambda v: meaning.get(v, "not a mask: image not used"), path
        )
        return Inventory(
            rows=rows,
            files=files,
            metadata_file=str(path),
            has_lists=False,
            problems=problems,
            label_values=values,
        )
