"""The catalog: every metadata row matched to its image file, every problem named.

By default only file-system metadata is used (one :func:`os.scandir` pass over the image
folders), so the 112,120 files of the full NIH download are catalogued in about a second.
Zero-byte files are listed under ``unverified_empty`` but kept: a tree of empty files stands in
for the real download in tests and benchmarks. ``verify=True`` decodes every image in parallel
and leaves out, by name, those that are empty, truncated, undecodable or of an unsupported mode.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import cv2
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from cxrzoo.data.base import LABEL_DTYPE, TABLE_COLUMNS, TEST, TRAIN_VAL, VAL
from cxrzoo.data.io import ImageReadError, read_image

if TYPE_CHECKING:
    from cxrzoo.data.base import DatasetSource

T = TypeVar("T")
R = TypeVar("R")

#: Every problem key a report carries, in the order they are printed, with what each means.
PROBLEMS: dict[str, str] = {
    "missing": "metadata row whose image file is not found",
    "no_row": "image file without a metadata row (not used)",
    "unknown_label": "metadata row with a finding or label value the reader does not know (not used)",
    "bad_row": "metadata row that cannot be read (not used)",
    "bad_value": "metadata value that is not valid, set unknown (row used)",
    "skipped_row": "metadata row the reader does not use (another modality or view, not used)",
    "unmapped_label": "published finding outside the source's labels (ignored, row used)",
    "unmapped_value": "metadata value the reader does not know, counted by value (set unknown, row used)",
    "skipped_folder": "folder not scanned (a link loop, or a second way into a folder already scanned)",
    "duplicate_row": "image with more than one metadata row (the first is used)",
    "duplicate_file": "image name found in more than one folder (the first is used)",
    "list_no_row": "name in a split list (train_val_list.txt, test_list.txt …) without a metadata row",
    "in_both_lists": "image in both the train_val and the test list (kept in test)",
    "empty": "empty file (not used)",
    "truncated": "truncated image file (not used)",
    "undecodable": "file that does not decode as an image (not used)",
    "unsupported_mode": "image of an unsupported mode (not used)",
    "unreadable": "file that cannot be read (not used)",
}
#: Problems found by decoding; the images are left out of the table.
DECODE_PROBLEMS = ("empty", "truncated", "undecodable", "unsupported_mode", "unreadable", "missing")

# Valid PNG bit depths per colour type (PNG specification, IHDR).


@dataclass(frozen=True)
class CatalogReport:
    """What a catalog found; :meth:`to_dict` is its JSON form, ``table`` the usable images."""

    root: str
    verified: bool
    rows: int
    images: int
    problems: dict[str, list[Any]]
    unverified_empty: list[str]
    seconds: float
    metadata_file: str | None = None
    lists: dict[str, int] = field(default_factory=dict)
    #: Every distinct value of the source's label columns with its count and what it became.
    label_values: list[dict[str, Any]] = field(default_factory=list)
    table: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False, compare=False, hash=False)

    @property
    def problem_count(self) -> int:
        return sum(len(v) for v in self.problems.values())

    @property
    def usable(self) -> list[str]:
        """Names of the usable images, in metadata order."""
        return self.table["image"].tolist()

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "metadata_file": self.metadata_file,
            "verified": self.verified,
            "rows": self.rows,
            "images": self.images,
            "lists": dict(self.lists),
            "problem_count": self.problem_count,
            "problems": {k: list(v) for k, v in self.problems.items()},
            "unverified_empty": list(self.unverified_empty),
            "label_values": [dict(v) for v in self.label_values],
            "seconds": round(self.seconds, 4),
        }

    def value_lines(self, limit: int = 40) -> list[str]:
        """The table of label values: per source and column, each value, its count, what it became."""
        if not self.label_values:
            return []
        out = ["label values seen and how each was read:"]
        groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        for v in self.label_values:
            key = (str(v.get("source", "")), Path(str(v["file"])).name if v.get("file") else "", v["column"])
            groups.setdefault(key, []).append(v)
        for (source, file, column), items in groups.items():
            where = " ".join(p for p in (f"{source}:" if source else "", file) if p)
            out.append(f"  {where} column {column!r}: {len(items)} distinct value(s)".replace("   ", " "))
            width = min(40, max(len(repr(v["value"])) for v in items[:limit]))
            for v in items[:limit]:
                out.append(f"    {v['value']!r:<{width}}  {v['count']:>8}  -> {v['mapped']}")
            if len(items) > limit:
                rest = sum(v["count"] for v in items[limit:])
                out.append(f"    … and {len(items) - limit} more value(s) in {rest} row(s) (all with --json)")
        return out

    def lines(self, limit: int = 10) -> list[str]:
        """Human-readable summary: one line per problem, at most ``limit`` per kind."""
        csv_name = Path(self.metadata_file).name if self.metadata_file else "metadata"
        lists = ", ".join(f"{n} {k}" for k, n in self.lists.items() if n)
        check = "decoded and verified" if self.verified else "present (not decoded; --verify decodes them)"
        out = [
            f"{self.root}: {self.rows} rows in {csv_name}, {self.images} usable images "
            f"{check}" + (f" [{lists}]" if lists else "") + f" in {self.seconds:.2f} s"
        ]
        for key, items in self.problems.items():
            if not items:
                continue
            out.append(f"{len(items)} {key}: {PROBLEMS.get(key, key)}")
            for item in items[:limit]:
                out.append(f"  {key}: {_describe(key, item, csv_name)}")
            if len(items) > limit:
                out.append(f"  … and {len(items) - limit} more {key} (full list with --json)")
        if self.unverified_empty:
            n = len(self.unverified_empty)
            shown = ", ".join(self.unverified_empty[: min(limit, 3)])
            out.append(
                f"warning: {n} zero-byte image file(s) kept unverified ({shown}{', …' if n > 3 else ''}); "
                f"--verify leaves them out"
            )
        if not self.problem_count:
            out.append("no problems found")
        return out


def _describe(key: str, item: Any, csv_name: str) -> str:
    if not isinstance(item, dict):
        return str(item)
    where = Path(str(item["file"])).name if item.get("file") else csv_name
    prefix = f"{item['source']}: " if item.get("source") else ""
    image = f"{item['image']} " if item.get("image") else ""
    line = f"({where} line {item['row']})" if item.get("row") is not None else f"({where})"
    if key == "unknown_label":
        return f"{prefix}{image}{line}: findings {item['labels']!r}"
    if "column" in item:
        detail = f"{item['column']} = {item.get('value')!r}" + (
            f" ({item['reason']})" if item.get("reason") else ""
        )
    elif "count" in item:
        detail = f"{item.get('label')!r} in {item['count']} row(s)"
    else:
        detail = str(item.get("reason", ""))
    return f"{prefix}{image}{line}: {detail}"


def build_catalog(
    source: DatasetSource,
    *,
    verify: bool = False,
    workers: int | None = None,
    progress: bool = False,
) -> CatalogReport:
    """Match ``source``'s metadata rows to its files; see :class:`CatalogReport`."""
    start = time.perf_counter()
    inv = source.inventory()
    rows, files = inv.rows, inv.files
    problems: dict[str, list[Any]] = {key: [] for key in PROBLEMS}
    for key, items in inv.problems.items():
        problems.setdefault(key, []).extend(items)

    duplicated = rows["image"].duplicated(keep="first")
    problems["duplicate_row"] = sorted(rows.loc[duplicated, "image"].unique().tolist())
    rows = rows.loc[~duplicated]

    unknown = rows["unknown_labels"] != ""
    has_file = "file" in rows.columns
    problems["unknown_label"] = [
        {"image": r.image, "row": int(r.row), "labels": r.finding_labels}
        | ({"file": r.file} if has_file else {})
        for r in rows.loc[unknown].itertuples(index=False)
    ]

    dup_files = files["image"].duplicated(keep="first")
    problems["duplicate_file"] = sorted(files.loc[dup_files, "image"].unique().tolist())
    files = files.loc[~dup_files]

    known = pd.Index(rows["image"])
    problems["no_row"] = sorted(files.loc[~files["image"].isin(known), "image"].tolist())

    merged = rows.loc[~unknown].merge(files, on="image", how="left")
    present = merged["path"].notna()
    problems["missing"] = merged.loc[~present, "image"].tolist()
    merged = merged.loc[present]

    unverified_empty: list[str] = []
    if verify:
        bad = verify_images(
            merged["path"].tolist(), merged["image"].tolist(), workers=workers, progress=progress
        )
        for key in DECODE_PROBLEMS:
            problems[key].extend(sorted(bad.get(key, [])))
        failed = {name for names in bad.values() for name in names}
        merged = merged.loc[~merged["image"].isin(failed)]
    else:
        unverified_empty = merged.loc[merged["size"] == 0, "image"].tolist()

    labels = list(source.label_names)
    merged["source"] = source.name
    for label in labels:
        if label not in merged.columns:
            merged[label] = np.nan  # a declared label the reader wrote no column for is unknown
    table = merged.loc[:, [*TABLE_COLUMNS, *labels]].reset_index(drop=True)
    table[labels] = table[labels].astype(LABEL_DTYPE)
    lists = list_counts(table)
    return CatalogReport(
        root=str(source.root),
        verified=verify,
        rows=len(inv.rows),
        images=len(table),
        problems={k: v for k, v in problems.items() if v or k in PROBLEMS},
        unverified_empty=unverified_empty,
        seconds=time.perf_counter() - start,
        metadata_file=inv.metadata_file,
        lists=lists,
        label_values=list(inv.label_values),
        table=table,
    )


