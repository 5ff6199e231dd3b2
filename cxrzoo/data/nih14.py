"""NIH ChestX-ray14 read as Kaggle ships it, and the synthetic phantoms written in the same layout.

The Kaggle download ("NIH Chest X-rays") is read as it is::

    Data_Entry_2017.csv  or  Data_Entry_2017_v2020.csv(.gz)
    images_001/images/*.png … images_012/images/*.png   (a flat images/ folder works too)
    train_val_list.txt, test_list.txt                    (the official patient-wise split)
    BBox_List_2017.csv                                   (optional bounding boxes)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from cxrzoo.data.base import (
    LABEL_DTYPE,
    ROW_TRAILER,
    TEST,
    TRAIN_VAL,
    VAL,
    DatasetError,
    DatasetSource,
    Inventory,
    row_columns,
    scan_image_files,
)
from cxrzoo.data.csvfiles import parse_ages, parse_counts, read_csv_frame
from cxrzoo.labels import LABELS, NO_FINDING

#: Metadata files looked for, newest labels first.
METADATA_FILES: tuple[str, ...] = (
    "Data_Entry_2017_v2020.csv",
    "Data_Entry_2017_v2020.csv.gz",
    "Data_Entry_2017.csv",
    "Data_Entry_2017.csv.gz",
)
LIST_FILES: dict[str, str] = {TRAIN_VAL: "train_val_list.txt", TEST: "test_list.txt"}
BBOX_FILES: tuple[str, ...] = ("BBox_List_2017.csv", "BBox_List_2017.csv.gz")

_REQUIRED = ("Image Index", "Finding Labels", "Patient ID")
#: Google's expert relabelling of 4,376 NIH images (Majkowska et al., Radiology 2020), the file
#: name torchxrayvision ships it under: the NIH columns, then YES / NO per column below, and
#: "Set Id" (test: images of NIH's test list; val: a validation set drawn from train_val).
GOOGLE_FILES: tuple[str, ...] = (
    "google2019_nih-chest-xray-labels.csv",
    "google2019_nih-chest-xray-labels.csv.gz",
)
#: Google's columns -> vocabulary names ("Nodule or mass" is "Mass", as VinDr-CXR's "Nodule/Mass").
GOOGLE_COLUMNS: dict[str, str] = {
    "Fracture": "Fracture",
    "Pneumothorax": "Pneumothorax",
    "Airspace opacity": "Lung Opacity",
    "Nodule or mass": "Mass",
}
GOOGLE_SETS: dict[str, str] = {"test": TEST, "val": VAL, "validation": VAL}


def find_metadata_file(root: Path) -> Path:
    """The label file in ``root``; a :class:`DatasetError` naming what was looked for."""
    for name in METADATA_FILES:
        path = root / name
        if path.is_file():
            return path
    raise DatasetError(f"No metadata file in {root}: expected one of {', '.join(METADATA_FILES)}")


def read_metadata(path: str | os.PathLike[str], problems: dict[str, list[Any]] | None = None) -> pd.DataFrame:
    """One row per line of an NIH ``Data_Entry`` file, in :func:`~cxrzoo.data.base.row_columns`.

    Findings are parsed into one float 0/1 column per label; findings outside the 14 are kept as
    text in ``unknown_labels`` so that the catalog can report the row. A row with more fields
    than the header (a comma inside a field shifts every column after it) is left out and, like
    an age or follow-up number that is not valid (set unknown), added to ``problems`` by line.
    """
    path = Path(path)
    problems = problems if problems is not None else {}
    raw, row_numbers = read_csv_frame(path, problems)
    missing = [c for c in _REQUIRED if c not in raw.columns]
    if missing:
        raise DatasetError(
            f"{path}: missing column(s) {', '.join(repr(c) for c in missing)}; "
            f"found {', '.join(repr(c) for c in raw.columns if not str(c).startswith('Unnamed:'))}"
        )
    n = len(raw)

    def column(name: str) -> pd.Series:
        if name not in raw.columns:
            return pd.Series([""] * n, dtype=object)
        return raw[name].str.strip().astype(object).reset_index(drop=True)

    image = column("Image Index")
    rows = pd.DataFrame({"image": image, "patient": column("Patient ID")})
    rows["age"] = parse_ages(column("Patient Age"), image, row_numbers, problems, path)
    rows["sex"] = column("Patient Gender")
    rows["view"] = column("View Position")
    rows["list"] = pd.Series([None] * n, dtype=object)
    rows["follow_up"] = parse_counts(column("Follow-up #"), image, row_numbers, problems, path, "Follow-up #")
    findings = column("Finding Labels")
    onehot, unknown = parse_findings(findings)
    for j, label in enumerate(LABELS):
        rows[label] = onehot[:, j].astype(LABEL_DTYPE)
    rows["row"] = row_numbers
    rows["unknown_labels"] = unknown
    rows["finding_labels"] = findings
    return rows.loc[:, row_columns(LABELS)]


def parse_findings(text: pd.Series) -> tuple[np.ndarray, pd.Series]:
    """``"No Finding"`` or ``"A|B"`` per row -> (uint8 ``[N, 14]`` in LABELS order, unknown text).

    The second result holds, per row, the "|"-joined findings that are not among the 14
    ("" when there are none; an empty cell counts as unknown).
    """
    text = text.reset_index(drop=True).astype(str)
    tokens = text.str.split("|").explode().str.strip()
    rows = tokens.index.to_numpy()
    known = tokens.isin(LABELS).to_numpy()
    onehot = np.zeros((len(text), len(LABELS)), dtype=np.uint8)
    codes = pd.Categorical(tokens[known], categories=LABELS).codes
    onehot[rows[known], codes] = 1
    bad = tokens[~known & (tokens != NO_FINDING).to_numpy()]
    unknown = pd.Series("", index=text.index, dtype=object)
    if len(bad):
        joined = bad.groupby(level=0).agg(lambda s: "|".join(t if t else "(empty)" for t in s))
        unknown.loc[joined.index] = joined.to_numpy()
    return onehot, unknown


def finding_values(findings: pd.Series, path: Path) -> list[dict[str, Any]]:
    """The catalog's table of label values: each "|"-separated finding and what it became."""
    from cxrzoo.data.csvfiles import value_counts

    tokens = findings.astype(str).str.split("|").explode().str.strip()

    def became(token: str) -> str:
        if token in LABELS:
            return f"{token} = 1, the other findings 0"
        if token == NO_FINDING:
            return "every finding 0"
        return "not one of the 14: row not used"

    return value_counts("Finding Labels (terms)", tokens, became, path)


