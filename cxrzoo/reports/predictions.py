"""Prediction tables written as they are predicted: CSV, JSON, JSON Lines or Parquet.

One row per image: ``path``, the probability of every finding (column = label name, empty for
an image that could not be read), then, when asked for, ``uncertainty_<finding>`` (the spread
of each probability) and ``ood_score`` / ``in_distribution`` (the model's out-of-distribution
gate), then ``positives`` (the findings called positive at the model's calibrated thresholds:
``|``-joined in CSV, a list elsewhere) and ``error`` (empty when fine).

Rows are written batch by batch, so memory stays bounded whatever the number of images. A new
table is written to a temporary file beside ``--out`` and renamed over it when complete, so an
existing table is replaced atomically; when a run is interrupted, the rows written so far are
kept only where there was no table before (and ``--resume`` finishes them). With ``resume``,
images already in the table are skipped: CSV and JSON Lines get the new rows appended; JSON and
Parquet are rewritten (old rows, then new ones) through a temporary file and renamed.

An existing file that is not a cxrzoo prediction table (:func:`is_prediction_table`) is never
replaced without ``overwrite`` and never resumed into: the refusal comes before the file is
opened for writing (see :mod:`cxrzoo.outputs`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cxrzoo.errors import DataError, UserError
from cxrzoo.outputs import check_file

FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".parquet": "parquet"}
#: Parquet rows are gathered into row groups of about this many rows.
PARQUET_ROW_GROUP = 1024


def output_format(path: str | os.PathLike[str]) -> str:
    """``csv``, ``json``, ``jsonl`` or ``parquet`` from the file's suffix; a UserError for any
    other suffix, a :class:`~cxrzoo.optional.MissingDependencyError` for Parquet without pyarrow."""
    suffix = Path(path).suffix.lower()
    fmt = FORMATS.get(suffix)
    if fmt is None:
        raise UserError(
            f"--out {path}: unknown table format {suffix or '(no suffix)'!r}; expected {', '.join(FORMATS)}"
        )
    if fmt == "parquet":
        from cxrzoo.optional import require

        require("pyarrow.parquet", purpose=f"--out {path} (Parquet)")
    return fmt


#: The leading and trailing columns of every prediction table, whatever the model's labels.
LEADING, TRAILING = ["path"], ["positives", "error"]
#: How much of a file is read to recognise a prediction table.
_SNIFF_BYTES = 1 << 20


def _is_table_columns(columns: Sequence[object]) -> bool:
    names = [str(c) for c in columns]
    return len(names) >= 3 and names[:1] == LEADING and names[-2:] == TRAILING


def is_prediction_table(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` holds a cxrzoo prediction table in the format of its suffix.

    Reads only the file's start (its header, first row or schema), never more than 1 MiB, and
    never writes.
    """
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if path.stat().st_size == 0:
        return fmt is not None  # an empty file of a table's suffix: nothing in it to lose
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return _is_table_columns(pq.read_schema(path).names)
    with open(path, "rb") as fh:
        head = fh.read(_SNIFF_BYTES)
    if fmt == "csv":
        first = head.split(b"\n", 1)[0].decode("utf-8")
        return _is_table_columns(next(csv.reader([first]), []))
    text = head.decode("utf-8", errors="ignore" if len(head) == _SNIFF_BYTES else "strict").lstrip()
    if fmt == "jsonl":
        if not text:
            return False
        row = json.loads(text.split("\n", 1)[0])
        return isinstance(row, dict) and _is_table_columns(list(row))
    if fmt == "json":
        if not text.startswith("["):
            return False
        rest = text[1:].lstrip()
        if rest.startswith("]"):
            return rest[1:].strip() == ""
        row, _ = json.JSONDecoder().raw_decode(rest)
        return isinstance(row, dict) and _is_table_columns(list(row))
    return False