def list_counts(table: pd.DataFrame) -> dict[str, int]:
    """Images per ``list`` value (``val`` only where a source has an official one)."""
    counts = table["list"].value_counts(dropna=False)
    lists = {TRAIN_VAL: int(counts.get(TRAIN_VAL, 0)), TEST: int(counts.get(TEST, 0))}
    if counts.get(VAL, 0):
        lists[VAL] = int(counts[VAL])
    lists["unlisted"] = int(table["list"].isna().sum())
    return lists


def combine_reports(
    keys: Sequence[str], reports: Sequence[CatalogReport], labels: Sequence[str]
) -> CatalogReport:
    """One report for several sources' catalogs: problems tagged with their source, one table.

    The table has the union of the labels (NaN where a source lacks one) and image and patient
    ids prefixed with the source's key, so that they are unique across sources.
    """
    from cxrzoo.data.base import label_columns
    from cxrzoo.labels import canonical

    problems: dict[str, list[Any]] = {key: [] for key in PROBLEMS}
    tables = []
    for key, report in zip(keys, reports, strict=True):
        for kind, items in report.problems.items():
            problems.setdefault(kind, []).extend(
                {**item, "source": key} if isinstance(item, dict) else f"{key}: {item}" for item in items
            )
        table = report.table.copy()
        table = table.rename(columns={c: canonical(c) or c for c in label_columns(table)})
        table["image"] = key + "/" + table["image"].astype(str)
        table["patient"] = key + "/" + table["patient"].astype(str)
        table["source"] = key
        tables.append(table)
    combined = pd.concat(tables, ignore_index=True, sort=False)
    for label in labels:
        if label not in combined.columns:
            combined[label] = np.nan
    combined = combined.loc[:, [*TABLE_COLUMNS, *labels]]
    combined[list(labels)] = combined[list(labels)].astype(LABEL_DTYPE)
    combined["follow_up"] = combined["follow_up"].astype("Int64")
    return CatalogReport(
        root=" + ".join(r.root for r in reports),
        verified=all(r.verified for r in reports),
        rows=sum(r.rows for r in reports),
        images=len(combined),
        problems=problems,
        unverified_empty=[f"{k}/{n}" for k, r in zip(keys, reports) for n in r.unverified_empty],
        seconds=sum(r.seconds for r in reports),
        metadata_file=None,
        lists=list_counts(combined),
        label_values=[{**v, "source": k} for k, r in zip(keys, reports) for v in r.label_values],
        table=combined,
    )