def read_google_labels(
    path: Path, problems: dict[str, list[Any]]
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Inventory rows of Google's relabelling file (see :class:`Nih14`) and its label values."""
    from cxrzoo.data.csvfiles import value_counts

    raw, _ = read_csv_frame(path, problems, required=("Image Index", "Patient ID", *GOOGLE_COLUMNS))
    rows = read_metadata(path, {})  # the NIH columns the file repeats; their problems are NIH's
    labels = list(GOOGLE_COLUMNS.values())
    out = rows.loc[:, [c for c in rows.columns if c not in LABELS and c not in ROW_TRAILER]]
    unknown = pd.Series("", index=raw.index, dtype=object)
    values: list[dict[str, Any]] = []
    codes = {"YES": 1.0, "NO": 0.0}
    for column, label in GOOGLE_COLUMNS.items():
        text = raw[column].str.strip()
        out[label] = text.map(codes).astype(LABEL_DTYPE).to_numpy()
        bad = ~text.isin(list(codes))
        unknown[bad] = unknown[bad] + f"{column}=" + text[bad].map(repr) + " "
        meaning = {"YES": f"{label} 1", "NO": f"{label} 0"}
        values += value_counts(
            column, text, lambda v, m=meaning: m.get(v, "not YES or NO: row not used"), path
        )
    if "Set Id" in raw.columns:
        sets = raw["Set Id"].str.strip()
        out["list"] = sets.map(GOOGLE_SETS).where(lambda s: s.notna(), None).astype(object).to_numpy()
        names = {k: f"{v} list" for k, v in GOOGLE_SETS.items()}
        values += value_counts("Set Id", sets, lambda v: names.get(v, "not a set: image unlisted"), path)
    out["row"] = rows["row"].to_numpy()
    out["unknown_labels"] = unknown.str.strip().to_numpy()
    out["finding_labels"] = out["unknown_labels"]
    return out.loc[:, row_columns(labels)], values


def read_list(path: Path) -> list[str]:
    """Image names of a split list file, one per line (UTF-8, with or without a BOM).

    A folder in the list's place, or bytes that are not UTF-8, are a :class:`DatasetError`:
    NIH image names are ASCII, so a file that does not decode is damaged or not a list, and
    guessing another encoding would only turn that into names that match nothing.
    """
    if not path.is_file():
        what = "a folder" if path.is_dir() else "not a regular file"
        raise DatasetError(f"{path} is {what}; expected a text file of image names, one per line")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(
            f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); image names "
            f"are ASCII, so the file is damaged or not a split list; save it as UTF-8"
        ) from None
    return text.split()


