"""Reading publishers' CSV files robustly, and parsing the values every reader shares.

:func:`read_csv_frame` reads a CSV file (plain or gzip, UTF-8 with or without a byte-order
mark) as text columns with each row's line number. A row with more fields than the header names
is left out and reported under ``bad_row`` by line: a stray comma shifts every value after it,
so none of them can be trusted. Well-formed files take pandas' fast parser; only a file that
fails its checks is read again, record by record, to find the bad lines.

Quirks of published files read as their publishers meant them: a byte-order mark, CRLF line
ends, quoted fields holding commas or line breaks, spaces after the commas (SIIM's
``ImageId, EncodedPixels``), and a header that ends with a comma (NIH's 2017 file, the covid
collection): the unnamed last column is a column of the file (``Unnamed: <i>``), so a row that
fills it is read, not refused.

:func:`value_counts` counts the values a reader met in a label column and what each became: the
catalog's table of label values (``cxrzoo data catalog``).
"""

from __future__ import annotations

import csv
import gzip
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrzoo.data.base import DatasetError


def read_csv_frame(
    path: str | Path,
    problems: dict[str, list[Any]],
    *,
    sep: str = ",",
    required: tuple[str, ...] = (),
    fold_case: bool = False,
) -> tuple[pd.DataFrame, np.ndarray]:
    """``(frame, line numbers)``: every field as text ("" when empty), header names stripped.

    Columns the header leaves unnamed (the trailing comma of NIH's 2017 file) are called
    ``Unnamed: <i>``. With ``fold_case`` the header names are lower-cased (a publisher that
    wrote ``Patientid`` in one version and ``patientid`` in the next). ``required`` columns
    missing from the header are a :class:`DatasetError` naming the file, the missing and the
    found columns.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(
                path,
                sep=sep,
                dtype=str,
                keep_default_na=False,
                na_filter=False,
                skipinitialspace=True,
                index_col=False,
                skip_blank_lines=False,
                encoding="utf-8-sig",
            )
        frame.columns = [str(c).strip() for c in frame.columns]
        fast = True
    except (pd.errors.ParserError, pd.errors.ParserWarning):
        fast = False
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except pd.errors.EmptyDataError:
        raise DatasetError(f"{path}: empty file, expected a CSV header") from None
    except (OSError, EOFError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot be read as a CSV file ({exc})") from None
    if fast:
        lines = np.arange(2, len(frame) + 2, dtype=np.int64)
    else:
        frame, lines = _read_records(path, problems, sep)
    if fold_case:
        frame.columns = [c if c.startswith("Unnamed:") else c.lower() for c in frame.columns]
    blank = (frame == "").all(axis=1).to_numpy() if len(frame.columns) else np.ones(len(frame), bool)
    frame, lines = frame.loc[~blank].reset_index(drop=True), lines[~blank]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DatasetError(
            f"{path}: missing column(s) {', '.join(repr(c) for c in missing)}; found "
            f"{', '.join(repr(c) for c in frame.columns if not c.startswith('Unnamed:'))}"
        )
    return frame, lines


def _read_records(path: Path, problems: dict[str, list[Any]], sep: str) -> tuple[pd.DataFrame, np.ndarray]:
    opener = gzip.open if path.suffix == ".gz" else open
    bad: list[Any] = []
    try:
        with opener(path, "rt", encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, delimiter=sep, skipinitialspace=True)
            header = next(reader, None)
            if header is None:
                raise DatasetError(f"{path}: empty file, expected a CSV header")
            named = len(header)  # a trailing comma's unnamed column is one of the file's columns
            records: list[list[str]] = []
            lines: list[int] = []
            for record in reader:
                if len(record) > named and any(field.strip() for field in record[named:]):
                    bad.append(
                        {
                            "row": reader.line_num,
                            "file": str(path),
                            "reason": f"{len(record)} fields where the header has {named}; its columns "
                            f"would shift (first field {record[0]!r}); row left out",
                        }
                    )
                    continue
                records.append((record + [""] * named)[:named])
                lines.append(reader.line_num)
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except (OSError, EOFError, csv.Error) as exc:
        raise DatasetError(f"{path}: cannot be read as a CSV file ({exc})") from None
    if bad:
        problems.setdefault("bad_row", []).extend(bad)
    names = [h.strip() or f"Unnamed: {i}" for i, h in enumerate(header[:named])]
    frame = pd.DataFrame(records, columns=names, dtype=object) if records else pd.DataFrame(columns=names)
    return frame.astype(object), np.asarray(lines, dtype=np.int64)


_AGE_UNIT = {"": 1.0, "y": 1.0, "m": 1 / 12, "w": 7 / 365.25, "d": 1 / 365.25}
#: Oldest plausible age in years; anything above is a data error and is set unknown.
MAX_AGE = 120.0


def parse_ages(
    text: pd.Series,
    image: pd.Series,
    rows: np.ndarray,
    problems: dict[str, list[Any]],
    path: str | Path,
    column: str = "Patient Age",
) -> pd.Series:
    """Ages in years ("57", NIH's first-release "057Y", DICOM's "005M"); invalid ones are NaN.

    A value that is not a non-negative number with an optional DICOM unit, or that is above
    :data:`MAX_AGE`, is reported under ``bad_value`` and set unknown.
    """
    text = text.astype(str).str.strip().reset_index(drop=True)
    out = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, copy=True)  # the common case
    other = np.flatnonzero(np.isnan(out) & (text != "").to_numpy())
    if len(other):
        parts = text.iloc[other].str.extract(r"^(\d+(?:\.\d+)?)\s*([YMWDymwd])$")
        number = pd.to_numeric(parts[0], errors="coerce").to_numpy(dtype=np.float64)
        unit = parts[1].fillna("").str.lower().map(_AGE_UNIT).to_numpy(dtype=np.float64)
        out[other] = number * unit
    valid = np.isfinite(out) & (out >= 0) & (out <= MAX_AGE)
    for i in np.flatnonzero(~valid & (text != "").to_numpy()):
        problems.setdefault("bad_value", []).append(
            {"image": image.iat[i], "row": int(rows[i]), "file": str(path), "column": column,
             "value": text.iat[i], "reason": f"expected an age in years between 0 and {MAX_AGE:g}; set unknown"}
        )  # fmt: skip
    out = np.where(valid, out, np.nan)
    return pd.Series(out, dtype="float64")


def parse_counts(
    text: pd.Series,
    image: pd.Series,
    rows: np.ndarray,
    problems: dict[str, list[Any]],
    path: Path,
    column: str,
) -> pd.Series:
    """Non-negative whole numbers (follow-up #); anything else is reported and set unknown."""
    numbers = pd.to_numeric(text.replace("", np.nan), errors="coerce").to_numpy(dtype=np.float64)
    valid = np.isfinite(numbers) & (numbers >= 0) & (numbers == np.floor(numbers)) & (numbers < 2**31)
    for i in np.flatnonzero(~valid & (text != "").to_numpy()):
        problems.setdefault("bad_value", []).append(
            {"image": image.iat[i], "row": int(rows[i]), "file": str(path), "column": column,
             "value": text.iat[i], "reason": "expected a whole number >= 0; set unknown"}
        )  # fmt: skip
    return pd.Series(pd.array(np.where(valid, numbers, 0).astype(np.int64), dtype="Int64")).where(
        valid, pd.NA
    )


def value_counts(
    column: str,
    values: pd.Series | Sequence[str],
    mapped: Callable[[str], str] | Mapping[str, str],
    file: str | Path | None = None,
) -> list[dict[str, Any]]:
    """The distinct ``values`` of a label column, most frequent first, with what each became.

    One entry per value: ``{"column", "value", "count", "mapped"[, "file"]}``; ``mapped`` says
    what the reader made of it (a function of the value or a mapping; a value the mapping lacks
    is "not mapped").
    """
    text = pd.Series(values, dtype=object).astype(str).str.strip()
    counts = text.value_counts(sort=True)
    describe = mapped if callable(mapped) else (lambda v: mapped.get(v, "not mapped"))
    out = []
    for value, count in counts.items():
        entry = {"column": column, "value": str(value), "count": int(count), "mapped": describe(str(value))}
        if file is not None:
            entry["file"] = str(file)
        out.append(entry)
    return out
