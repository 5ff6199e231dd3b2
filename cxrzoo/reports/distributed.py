"""``cxrzoo predict`` across processes and machines, under ``torchrun``.

``torchrun --nproc-per-node N [--nnodes M …] -m cxrzoo predict NAME PATH... --out FILE`` starts
one process per device (``cuda:LOCAL_RANK`` with NCCL on GPUs, the CPU with gloo otherwise).
Every rank lists the same images (PATHs must name the same files on every machine: a shared
file system), keeps those not already done, and predicts every WORLD_SIZE-th of them. Each rank
appends its rows, batch by batch, to a part file of its own in a hidden folder beside FILE
(``.FILE.parts/rank-R.jsonl``, flushed per batch). When every rank is done, rank 0 reads the
parts and writes the one table, in input order, each image once, atomically (through
:class:`~cxrzoo.reports.predictions.PredictionWriter`, which keeps the rule that a file that is not
a cxrzoo table is replaced only with ``--overwrite``), then removes the parts.

If a rank dies, torchrun stops the others; FILE is untouched (it is only written complete) and the
parts keep every finished batch. ``--resume`` (with any number of ranks) counts the rows of the
parts, and of FILE itself, as done and predicts the rest; a part's unfinished last line is
dropped and its image predicted again. Without ``--resume`` a run starts afresh and removes old
parts.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from cxrzoo.errors import DataError, UserError


def world_size() -> int:
    """The number of processes torchrun started (1 outside torchrun)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def runs_across_ranks(out_path: str | None, resume: bool) -> bool:
    """Whether ``cxrzoo predict`` goes through :func:`predict_command`: under torchrun, or when
    ``--resume`` continues a torchrun job's parts in a single process."""
    return world_size() > 1 or bool(resume and out_path and parts_folder(out_path).is_dir())


def parts_folder(out_path: str | os.PathLike[str]) -> Path:
    """The hidden folder beside ``out_path`` that holds the ranks' part files."""
    out = Path(out_path)
    return out.with_name(f".{out.name}.parts")


