"""Catalog and split at full NIH scale, without pixels.

Builds a Kaggle-layout tree of 112,120 empty files named after NIH's metadata (images spread
over images_001..images_012/images, train_val/test lists made patient-wise to 86,524 / 25,596)
and times:

  (a) cxrzoo's catalog (one os.scandir pass, file-system metadata only);
  (b) a baseline: a plain Python loop that opens and reads every file;
  (c) the founding 5% sample and patient-wise 80/20 split (must give 3,460 / 866 / 1,280).

Usage: python benchmarks/bench_catalog.py [TREE_DIR] [--metadata CSV.GZ] [--repeat N]

TREE_DIR is reused when it already holds the tree; by default a temporary folder is used and
removed. Results go to benchmarks/results/catalog.json.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_METADATA = HERE.parents[1] / "shared" / "data" / "nih-metadata" / "Data_Entry_2017_v2020.csv.gz"
RESULTS = HERE / "results" / "catalog.json"
N_TEST = 25_596
EXPECTED_SPLIT = (3_460, 866, 1_280)


def baseline_open_every_file(root: Path) -> tuple[int, int]:
    """What a simple pipeline does: find every image and open it to check it is there."""
    count = size = 0
    for path in glob.glob(os.path.join(root, "images_*", "images", "*.png")):
        with open(path, "rb") as f:
            size += len(f.read())
        count += 1
    return count, size


def timed(fn, repeat: int):  # type: ignore[no-untyped-def]
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return result, times


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("tree", nargs="?", type=Path, help="where to build (or find) the tree")
    parser.add_argument("--metadata", type=Path, default=DEFAULT_METADATA)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each step (median reported)")
    args = parser.parse_args()
    if not args.metadata.is_file():
        print(
            f"NIH metadata not found at {args.metadata}; nothing to benchmark (it lives in ../shared/data)."
        )
        return 0

    from cxrzoo.data import Nih14, make_splits
    from cxrzoo.data.base import scan_image_files
    from cxrzoo.data.nih14 import write_empty_layout

    temporary = args.tree is None
    root = Path(tempfile.mkdtemp(prefix="cxrzoo-bench-")) if temporary else args.tree
    try:
        if (root / "test_list.txt").is_file() and (root / args.metadata.name).is_file():
            print(f"Reusing the tree in {root}")
            build_s = None
        else:
            print(f"Building 112,120 empty files in {root} …", flush=True)
            start = time.perf_counter()
            write_empty_layout(args.metadata, root, n_test=N_TEST, seed=0)
            build_s = time.perf_counter() - start
            print(f"  built in {build_s:.1f} s")

        source = Nih14(root)
        report, catalog_times = timed(source.catalog, args.repeat)
        _, scan_times = timed(lambda: scan_image_files(root), args.repeat)
        (count, _), baseline_times = timed(lambda: baseline_open_every_file(root), args.repeat)
        table = report.table
        splits, split_times = timed(lambda: make_splits(table, fraction=0.05, seed=0), args.repeat)
    finally:
        if temporary:
            shutil.rmtree(root, ignore_errors=True)

    catalog_s = statistics.median(catalog_times)
    baseline_s = statistics.median(baseline_times)
    split_s = statistics.median(split_times)
    scan_s = statistics.median(scan_times)
    counts = (len(splits.train), len(splits.val), len(splits.test))
    print(f"(a) catalog:  {report.images:,} usable images of {report.rows:,} rows in {catalog_s:.2f} s")
    print(f"    of which finding the files (os.scandir, one stat each): {scan_s:.2f} s")
    print(f"(b) baseline: opened and read {count:,} files in {baseline_s:.2f} s (no CSV, no matching)")
    print(
        f"    whole catalog / baseline: {baseline_s / catalog_s:.1f}x; file scan / baseline: "
        f"{baseline_s / scan_s:.1f}x (the files are empty here; the real download has ~42 GB to read)"
    )
    print(f"(c) 5% split: train {counts[0]:,} / val {counts[1]:,} / test {counts[2]:,} in {split_s:.2f} s")
    ok = counts == EXPECTED_SPLIT and report.images == 112_120
    if not ok:
        print(
            f"UNEXPECTED: the founding report's split is {EXPECTED_SPLIT} of 112,120 images", file=sys.stderr
        )

    result = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "python": sys.version.split()[0],
        },
        "files": report.images,
        "rows": report.rows,
        "repeat": args.repeat,
        "build_seconds": None if build_s is None else round(build_s, 2),
        "catalog_seconds": round(catalog_s, 3),
        "catalog_seconds_all": [round(t, 3) for t in catalog_times],
        "scan_seconds": round(scan_s, 3),
        "baseline_open_every_file_seconds": round(baseline_s, 3),
        "baseline_seconds_all": [round(t, 3) for t in baseline_times],
        "speedup": round(baseline_s / catalog_s, 2),
        "scan_speedup": round(baseline_s / scan_s, 2),
        "split_seconds": round(split_s, 3),
        "split": dict(zip(("train", "val", "test"), counts)),
        "split_as_expected": counts == EXPECTED_SPLIT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"Wrote {RESULTS}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