def verify_images(
    paths: Sequence[str],
    names: Sequence[str] | None = None,
    *,
    workers: int | None = None,
    progress: bool = False,
) -> dict[str, list[str]]:
    """Decode every image in parallel; ``{problem: [name, …]}`` for those that fail."""
    names = list(names) if names is not None else [os.path.basename(p) for p in paths]
    bad: dict[str, list[str]] = {}
    for i, problem in threaded_map(
        check_image, paths, workers=workers, progress=progress, desc="Verifying", unit="img"
    ):
        if problem is not None:
            bad.setdefault(problem, []).append(names[i])
    return bad


def check_image(path: str) -> str | None:
    """``None`` when ``path`` decodes, else the problem key (``"truncated"``, ``"empty"`` …)."""
    try:
        read_image(path)
    except ImageReadError as exc:
        return classify_failure(path, exc.reason)
    except cv2.error:
        return "undecodable"
    return None


def classify_failure(path: str, reason: str) -> str:
    """Problem key for a :class:`ImageReadError` reason, looking into PNG headers where needed."""
    if reason == "missing":
        return "missing"
    if reason == "empty file":
        return "empty"
    if reason.startswith("unreadable"):
        return "unreadable"
    if reason.startswith("unsupported"):
        return "unsupported_mode"
    if reason == "truncated":
        return "truncated"
    return "undecodable"


def threaded_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    *,
    workers: int | None = None,
    progress: bool = False,
    desc: str | None = None,
    unit: str = "it",
) -> Iterator[tuple[int, R]]:
    """``(index, fn(item))`` for every item, computed by a thread pool, in completion order.

    Work is submitted in chunks with a bounded number in flight, so millions of items cost
    little memory. An exception from ``fn`` (``KeyboardInterrupt`` included) cancels the rest
    and propagates. OpenCV and file reads release the GIL, so threads decode in parallel.
    """
    items = list(items)
    workers = max(1, workers or os.cpu_count() or 1)
    chunk = max(1, min(64, len(items) // (workers * 8) or 1))
    starts = iter(range(0, len(items), chunk))

    def run(start: int) -> list[tuple[int, R]]:
        return [(i, fn(items[i])) for i in range(start, min(start + chunk, len(items)))]

    bar = tqdm(total=len(items), desc=desc, unit=unit, disable=not progress, leave=False)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cxrzoo-data")
    pending: set[Future[list[tuple[int, R]]]] = set()
    try:
        for start in starts:
            pending.add(pool.submit(run, start))
            if len(pending) >= workers * 4:
                break
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                results = future.result()
                bar.update(len(results))
                yield from results
                nxt = next(starts, None)
                if nxt is not None:
                    pending.add(pool.submit(run, nxt))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