class Nih14(DatasetSource):
    """NIH ChestX-ray14 in the Kaggle layout (or NIH's own box layout with one images/ folder).

    ``labels="google2019"`` reads Google's expert labels (:data:`GOOGLE_FILES`, beside the
    images) instead of NIH's: only the 4,376 images Google relabelled, with Fracture,
    Pneumothorax, Lung Opacity ("Airspace opacity") and Mass ("Nodule or mass"), YES = 1 and NO = 0,
    and Google's sets as the lists (test -> test, val -> val). Compared with torchxrayvision's
    ``NIH_Google_Dataset`` on the file it ships: the same images, patients and counts per finding.
    """

    name: ClassVar[str] = "nih14"
    labels: ClassVar[tuple[str, ...]] = LABELS
    title: ClassVar[str] = "NIH ChestX-ray14"
    hub_id: ClassVar[str | None] = "nih-chest-xrays"
    options_defaults: ClassVar[dict[str, Any]] = {"labels": "nih"}
    option_choices: ClassVar[dict[str, tuple[Any, ...]]] = {"labels": ("nih", "google2019")}

    @property
    def label_names(self) -> tuple[str, ...]:
        if self.options.get("labels") == "google2019":
            return tuple(GOOGLE_COLUMNS.values())
        return tuple(self.labels)

    @classmethod
    def detect(cls, root: Path) -> bool:
        return _has_metadata(root)

    def inventory(self) -> Inventory:
        if self.options.get("labels") == "google2019":
            return self._google()
        root = self._folder()
        metadata_file = find_metadata_file(root)
        problems: dict[str, list[Any]] = {}
        rows = read_metadata(metadata_file, problems)
        files = scan_image_files(root)
        lists = {key: root / name for key, name in LIST_FILES.items() if os.path.lexists(root / name)}
        if lists:
            listed = {key: read_list(path) for key, path in lists.items()}
            train_val = pd.Index(listed.get(TRAIN_VAL, []))
            test = pd.Index(listed.get(TEST, []))
            in_test = rows["image"].isin(test).to_numpy()
            in_train_val = rows["image"].isin(train_val).to_numpy()
            # An image in both lists is kept out of training: leakage into the test set is worse.
            assigned = np.where(in_test, TEST, np.where(in_train_val, TRAIN_VAL, None))
            rows["list"] = pd.Series(assigned, index=rows.index, dtype=object)
            both = train_val.intersection(test)
            if len(both):
                problems["in_both_lists"] = sorted(both)
            known = pd.Index(rows["image"])
            without_row = sorted(train_val.append(test).difference(known))
            if without_row:
                problems["list_no_row"] = without_row
        return Inventory(
            rows=rows,
            files=files,
            metadata_file=str(metadata_file),
            has_lists=bool(lists),
            problems=problems,
            label_values=finding_values(rows["finding_labels"], metadata_file),
        )

    def _google(self) -> Inventory:
        root = self._folder()
        path = next((root / n for n in GOOGLE_FILES if (root / n).is_file()), None)
        if path is None:
            raise DatasetError(
                f"No Google label file in {root} (option labels=google2019): expected one of "
                f"{', '.join(GOOGLE_FILES)}"
            )
        problems: dict[str, list[Any]] = {}
        rows, values = read_google_labels(path, problems)
        return Inventory(
            rows=rows,
            files=scan_image_files(root),
            metadata_file=str(path),
            has_lists=True,
            problems=problems,
            label_values=values,
        )

    def bboxes(self) -> pd.DataFrame | None:
        """NIH's bounding boxes (image, label, x, y, w, h) or ``None`` when the file is absent."""
        root = self._folder()
        for name in BBOX_FILES:
            path = root / name
            if path.is_file():
                # Header "Image Index,Finding Label,Bbox [x,y,w,h],,," splits the box over 4 columns.
                raw = pd.read_csv(path, header=0)
                boxes = raw.iloc[:, :6].copy()
                boxes.columns = ["image", "label", "x", "y", "w", "h"]
                return boxes
        return None


