"""What every reader of a published layout needs, a hospital's own reader included.

Building inventory rows (:func:`build_rows`), CheXpert-style label codes (:func:`code_matrix`,
:func:`code_values` for the catalog's table of label values), the vocabulary names of a
publisher's columns, DICOM headers read without pixels (:func:`dicom_headers`), and cheap checks
of a folder's layout (:func:`header_has`, :func:`locate`). The readers of
``cxrzoo-public-datasets`` are built from these; a new reader subclasses
:class:`cxrzoo.data.base.DatasetSource` and uses them the same way.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrzoo.data.base import LABEL_DTYPE, UNCERTAIN_CHOICES, row_columns, uncertain_value
from cxrzoo.labels import canonical

#: The ``uncertain`` option of readers whose publisher marks uncertain labels -1.
UNCERTAIN_OPTION: dict[str, Any] = {"uncertain": "ignore"}
UNCERTAIN_CHOICE: dict[str, tuple[Any, ...]] = {"uncertain": UNCERTAIN_CHOICES}
#: Text codes of CheXpert-style label cells (CheXpert, MIMIC-CXR): value for "1.0", "0.0" and blank.
_CODES = {"1.0": 1.0, "1": 1.0, "0.0": 0.0, "0": 0.0, "": np.nan}
_UNCERTAIN_CODES = {"-1.0", "-1"}


def canonical_labels(published: Sequence[str]) -> tuple[str, ...]:
    """The vocabulary names of a publisher's label columns, in its order (unknown ones as published)."""
    return tuple(canonical(name) or name for name in published)


def first_line(path: Path, limit: int = 4096) -> str:
    """The first line of a text file (a BOM dropped), or "" when it cannot be read."""
    try:
        with open(path, "rb") as f:
            head = f.read(limit)
    except OSError:
        return ""
    return head.decode("utf-8-sig", errors="replace").splitlines()[0] if head else ""


def header_has(path: Path, *columns: str, fold_case: bool = False) -> bool:
    """Whether ``path`` is a file whose CSV header names every one of ``columns``
    (in any case with ``fold_case``)."""
    if not path.is_file():
        return False
    names = {c.strip().strip('"') for c in first_line(path).split(",")}
    if fold_case:
        names = {c.lower() for c in names}
        columns = tuple(c.lower() for c in columns)
    return all(c in names for c in columns)


def code_matrix(frame: pd.DataFrame, columns: Sequence[str], uncertain: str) -> tuple[np.ndarray, pd.Series]:
    """CheXpert-style cells -> float ``[N, len(columns)]`` and, per row, the cells not understood.

    1.0 / 0.0 as they are, blank = NaN (not mentioned), -1.0 (uncertain) as ``uncertain`` says
    (``ignore`` = NaN, ``ones`` = 1, ``zeros`` = 0). Any other text is reported in the second
    result as ``"Column='text'"`` ("|"-joined; "" when the row is clean).
    """
    n = len(frame)
    out = np.full((n, len(columns)), np.nan, dtype=LABEL_DTYPE)
    bad = np.full(n, "", dtype=object)
    value_uncertain = uncertain_value(uncertain)
    for j, column in enumerate(columns):
        text = frame[column].astype(str).str.strip()
        mapped = text.map(_CODES)
        is_uncertain = text.isin(_UNCERTAIN_CODES).to_numpy()
        out[:, j] = mapped.to_numpy(dtype=np.float64)
        out[is_uncertain, j] = value_uncertain
        unknown = (mapped.isna() & (text != "")).to_numpy() & ~is_uncertain
        for i in np.flatnonzero(unknown):
            cell = f"{column}={text.iat[i]!r}"
            bad[i] = f"{bad[i]}|{cell}" if bad[i] else cell
    return out, pd.Series(bad, dtype=object)


def code_values(
    frame: pd.DataFrame, columns: Sequence[str], uncertain: str, file: Path | str
) -> list[dict[str, Any]]:
    """The catalog's table of label values for CheXpert-style cells: each column's values and
    what :func:`code_matrix` made of them."""
    from cxrzoo.data.csvfiles import value_counts

    meaning = {"1.0": "1 (positive)", "1": "1 (positive)", "0.0": "0 (negative)", "0": "0 (negative)",
               "": "unknown (not mentioned)"}  # fmt: skip
    became = {"ignore": "unknown", "ones": "1", "zeros": "0"}[uncertain]
    for code in _UNCERTAIN_CODES:
        meaning[code] = f"{became} (uncertain, uncertain={uncertain})"
    out: list[dict[str, Any]] = []
    for column in columns:
        out.extend(
            value_counts(
                column,
                frame[column],
                lambda v: meaning.get(v, "not understood: row not used"),
                file,
            )
        )
    return out


