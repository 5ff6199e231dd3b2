"""CheXpert (Stanford ML Group), as CheXpert-v1.0 or CheXpert-v1.0-small is downloaded.

Layout (Irvin et al., "CheXpert: A Large Chest Radiograph Dataset with Uncertainty Labels and
Expert Comparison", AAAI 2019; https://stanfordmlgroup.github.io/competitions/chexpert/; the
README of the download)::

    CheXpert-v1.0-small/
      train.csv   valid.csv
      train/patient00001/study1/view1_frontal.jpg
      valid/patient64541/study1/view1_frontal.jpg

Both CSV files have the header ``Path,Sex,Age,Frontal/Lateral,AP/PA`` followed by the 14
observations: No Finding, Enlarged Cardiomediastinum, Cardiomegaly, Lung Opacity, Lung Lesion,
Edema, Consolidation, Pneumonia, Atelectasis, Pneumothorax, Pleural Effusion, Pleural Other,
Fracture, Support Devices. A cell is 1.0 (positive), 0.0 (negative), -1.0 (uncertain) or blank
(not mentioned in the report). ``Path`` starts with the release's folder name
(``CheXpert-v1.0-small/train/…``). valid.csv is the official validation set (234 images labelled
by radiologists); the test set is not part of the download, so the split's test part is drawn
from train by patient (:func:`cxrzoo.data.splits.make_splits` says so in its notes).

Read here: blank -> NaN (unknown), -1.0 -> NaN / 1 / 0 under the ``uncertain`` option (ignore,
ones, zeros); any other value -> the row is reported as ``unknown_label`` with its line and not
used. Image ids are ``Path`` without the release folder (``train/patient00001/study1/…``);
``patient`` is ``patientNNNNN``, ``follow_up`` the study number, ``view`` the AP/PA value (the
Frontal/Lateral value for laterals, whose AP/PA is blank), ``sex`` M / F / "" (Unknown).

Compared with torchxrayvision's ``CheX_Dataset`` on the CheXpert-v1.0-small train.csv it ships
(tests/test_real_files.py): the same 223,414 images and 64,540 patients and, finding by finding,
the same positives. torchxrayvision sets every finding but Support Devices to 0 on an image whose
No Finding is 1, where the file leaves it blank or -1; cxrzoo keeps those unknown, so its
negatives are fewer by exactly the No Finding images (Atelectasis: 1,328 negatives here, 23,226
there).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from cxrzoo.data.base import TRAIN_VAL, VAL, DatasetError, DatasetSource, Inventory, scan_tree
from cxrzoo.data.csvfiles import parse_ages, parse_counts, read_csv_frame
from cxrzoo.data.readers import (
    UNCERTAIN_CHOICE,
    UNCERTAIN_OPTION,
    build_rows,
    canonical_labels,
    code_matrix,
    code_values,
    header_has,
    locate,
    normalise_sex,
)
from cxrzoo.labels import CHEXPERT_LABELS

#: CheXpert's label columns as published, in its order.
PUBLISHED_LABELS: tuple[str, ...] = CHEXPERT_LABELS
#: The label files and the list each one is.
CSV_FILES: dict[str, str] = {"train.csv": TRAIN_VAL, "valid.csv": VAL}
_REQUIRED = ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *PUBLISHED_LABELS)
_PATH = r"^(?:(?P<release>CheXpert[^/]*)/)?(?P<image>(?:train|valid|test)/(?P<patient>patient\d+)/study(?P<study>\d+)/[^/]+)$"


class CheXpert(DatasetSource):
    """CheXpert-v1.0 or CheXpert-v1.0-small, read from the folder holding train.csv (or its parent)."""

    name: ClassVar[str] = "chexpert"
    title: ClassVar[str] = "CheXpert (Stanford ML Group)"
    labels: ClassVar[tuple[str, ...]] = canonical_labels(PUBLISHED_LABELS)
    options_defaults: ClassVar[dict[str, Any]] = dict(UNCERTAIN_OPTION)
    option_choices: ClassVar[dict[str, tuple[Any, ...]]] = dict(UNCERTAIN_CHOICE)

    @classmethod
    def detect(cls, root: Path) -> bool:
        folder = locate(root, "train.csv", "CheXpert-v1.0-small", "CheXpert-v1.0")
        return header_has(folder / "train.csv", "Path", "Frontal/Lateral", "AP/PA")

    def inventory(self) -> Inventory:
        root = locate(self._folder(), "train.csv", "CheXpert-v1.0-small", "CheXpert-v1.0")
        if not (root / "train.csv").is_file():
            raise DatasetError(
                f"No CheXpert train.csv in {self.root} (expected CheXpert-v1.0-small/train.csv)"
            )
        problems: dict[str, list[Any]] = {}
        parts = []
        values: list[dict[str, Any]] = []
        for name, listed in CSV_FILES.items():
            path = root / name
            if not path.is_file():
                continue
            frame, lines = read_csv_frame(path, problems, required=_REQUIRED)
            parts.append(self._rows(frame, lines, path, listed, problems))
            values += code_values(frame, PUBLISHED_LABELS, self.options["uncertain"], path)
        rows = pd.concat(parts, ignore_index=True)
        files = scan_tree(root, relative_to=root, suffixes=(".jpg", ".jpeg", ".png"), problems=problems)
        return Inventory(
            rows=rows,
            files=files,
            metadata_file=str(root / "train.csv"),
            has_lists=True,
            problems=problems,
            label_values=values,
        )

    def _rows(
        self, frame: pd.DataFrame, lines: Any, path: Path, listed: str, problems: dict[str, list[Any]]
    ) -> pd.DataFrame:
        parsed = frame["Path"].str.strip().str.extract(_PATH)
        bad_path = parsed["image"].isna()
        image = parsed["image"].where(~bad_path, frame["Path"].str.strip())
        matrix, unknown = code_matrix(frame, PUBLISHED_LABELS, self.options["uncertain"])
        unknown = unknown.where(~bad_path.to_numpy(), "Path=" + frame["Path"].map(repr))
        view = frame["AP/PA"].str.strip()
        view = view.where(view != "", frame["Frontal/Lateral"].str.strip())
        return build_rows(
            self.label_names,
            matrix,
            image=image.tolist(),
            patient=parsed["patient"].fillna("").tolist(),
            row=lines,
            age=parse_ages(frame["Age"], image, lines, problems, path, "Age"),
            sex=normalise_sex(frame["Sex"]),
            view=view,
            lists=[listed] * len(frame),
            follow_up=parse_counts(parsed["study"].fillna(""), image, lines, problems, path, "Path (study)"),
            unknown=unknown,
            finding=unknown,
            file=[str(path)] * len(frame),
        )