def check_output(path: str | os.PathLike[str], *, resume: bool = False, overwrite: bool = False) -> Path:
    """Check ``--out`` before any work: a known format, and a file that may be replaced (or,
    with ``resume``, continued): absent, an earlier prediction table, or ``overwrite``."""
    output_format(path)
    if resume and Path(path).is_file() and not _safe_sniff(path):
        raise DataError(
            f"--out {path}: exists and is not a cxrzoo prediction table, so --resume cannot continue it "
            f"(it was left as it is); give another --out"
        )
    return check_file(
        path, option="--out", kind="cxrzoo prediction table", is_own=is_prediction_table, overwrite=overwrite
    )


def _safe_sniff(path: str | os.PathLike[str]) -> bool:
    try:
        return is_prediction_table(path)
    except Exception:  # unreadable, not UTF-8, not JSON, not Parquet: not one of ours
        return False


def path_key(path: str | os.PathLike[str]) -> str:
    """How rows are matched to images on ``--resume``: the absolute, normalised path."""
    return os.path.normcase(os.path.abspath(os.fspath(path)))


#: Columns of the out-of-distribution gate, when the model has one and it is not turned off.
OOD_COLUMNS = ("ood_score", "in_distribution")
UNCERTAINTY_PREFIX = "uncertainty_"


def detail_columns(labels: Sequence[str], *, ood: bool = False, uncertainty: bool = False) -> list[str]:
    """The columns between the probabilities and ``positives``: ``uncertainty_<finding>`` per
    finding with ``uncertainty``, then ``ood_score`` and ``in_distribution`` with ``ood``."""
    return [
        *(f"{UNCERTAINTY_PREFIX}{label}" for label in labels if uncertainty),
        *(OOD_COLUMNS if ood else ()),
    ]


def columns_for(labels: Sequence[str], extra: Sequence[str] = ()) -> list[str]:
    return ["path", *labels, *extra, "positives", "error"]


def make_row(
    path: str,
    labels: Sequence[str],
    probabilities: np.ndarray | None,
    positives: Sequence[str],
    error: str | None,
    *,
    details: dict[str, Any] | None = None,
    extra: Sequence[str] = (),
) -> dict[str, Any]:
    """One table row (probabilities ``None`` for an image with an error); ``extra`` names the
    :func:`detail_columns` filled from ``details`` (empty where an image has none)."""
    row: dict[str, Any] = {"path": path}
    for i, label in enumerate(labels):
        row[label] = None if probabilities is None else float(probabilities[i])
    details = details or {}
    spread = details.get("uncertainty")
    for column in extra:
        if column.startswith(UNCERTAINTY_PREFIX):
            k = list(labels).index(column[len(UNCERTAINTY_PREFIX) :])
            row[column] = None if spread is None else float(spread[k])
        elif column == "in_distribution":
            value = details.get(column)
            row[column] = None if value is None else bool(value)
        else:
            value = details.get(column)
            row[column] = None if value is None else float(value)
    row["positives"] = list(positives)
    row["error"] = error or ""
    return row


def gate_threshold(model: Any, ood_mode: str, name: str) -> float | None:
    """The threshold of ``model``'s out-of-distribution gate as ``--ood`` uses it: None with
    ``off`` or without a gate (an exported graph's gate counts); ``reject`` needs one."""
    gate = getattr(model, "ood_detector", None)
    threshold = gate.threshold if gate is not None else getattr(model, "ood_threshold", None)
    if ood_mode == "off":
        return None
    if ood_mode == "reject" and threshold is None:
        raise UserError(
            f"--ood reject: {name} has no out-of-distribution gate; fit one with "
            f"'cxrzoo calibrate {name} --data DIR --ood' (and export it again for onnxruntime)"
        )
    return threshold


def gated(predictions: Iterable[Any], ood_mode: str, threshold: float | None) -> Iterator[Any]:
    """``predictions`` with, under ``--ood reject``, the images outside the gate turned into
    errors that name their score (no probabilities)."""
    for pred in predictions:
        info = pred.details or {}
        if ood_mode == "reject" and info.get("in_distribution") is False:
            reason = f"out of distribution (ood_score {info['ood_score']:.3f} > threshold {threshold:.3f})"
            yield pred._replace(probabilities=None, error=reason)
        else:
            yield pred


