"""Prediction tables written as they are predicted: CSV, JSON, JSON Lines or Parquet.

One row per image: ``path``, the probability of every finding (column = label name, empty for
an image that could not be read), ``positives`` (the findings called positive at the model's
calibrated thresholds: ``|``-joined in CSV, a list elsewhere) and ``error`` (empty when fine).

Rows are written batch by batch, so memory stays bounded whatever the number of images. A new
table is written to a temporary file beside ``--out`` and renamed over it when complete, so an
existing table is replaced atomically; when a run is interrupted, the rows written so far are
kept only where there was no table before (and ``--resume`` finishes them). With ``resume``,
images already in the table are skipped: CSV and JSON Lines get the new rows appended; JSON and
Parquet are rewritten (old rows, then new ones) through a temporary file and renamed.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cxrzoo.errors import DataError, UserError

FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".parquet": "parquet"}
#: Parquet rows are gathered into row groups of about this many rows.
PARQUET_ROW_GROUP = 1024


def output_format(path: str | os.PathLike[str]) -> str:
    """``csv``, ``json``, ``jsonl`` or ``parquet`` from the file's suffix; a UserError for any
    other suffix, or for Parquet without pyarrow."""
    suffix = Path(path).suffix.lower()
    fmt = FORMATS.get(suffix)
    if fmt is None:
        raise UserError(
            f"--out {path}: unknown table format {suffix or '(no suffix)'!r}; expected {', '.join(FORMATS)}"
        )
    if fmt == "parquet":
        try:
            import pyarrow
            import pyarrow.parquet  # noqa: F401
        except ImportError:
            raise UserError(
                f"--out {path}: writing Parquet needs pyarrow, which is not installed "
                f"(pip install pyarrow), or choose .csv, .json or .jsonl"
            ) from None
    return fmt


def path_key(path: str | os.PathLike[str]) -> str:
    """How rows are matched to images on ``--resume``: the absolute, normalised path."""
    return os.path.normcase(os.path.abspath(os.fspath(path)))


def columns_for(labels: Sequence[str]) -> list[str]:
    return ["path", *labels, "positives", "error"]


def make_row(
    path: str,
    labels: Sequence[str],
    probabilities: np.ndarray | None,
    positives: Sequence[str],
    error: str | None,
) -> dict[str, Any]:
    """One table row (probabilities ``None`` for an image with an error)."""
    row: dict[str, Any] = {"path": path}
    for i, label in enumerate(labels):
        row[label] = None if probabilities is None else float(probabilities[i])
    row["positives"] = list(positives)
    row["error"] = error or ""
    return row


class PredictionWriter:
    """Streams rows to ``path`` in the format of its suffix (see the module docstring).

    ``done`` holds the :func:`path_key` of every image already in the table when resuming.
    Call :meth:`write` per batch and :meth:`close` once, with ``complete=False`` when the run
    stopped early.
    """

    def __init__(self, path: str | os.PathLike[str], labels: Sequence[str], *, resume: bool = False) -> None:
        self.path = Path(path)
        self.format = output_format(self.path)
        self.labels = list(labels)
        self.columns = columns_for(self.labels)
        self.existed = self.path.exists()
        if self.existed and not self.path.is_file():
            raise UserError(f"--out {self.path}: exists and is not a file")
        self.resume = resume and self.existed
        self.done: set[str] = set()
        self.rows_written = 0
        self._closed = False
        self._first = True
        self._buffer: list[dict[str, Any]] = []
        self._pq_writer: Any = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Appending formats resume in place; the others (and every new table) go through a temporary.
        self._in_place = self.resume and self.format in ("csv", "jsonl")
        self._target = (
            self.path if self._in_place else self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        )
        if self.resume:
            getattr(self, f"_resume_{self.format}")()
        else:
            self._open_new()

    # -- opening ------------------------------------------------------------------------
    def _open_new(self) -> None:
        if self.format == "parquet":
            import pyarrow.parquet as pq

            self._pq_writer = pq.ParquetWriter(str(self._target), self._schema())
            return
        self._fh = open(self._target, "w", newline="", encoding="utf-8")  # noqa: SIM115
        if self.format == "csv":
            csv.writer(self._fh).writerow(self.columns)
        elif self.format == "json":
            self._fh.write("[")

    def _mismatch(self, found: Sequence[str]) -> UserError:
        return UserError(
            f"--out {self.path} was written with other columns ({', '.join(found)}), not this "
            f"model's ({', '.join(self.columns)}): give another --out, or drop --resume to replace it"
        )

    def _drop_partial_line(self) -> None:
        """Cut a last line that an interrupted run left unfinished (its image is done again)."""
        with open(self.path, "rb+") as fh:
            data = fh.read()
            if data and not data.endswith(b"\n"):
                fh.truncate(data.rfind(b"\n") + 1)

    def _resume_csv(self) -> None:
        import pandas as pd

        self._drop_partial_line()
        with open(self.path, newline="", encoding="utf-8") as fh:
            header = next(csv.reader(fh), None)
        if header is None:  # an empty file: start it again
            self._in_place = False
            self._target = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            self.resume = False
            self._open_new()
            return
        if header != self.columns:
            raise self._mismatch(header)
        try:
            paths = pd.read_csv(self.path, usecols=["path"], dtype=str, keep_default_na=False)["path"]
        except (ValueError, pd.errors.ParserError) as exc:
            raise DataError(f"--out {self.path}: not a readable CSV table ({exc})") from None
        self.done = {path_key(p) for p in paths}
        self._fh = open(self.path, "a", newline="", encoding="utf-8")  # noqa: SIM115
        self._first = False

    def _resume_jsonl(self) -> None:
        self._drop_partial_line()
        with open(self.path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    raise DataError(f"--out {self.path}: line {number} is not JSON") from None
                if not isinstance(row, dict) or "path" not in row:
                    raise DataError(f"--out {self.path}: line {number} is not a prediction row")
                if list(row) != self.columns:
                    raise self._mismatch(list(row))
                self.done.add(path_key(row["path"]))
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115

    def _resume_json(self) -> None:
        try:
            old = json.loads(self.path.read_text(encoding="utf-8") or "[]")
        except json.JSONDecodeError as exc:
            raise DataError(f"--out {self.path}: not a JSON table ({exc})") from None
        if not isinstance(old, list) or not all(isinstance(r, dict) and "path" in r for r in old):
            raise DataError(f"--out {self.path}: expected a JSON list of prediction rows")
        for row in old:
            if list(row) != self.columns:
                raise self._mismatch(list(row))
        self._open_new()
        self._write_rows(old, count=False)
        self.done = {path_key(r["path"]) for r in old}

    def _resume_parquet(self) -> None:
        import pyarrow.parquet as pq

        try:
            old = pq.ParquetFile(self.path)
        except Exception as exc:  # pyarrow raises several types for a damaged file
            raise DataError(f"--out {self.path}: not a readable Parquet file ({exc})") from None
        if old.schema_arrow.names != self.columns:
            raise self._mismatch(old.schema_arrow.names)
        self._open_new()
        for batch in old.iter_batches(batch_size=PARQUET_ROW_GROUP):
            self.done.update(path_key(p) for p in batch.column("path").to_pylist())
            self._pq_writer.write_batch(batch.cast(self._schema()))

    def _schema(self) -> Any:
        import pyarrow as pa

        fields = [pa.field("path", pa.string())]
        fields += [pa.field(label, pa.float64()) for label in self.labels]
        fields += [pa.field("positives", pa.list_(pa.string())), pa.field("error", pa.string())]
        return pa.schema(fields)

    # -- writing ------------------------------------------------------------------------
    def write(self, rows: Sequence[dict[str, Any]]) -> None:
        """Append ``rows`` (from :func:`make_row`) and flush them to disk."""
        if rows:
            self._write_rows(rows)

    def _write_rows(self, rows: Sequence[dict[str, Any]], *, count: bool = True) -> None:
        if count:
            self.rows_written += len(rows)
        if self.format == "parquet":
            self._buffer.extend(rows)
            if len(self._buffer) >= PARQUET_ROW_GROUP:
                self._flush_parquet()
            return
        if self.format == "csv":
            import pandas as pd

            frame = pd.DataFrame(
                [{**r, "positives": "|".join(r["positives"])} for r in rows], columns=self.columns
            )
            text = io.StringIO()
            frame.to_csv(text, header=False, index=False, lineterminator="\n")
            self._fh.write(text.getvalue())
        elif self.format == "jsonl":
            self._fh.write("".join(json.dumps(_finite(r)) + "\n" for r in rows))
        else:  # json: one list, rows separated by commas
            for r in rows:
                self._fh.write(("\n" if self._first else ",\n") + json.dumps(_finite(r)))
                self._first = False
        self._fh.flush()

    def _flush_parquet(self) -> None:
        import pyarrow as pa

        if self._buffer:
            self._pq_writer.write_table(pa.Table.from_pylist(self._buffer, schema=self._schema()))
            self._buffer = []

    def close(self, *, complete: bool = True) -> bool:
        """Finish the table; returns whether ``path`` now holds the rows written.

        A complete table replaces ``path``. An incomplete one (the run stopped early) replaces
        it only when it holds everything ``path`` held (there was no table, or resumed rows
        were copied over); otherwise the old table is kept and the new rows are dropped.
        """
        if self._closed:
            return True
        self._closed = True
        if self.format == "parquet":
            self._flush_parquet()
            self._pq_writer.close()
        else:
            if self.format == "json":
                self._fh.write("\n]\n" if not self._first else "]\n")
            self._fh.close()
        if self._in_place:
            return True
        keep = complete or not self.existed or self.resume
        if keep:
            os.replace(self._target, self.path)
        else:
            self._target.unlink(missing_ok=True)
        return keep


def _finite(row: dict[str, Any]) -> dict[str, Any]:
    # JSON has no NaN: a non-finite probability (a broken model) is written as null.
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}


__all__ = ["FORMATS", "PredictionWriter", "columns_for", "make_row", "output_format", "path_key"]