def _complete_rows(path: Path) -> Iterable[dict[str, Any]]:
    """The rows of a part file, without an unfinished last line."""
    data = path.read_bytes()
    end = len(data) if data.endswith(b"\n") else data.rfind(b"\n") + 1
    for number, line in enumerate(data[:end].decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise DataError(f"{path}: line {number} is not JSON; remove the folder {path.parent}") from None
        yield row


class _Part:
    """A rank's part file, appended in place batch by batch (an unfinished last line that a
    killed run left is cut first), so every finished batch survives the process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if path.exists():
            data = path.read_bytes()
            end = len(data) if data.endswith(b"\n") else data.rfind(b"\n") + 1
            if end < len(data):
                os.truncate(path, end)
        self._fh = open(path, "a", encoding="utf-8")  # noqa: SIM115

    def write(self, rows: Sequence[dict[str, Any]]) -> None:
        from cxrzoo.reports.predictions import _finite

        if rows:
            self._fh.write("".join(json.dumps(_finite(r)) + "\n" for r in rows))
            self._fh.flush()

    def __enter__(self) -> _Part:
        return self

    def __exit__(self, *exc: object) -> None:
        self._fh.close()


def _table_paths(path: Path) -> list[str]:
    """The ``path`` column of an existing prediction table (for ``--resume``)."""
    from cxrzoo.reports.predictions import output_format

    if not path.is_file() or path.stat().st_size == 0:
        return []
    fmt = output_format(path)
    if fmt == "csv":
        import pandas as pd

        return list(pd.read_csv(path, usecols=["path"], dtype=str, keep_default_na=False)["path"])
    if fmt == "jsonl":
        return [r["path"] for r in _complete_rows(path)]
    if fmt == "json":
        return [r["path"] for r in json.loads(path.read_text(encoding="utf-8") or "[]")]
    import pyarrow.parquet as pq

    return [str(p) for p in pq.read_table(path, columns=["path"]).column("path").to_pylist()]


def _done_keys(out: Path, parts: Path, resume: bool) -> set[str]:
    from cxrzoo.reports.predictions import path_key

    if not resume:
        return set()
    done = {path_key(p) for p in _table_paths(out)}
    if parts.is_dir():
        for part in sorted(parts.glob("rank-*.jsonl")):
            done.update(path_key(r["path"]) for r in _complete_rows(part))
    return done


def predict_distributed(
    name: str,
    paths: Sequence[Path],
    out_path: str,
    *,
    resume: bool,
    overwrite: bool,
    batch_size: int,
    workers: int | None,
    device: str | None,
    ood_mode: str = "flag",
    uncertainty: bool = False,
) -> tuple[list[dict[str, str]], int, int]:
    """Predict ``paths`` with this process's share of the ranks; rank 0 writes ``out_path``.

    ``ood_mode`` (``flag``, ``reject``, ``off``) and ``uncertainty`` are ``cxrzoo predict``'s
    ``--ood`` and ``--uncertainty``: the same columns, the same rejections. Returns (on every
    rank) the images that could not be predicted, how many images this run predicted and how
    many were already done; only rank 0's list covers the whole table.
    """
    from cxrzoo import load
    from cxrzoo.inference import predict_stream
    from cxrzoo.reports.predictions import (
        check_output,
        detail_columns,
        gate_threshold,
        gated,
        path_key,
        table_row,
    )
    from cxrzoo.training.distributed import DistContext

    check_output(out_path, resume=resume, overwrite=overwrite)
    out = Path(out_path)
    parts = parts_folder(out)
    ctx, dev = DistContext.from_env(device)
    try:
        if ctx.is_main and not resume and parts.exists():
            shutil.rmtree(parts)
        ctx.barrier()
        done = _done_keys(out, parts, resume)
        # Every rank has read the same parts before any rank appends to its own.
        ctx.barrier()
        todo = [p for p in paths if path_key(p) not in done]
        mine = todo[ctx.rank :: ctx.world]
        model = load(name, device=str(dev))
        labels = list(model.labels)
        threshold = gate_threshold(model, ood_mode, name)
        extra = detail_columns(labels, ood=threshold is not None, uncertainty=uncertainty)
        parts.mkdir(parents=True, exist_ok=True)
        with _Part(parts / f"rank-{ctx.rank}.jsonl") as part:
            rows: list[dict[str, Any]] = []
            stream = predict_stream(
                model,
                mine,
                batch_size=batch_size,
                workers=workers,
                device=dev,
                ood=threshold is not None,
                uncertainty=uncertainty,
            )
            for pred in gated(stream, ood_mode, threshold):
                rows.append(table_row(pred, model, labels, extra))
                if len(rows) >= batch_size:
                    part.write(rows)
                    rows = []
            part.write(rows)
        ctx.barrier()
        failed: list[dict[str, str]] = []
        if ctx.is_main:
            failed = _assemble(out, parts, paths, labels, extra, resume=resume, overwrite=overwrite)
        return failed, len(todo), len(paths) - len(todo)
    finally:
        ctx.close()


def _assemble(
    out: Path,
    parts: Path,
    paths: Sequence[Path],
    labels: Sequence[str],
    extra: Sequence[str],
    *,
    resume: bool,
    overwrite: bool,
) -> list[dict[str, str]]:
    """Rank 0: the parts' rows into ``out`` in input order, each image once; then the parts go."""
    from cxrzoo.reports.predictions import PredictionWriter, path_key

    rows: dict[str, dict[str, Any]] = {}
    for part in sorted(parts.glob("rank-*.jsonl")):
        for row in _complete_rows(part):
            rows.setdefault(path_key(row["path"]), row)
    # Every image must have its row before the table is touched: an incomplete table is never
    # written (PredictionWriter would keep one where there was none).
    done = {path_key(p) for p in _table_paths(out)} if resume else set()
    ordered, missing, failed = [], [], []
    for p in paths:
        key = path_key(p)
        if key in done:
            continue
        row = rows.get(key)
        if row is None:
            missing.append(str(p))
            continue
        ordered.append(row)
        if row.get("error"):
            failed.append({"image": row["path"], "error": row["error"]})
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DataError(
            f"{len(missing)} image(s) have no row in the ranks' parts ({shown}); "
            f"run again with --resume to predict them"
        )
    writer = PredictionWriter(out, labels, resume=resume, overwrite=overwrite, extra=extra)
    complete = False
    try:
        for start in range(0, len(ordered), 1024):
            writer.write([r for r in ordered[start : start + 1024] if path_key(r["path"]) not in writer.done])
        complete = True
    finally:
        writer.close(complete=complete)
    if complete:
        shutil.rmtree(parts, ignore_errors=True)
    return failed


def predict_command(
    name: str,
    paths: Sequence[Path],
    out_path: str | None,
    *,
    resume: bool,
    overwrite: bool,
    backend: str | None,
    batch_size: int,
    workers: int | None,
    device: str | None,
    ood_mode: str = "flag",
    uncertainty: bool = False,
    as_json: bool = False,
) -> None:
    """``cxrzoo predict`` on one rank of a torchrun job: its share, then (rank 0) the table and
    the summary; exit code 1 when images could not be read, as in one process."""
    import sys

    import click

    from cxrzoo.reports.cli import _failure_summary

    if not out_path:
        raise UserError(
            "Under torchrun, cxrzoo predict needs --out FILE: the ranks' rows are gathered into that table"
        )
    if backend not in (None, "torch"):
        raise UserError("Under torchrun, cxrzoo predict runs the PyTorch backend only (drop --backend)")
    failed, predicted, skipped = predict_distributed(
        name,
        paths,
        out_path,
        resume=resume,
        overwrite=overwrite,
        batch_size=batch_size,
        workers=workers,
        device=device,
        ood_mode=ood_mode,
        uncertainty=uncertainty,
    )
    if int(os.environ.get("RANK", "0")) != 0:
        return
    done = f"; {skipped} already done skipped" if skipped else ""
    click.echo(
        f"Predicted {predicted - len(failed)} image(s) on {world_size()} rank(s) into {out_path}{done}.",
        err=as_json,
    )
    if failed:
        click.echo(_failure_summary(failed, predicted), err=True)
        sys.exit(1)


__all__ = ["parts_folder", "predict_command", "predict_distributed", "runs_across_ranks", "world_size"]