def table_row(pred: Any, model: Any, labels: Sequence[str], extra: Sequence[str]) -> dict[str, Any]:
    """The table row of one :class:`~cxrzoo.inference.Prediction` of ``model``."""
    positives = [] if pred.probabilities is None else model.positives(pred.probabilities[None])[0]
    return make_row(
        pred.path or "", labels, pred.probabilities, positives, pred.error, details=pred.details, extra=extra
    )


class PredictionWriter:
    """Streams rows to ``path`` in the format of its suffix (see the module docstring).

    ``done`` holds the :func:`path_key` of every image already in the table when resuming.
    Call :meth:`write` per batch and :meth:`close` once, with ``complete=False`` when the run
    stopped early.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        labels: Sequence[str],
        *,
        resume: bool = False,
        overwrite: bool = False,
        extra: Sequence[str] = (),
    ) -> None:
        self.path = check_output(path, resume=resume, overwrite=overwrite)
        self.format = output_format(self.path)
        self.labels = list(labels)
        self.extra = list(extra)
        self.columns = columns_for(self.labels, self.extra)
        # An empty file holds nothing to keep or continue: it is started again.
        self.existed = self.path.exists() and self.path.stat().st_size > 0
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

    def _mismatch(self, found: Sequence[str]) -> DataError:
        return DataError(
            f"--out {self.path} was written with other columns ({', '.join(found)}), not this "
            f"model's ({', '.join(self.columns)}): give another --out, or drop --resume to replace it"
        )

    def _complete_lines(self) -> str:
        """The table's text up to its last newline: a last line that an interrupted run left
        unfinished is left out (its image is predicted again). Only reads."""
        data = self.path.read_bytes()
        self._cut = len(data) if data.endswith(b"\n") else data.rfind(b"\n") + 1
        try:
            return data[: self._cut].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(
                f"--out {self.path}: not a UTF-8 prediction table ({exc.reason} at byte {exc.start})"
            ) from None

    def _drop_partial_line(self) -> None:
        """Cut the unfinished last line found by :meth:`_complete_lines`, once the whole table
        has been read and accepted."""
        if self._cut < self.path.stat().st_size:
            os.truncate(self.path, self._cut)

    def _resume_csv(self) -> None:
        import pandas as pd

        text = self._complete_lines()
        header = next(csv.reader(io.StringIO(text)), None)
        if header != self.columns:
            raise self._mismatch(header or [])
        try:
            paths = pd.read_csv(io.StringIO(text), usecols=["path"], dtype=str, keep_default_na=False)["path"]
        except (ValueError, pd.errors.ParserError) as exc:
            raise DataError(f"--out {self.path}: not a readable CSV table ({exc})") from None
        self.done = {path_key(p) for p in paths}
        self._drop_partial_line()
        self._fh = open(self.path, "a", newline="", encoding="utf-8")  # noqa: SIM115
        self._first = False

    def _resume_jsonl(self) -> None:
        for number, line in enumerate(self._complete_lines().splitlines(), 1):
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
        self._drop_partial_line()
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115

    def _resume_json(self) -> None:
        try:
            old = json.loads(self.path.read_text(encoding="utf-8") or "[]")
        except UnicodeDecodeError as exc:
            raise DataError(
                f"--out {self.path}: not a UTF-8 JSON table ({exc.reason} at byte {exc.start})"
            ) from None
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
        fields += [pa.field(c, pa.bool_() if c == "in_distribution" else pa.float64()) for c in self.extra]
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


__all__ = [
    "FORMATS",
    "PredictionWriter",
    "check_output",
    "columns_for",
    "detail_columns",
    "gate_threshold",
    "gated",
    "is_prediction_table",
    "make_row",
    "output_format",
    "path_key",
    "table_row",
]
