"""TBX11K (Liu et al., "Rethinking Computer-Aided Tuberculosis Diagnosis", CVPR 2020).

Layout (the download of github.com/yun-liu/Tuberculosis)::

    imgs/health/h0001.png  imgs/sick/s0001.png  imgs/tb/tb0003.png  imgs/test/…  imgs/extra/…
    annotations/json/TBX11K_train.json   TBX11K_val.json   TBX11K_trainval.json   (COCO format)
    lists/TBX11K_train.txt …

A JSON file has ``images`` (``id``, ``file_name`` relative to ``imgs/``), ``annotations``
(``image_id``, ``category_id``, ``bbox``: one per TB area) and ``categories`` (``ActiveTuberculosis``,
``ObsoletePulmonaryTuberculosis``, ``PulmonaryTuberculosis``, supercategory ``Tuberculosis``).

Read here: TBX11K_train.json -> train_val and TBX11K_val.json -> val (TBX11K_trainval.json, their
union, only where neither is there); the test images have no published labels and are not read.
Labels: Tuberculosis (an image with any box of the Tuberculosis supercategory), Active
Tuberculosis and Obsolete Pulmonary Tuberculosis (an image with a box of that category; 0
otherwise), and No Finding (1 for an image in ``health/``, 0 for ``sick/`` and ``tb/``). A
category the reader does not know is counted under ``unmapped_label``. Every image is its own
patient (TBX11K publishes no patient ids). The image id is ``file_name`` (``tb/tb0003.png``).

Compared with torchxrayvision's ``TBX11K_Dataset`` (which reads one JSON file): the same images
and the same counts of its four columns (its ``PulmonaryTuberculosis``, never used in the
published train/val files, is not a label here); No Finding is cxrzoo's addition.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from cxrzoo.data.base import TRAIN_VAL, VAL, DatasetError, DatasetSource, Inventory, scan_tree
from cxrzoo.data.readers import build_rows
from cxrzoo.labels import canonical, register_finding

JSON = "annotations/json"
FILES: dict[str, str] = {"TBX11K_train.json": TRAIN_VAL, "TBX11K_val.json": VAL}
CATEGORIES: dict[str, str] = {
    "ActiveTuberculosis": "Active Tuberculosis",
    "ObsoletePulmonaryTuberculosis": "Obsolete Pulmonary Tuberculosis",
}
for _name in CATEGORIES.values():
    if canonical(_name) is None:
        register_finding(_name, source="cxrzoo-public-datasets")
LABELS: tuple[str, ...] = ("Tuberculosis", *CATEGORIES.values(), "No Finding")


class Tbx11k(DatasetSource):
    """TBX11K, read from the folder holding imgs/ and annotations/."""

    name: ClassVar[str] = "tbx11k"
    title: ClassVar[str] = "TBX11K"
    labels: ClassVar[tuple[str, ...]] = LABELS

    @classmethod
    def detect(cls, root: Path) -> bool:
        return any((root / JSON / n).is_file() for n in (*FILES, "TBX11K_trainval.json"))

    def inventory(self) -> Inventory:
        root = self._folder()
        files = {n: v for n, v in FILES.items() if (root / JSON / n).is_file()}
        if not files and (root / JSON / "TBX11K_trainval.json").is_file():
            files = {"TBX11K_trainval.json": TRAIN_VAL}
        if not files:
            raise DatasetError(
                f"No {JSON}/TBX11K_train.json or TBX11K_val.json in {root}: not a TBX11K folder"
            )
        problems: dict[str, list[Any]] = {}
        parts, seen = [], []
        for name, listed in files.items():
            path = root / JSON / name
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
                images = pd.DataFrame(doc["images"])
                categories = {c["id"]: c for c in doc["categories"]}
                annotations = doc.get("annotations", [])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise DatasetError(f"{path}: not a COCO annotation file ({exc})") from None
            ids = images["id"].tolist()
            where = {i: k for k, i in enumerate(ids)}
            matrix = np.zeros((len(ids), len(LABELS)), dtype=np.float32)
            counts: Counter[str] = Counter()
            for a in annotations:
                k = where.get(a.get("image_id"))
                category = categories.get(a.get("category_id"), {})
                cname = str(category.get("name", a.get("category_id")))
                counts[cname] += 1
                if k is None:
                    continue
                if category.get("supercategory") == "Tuberculosis":
                    matrix[k, 0] = 1.0
                if cname in CATEGORIES:
                    matrix[k, LABELS.index(CATEGORIES[cname])] = 1.0
            unmapped = [c for c in counts if c not in CATEGORIES and c != "PulmonaryTuberculosis"]
            problems.setdefault("unmapped_label", []).extend(
                {"label": c, "count": counts[c], "file": str(path)} for c in unmapped
            )
            image = images["file_name"].astype(str).str.strip()
            matrix[:, LABELS.index("No Finding")] = image.str.startswith("health/").to_numpy(dtype=np.float32)
            parts.append(
                build_rows(
                    self.label_names,
                    matrix,
                    image=image.tolist(),
                    patient=image.tolist(),
                    row=np.arange(1, len(image) + 1),
                    lists=[listed] * len(image),
                    file=[str(path)] * len(image),
                )
            )
            became = {c: (CATEGORIES.get(c, "Tuberculosis only") + " (one box)") for c in counts}
            seen += [
                {
                    "column": "annotations (category)",
                    "value": c,
                    "count": n,
                    "mapped": became[c],
                    "file": str(path),
                }
                for c, n in counts.most_common()
            ]
        if not problems["unmapped_label"]:
            del problems["unmapped_label"]
        return Inventory(
            rows=pd.concat(parts, ignore_index=True),
            files=scan_tree(
                root / "imgs", relative_to=root / "imgs", suffixes=(".png", ".jpg"), problems=problems
            ),
            metadata_file=str(root / JSON / next(iter(files))),
            has_lists=True,
            problems=problems,
            label_values=seen,
        )
