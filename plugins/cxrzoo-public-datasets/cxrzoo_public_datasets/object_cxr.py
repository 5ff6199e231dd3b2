"""object-CXR (JF Healthcare, MIDL 2020 challenge): foreign objects on chest X-rays.

Layout (the challenge's download, github.com/hlk-1135/object-CXR and jfhealthcare.github.io/object-CXR)::

    train.csv   image_name, annotation   (8,000 images)
    dev.csv     image_name, annotation   (1,000 images)
    train/<image_name>   dev/<image_name>   (JPEGs; unpack train.zip and dev.zip there)

``annotation`` lists the objects of an image, each a shape code (0 rectangle, 1 ellipse,
2 polygon) and its points, separated by ";"; it is blank where the image holds no foreign object.

Read here: one label, Foreign Object (registered in the vocabulary by this reader): 1 where
``annotation`` is not blank, 0 where it is. The two files are the publishers' split (train ->
train_val, dev -> val). The images are not anonymised ids of patients: every image is its own
patient. Images still inside train.zip / dev.zip are not read (unpack them); the catalog reports
them as missing.

Compared with torchxrayvision's ``ObjectCXR_Dataset`` (which reads one CSV and the zip): the same
rule, ``annotation`` present -> 1, else 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from cxrzoo.data.base import TRAIN_VAL, VAL, DatasetError, DatasetSource, Inventory, scan_tree
from cxrzoo.data.csvfiles import read_csv_frame, value_counts
from cxrzoo.data.readers import build_rows, header_has
from cxrzoo.labels import canonical, register_finding

if canonical("Foreign Object") is None:
    register_finding("Foreign Object", synonyms=("Foreign Body",), source="cxrzoo-public-datasets")
FILES: dict[str, tuple[str, str]] = {"train.csv": ("train", TRAIN_VAL), "dev.csv": ("dev", VAL)}
_REQUIRED = ("image_name", "annotation")


class ObjectCxr(DatasetSource):
    """object-CXR, read from the folder holding train.csv, dev.csv, train/ and dev/."""

    name: ClassVar[str] = "object_cxr"
    title: ClassVar[str] = "object-CXR (JF Healthcare)"
    labels: ClassVar[tuple[str, ...]] = ("Foreign Object",)

    @classmethod
    def detect(cls, root: Path) -> bool:
        return header_has(root / "train.csv", *_REQUIRED) or header_has(root / "dev.csv", *_REQUIRED)

    def inventory(self) -> Inventory:
        root = self._folder()
        if not self.detect(root):
            raise DatasetError(f"No train.csv or dev.csv with columns {', '.join(_REQUIRED)} in {root}")
        problems: dict[str, list[Any]] = {}
        parts, all_files, seen = [], [], []
        for name, (folder, listed) in FILES.items():
            path = root / name
            if not path.is_file():
                continue
            frame, lines = read_csv_frame(path, problems, required=_REQUIRED)
            image = frame["image_name"].str.strip()
            present = (frame["annotation"].str.strip() != "").to_numpy()
            parts.append(
                build_rows(
                    self.label_names,
                    present.astype(np.float32)[:, None],
                    image=image.tolist(),
                    patient=image.tolist(),
                    row=lines,
                    lists=[listed] * len(frame),
                    file=[str(path)] * len(frame),
                )
            )
            kind = pd.Series(np.where(present, "(objects)", ""), dtype=object)
            meaning = {"(objects)": "Foreign Object 1", "": "Foreign Object 0 (blank)"}
            seen += value_counts("annotation", kind, meaning, path)
            all_files.append(scan_tree(root / folder, problems=problems))
        return Inventory(
            rows=pd.concat(parts, ignore_index=True),
            files=pd.concat(all_files, ignore_index=True),
            metadata_file=str(root / "train.csv"),
            has_lists=True,
            problems=problems,
            label_values=seen,
        )