def build_rows(
    labels: Sequence[str],
    matrix: np.ndarray,
    *,
    image: Sequence[str],
    patient: Sequence[str],
    row: Sequence[int] | np.ndarray,
    age: Any = None,
    sex: Any = None,
    view: Any = None,
    lists: Any = None,
    follow_up: Any = None,
    unknown: Any = None,
    finding: Any = None,
    file: Any = None,
) -> pd.DataFrame:
    """Inventory rows (:func:`cxrzoo.data.base.row_columns`) from columns; missing ones are unknown."""
    n = len(image)

    def column(value: Any, default: Any, dtype: Any = object) -> pd.Series:
        if value is None:
            return pd.Series([default] * n, dtype=dtype)
        return pd.Series(
            list(value) if not isinstance(value, (str, int, float)) else [value] * n, dtype=dtype
        )

    rows = pd.DataFrame(
        {
            "image": column(image, ""),
            "patient": column(patient, "").astype(str),
            "age": column(age, np.nan, "float64"),
            "sex": column(sex, ""),
            "view": column(view, ""),
            "list": column(lists, None),
            "follow_up": column(follow_up, pd.NA, "Int64"),
        }
    )
    matrix = np.asarray(matrix, dtype=LABEL_DTYPE).reshape(n, len(labels))
    for j, label in enumerate(labels):
        rows[label] = matrix[:, j]
    rows["row"] = np.asarray(row, dtype=np.int64)
    rows["unknown_labels"] = column(unknown, "")
    rows["finding_labels"] = column(finding, "")
    columns = row_columns(labels)
    if file is not None:
        rows["file"] = column(file, "")
        columns.append("file")
    return rows.loc[:, columns]


def normalise_sex(values: pd.Series) -> pd.Series:
    """ "M"/"F" for Male/Female/M/F (any case), "" for anything else (Unknown, O, blank)."""
    text = values.astype(str).str.strip().str.upper()
    return text.map(lambda s: "M" if s in ("M", "MALE") else ("F" if s in ("F", "FEMALE") else "")).astype(
        object
    )


def dicom_headers(
    files: pd.DataFrame, tags: Sequence[str] = ("PatientID", "PatientAge", "PatientSex", "ViewPosition")
) -> pd.DataFrame:
    """The DICOM header ``tags`` of each file in ``files`` (FILE_COLUMNS), read without pixels.

    Read in parallel threads; a file whose header does not parse gets empty values (the catalog
    reports it when ``--verify`` decodes it). Indexed by ``files['image']``.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    from cxrzoo.data.catalog import threaded_map

    def read(path: str) -> list[str]:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(tags))
        except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, AttributeError):
            return [""] * len(tags)
        out = []
        for tag in tags:
            # The raw bytes: public sets write values DICOM would not validate (age "51"), which
            # are parsed here without a warning per file.
            element = ds.get_item(tag) if tag in ds else None
            value = getattr(element, "value", None) if element is not None else None
            if isinstance(value, bytes):
                value = value.decode("latin-1", errors="replace")
            out.append(str(value or "").strip().strip("\x00").strip())
        return out

    paths = files["path"].tolist()
    values: list[list[str]] = [[""] * len(tags)] * len(paths)
    nonempty = [i for i, size in enumerate(files["size"].tolist()) if size > 0]
    workers = min(8, os.cpu_count() or 1)
    for i, result in threaded_map(read, [paths[i] for i in nonempty], workers=workers):
        values[nonempty[i]] = result
    return pd.DataFrame(
        values, columns=list(tags), index=pd.Index(files["image"].tolist(), name="image"), dtype=object
    )


def locate(root: Path, marker: str, *children: str) -> Path:
    """``root`` or the child folder of ``root`` that holds ``marker`` (the publisher's top folder)."""
    if (root / marker).exists():
        return root
    for child in children:
        if (root / child / marker).exists():
            return root / child
    if root.is_dir():
        for child in sorted(root.iterdir()):
            if child.is_dir() and (child / marker).exists():
                return child
    return root


__all__ = [
    "UNCERTAIN_CHOICE",
    "UNCERTAIN_OPTION",
    "build_rows",
    "canonical_labels",
    "code_matrix",
    "code_values",
    "dicom_headers",
    "first_line",
    "header_has",
    "locate",
    "normalise_sex",
]