class SyntheticSource(Nih14):
    """Chest-radiograph phantoms with deliberately drawn findings, in the Kaggle layout.

    Without a folder the phantoms are written once into the cxrzoo cache
    (``$CXRZOO_HOME/data/synthetic-n…``) and reused; with one, that folder is read as it is.
    A folder of phantoms is detected as ``nih14`` (it is that layout), never as ``synthetic``.
    """

    name: ClassVar[str] = "synthetic"
    title: ClassVar[str] = "cxrzoo synthetic chest X-ray phantoms"
    hub_id: ClassVar[str | None] = None

    @classmethod
    def detect(cls, root: Path) -> bool:
        return False

    options_defaults: ClassVar[dict[str, Any]] = {"n": 2000, "size": 128, "seed": 0, "prevalence": None}

    @property
    def root(self) -> Path:
        if self._root is not None:
            return self._root
        from cxrzoo.store import home

        opts = self.options
        key = prevalence_key(opts["prevalence"])
        return home() / "data" / f"synthetic-n{opts['n']}-s{opts['size']}-seed{opts['seed']}-{key}"

    def materialise(self, *, progress: bool = False) -> Path:
        """Write the phantoms if they are not there yet; returns the folder."""
        root = self.root
        if self._root is not None or _has_metadata(root):
            return root
        from cxrzoo.data.synthetic import write_kaggle_layout
        from cxrzoo.store import atomic_folder

        opts = self.options
        with atomic_folder(root) as tmp:
            write_kaggle_layout(
                tmp,
                opts["n"],
                size=opts["size"],
                seed=opts["seed"],
                prevalence=opts["prevalence"],
                progress=progress,
            )
        return root

    def inventory(self) -> Inventory:
        self.materialise()
        return super().inventory()


def _has_metadata(root: Path) -> bool:
    return any((root / name).is_file() for name in METADATA_FILES)


def prevalence_key(prevalence: Any) -> str:
    """A short, stable folder-name part for a prevalence option.

    ``None`` is ``"default"``; a named preset keeps its name (``"nih"``, ``"uniform-0.1"``); a
    mapping is hashed after resolution, so equal prevalences share one folder.
    """
    from cxrzoo.data.synthetic import resolve_prevalence

    resolved = resolve_prevalence(prevalence)  # validates, whatever the form
    if prevalence is None or isinstance(prevalence, str):
        name = (prevalence or "default").strip().lower()
        return re.sub(r"[^a-z0-9.]+", "-", name)
    blob = json.dumps({str(k): float(v) for k, v in resolved.items()}, sort_keys=True)
    return "p" + hashlib.sha256(blob.encode()).hexdigest()[:10]


def write_empty_layout(
    metadata_file: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    n_test: int | None = None,
    seed: int = 0,
    folders: int = 12,
) -> Path:
    """A Kaggle-layout tree of zero-byte images named after ``metadata_file``'s rows.

    It behaves like the real download for everything but decoding, so catalog, sampling and
    split can be tested at full scale without the pixels (the files of a folder are hard links
    to one empty file where the file system allows). Images are spread over
    ``images_001/images`` … like Kaggle's; with ``n_test``, ``train_val_list.txt`` and
    ``test_list.txt`` are written as a patient-wise split with exactly ``n_test`` test images
    where whole patients allow (NIH's own lists are not derived from the metadata).
    """
    from cxrzoo.data.splits import split_by_patient

    metadata_file, out = Path(metadata_file), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(metadata_file, out / metadata_file.name)
    rows = read_metadata(metadata_file).drop_duplicates("image")
    names = sorted(rows["image"])
    for i, chunk in enumerate(np.array_split(np.asarray(names, dtype=object), folders), start=1):
        folder = out / f"images_{i:03d}" / "images"
        folder.mkdir(parents=True, exist_ok=True)
        _write_empty_files(str(folder), chunk)
    if n_test is not None:
        train_val, test = split_by_patient(rows, n_test, seed)
        (out / LIST_FILES[TRAIN_VAL]).write_text("".join(f"{x}\n" for x in sorted(train_val["image"])))
        (out / LIST_FILES[TEST]).write_text("".join(f"{x}\n" for x in sorted(test["image"])))
    return out


def _write_empty_files(folder: str, names: Any) -> None:
    # Hard links to the folder's first empty file are several times cheaper than creating
    # files one by one, and read the same (size 0) to everything but a writer.
    first: str | None = None
    for name in names:
        path = os.path.join(folder, name)
        if first is not None:
            try:
                os.link(first, path)
                continue
            except OSError:  # no hard links here, or the file exists already
                pass
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
        first = first or path
