"""Catalog time of the biggest public label files, read from the torchxrayvision wheel.

torchxrayvision ships the real PadChest 160K CSV (160,861 rows) and the full CheXpert-v1.0-small
train.csv (223,414 rows). This lays each one out as its reader expects, with an empty placeholder
file for every image (PadChest's numbered folders, CheXpert's patient/study folders), and times
``cxrzoo``'s catalog of it: reading the CSV, mapping the labels, scanning the folders and
matching every row to its file, without decoding pixels. Goal: under 5 s each on 2 cores. Wall
and CPU seconds are both printed, with the load average: on a shared machine the wall time
includes waiting for the CPU.

Usage: python benchmarks/bench_public_catalog.py [TREE_DIR] [--repeat N]

TREE_DIR keeps the trees between runs (writing 380,000 empty files takes a while); by default a
temporary folder is used and removed. Prints the figures and writes
benchmarks/results/public_catalog.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "public_catalog.json"
PADCHEST = "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz"


def _touch_all(paths: list[Path]) -> None:
    for folder in sorted({p.parent for p in paths}):
        folder.mkdir(parents=True, exist_ok=True)
    for path in paths:
        if not path.exists():
            path.touch()


def padchest_tree(data: Path, root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    if not (root / PADCHEST).is_file():
        shutil.copy(data / PADCHEST, root / PADCHEST)
    frame = pd.read_csv(root / PADCHEST, usecols=["ImageID", "ImageDir"], dtype=str)
    _touch_all([root / d / i for d, i in zip(frame["ImageDir"], frame["ImageID"], strict=True)])
    return root


def chexpert_tree(data: Path, root: Path) -> Path:
    folder = root / "CheXpert-v1.0-small"
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "train.csv").is_file():
        with gzip.open(data / "chexpert_train.csv.gz", "rb") as f, open(folder / "train.csv", "wb") as out:
            shutil.copyfileobj(f, out)
    paths = pd.read_csv(folder / "train.csv", usecols=["Path"], dtype=str)["Path"]
    _touch_all([root / p for p in paths])
    return root


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("tree", nargs="?", help="folder to keep the placeholder trees in")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    try:
        import torchxrayvision as xrv
    except ImportError:
        print("torchxrayvision is not installed: pip install torchxrayvision", file=sys.stderr)
        return 2
    from cxrzoo_public_datasets.chexpert import CheXpert
    from cxrzoo_public_datasets.padchest import PadChest

    data = Path(xrv.__file__).parent / "data"
    base = Path(args.tree) if args.tree else Path(tempfile.mkdtemp(prefix="cxrzoo-public-catalog-"))
    results = []
    try:
        for name, build, reader in (
            ("padchest", padchest_tree, PadChest),
            ("chexpert", chexpert_tree, CheXpert),
        ):
            start = time.perf_counter()
            root = build(data, base / name)
            built = time.perf_counter() - start
            times, cpu, report = [], [], None
            for _ in range(args.repeat):
                start, start_cpu = time.perf_counter(), time.process_time()
                report = reader(root).catalog()
                times.append(time.perf_counter() - start)
                cpu.append(time.process_time() - start_cpu)
            assert report is not None
            row = {
                "dataset": name,
                "rows": report.rows,
                "images": report.images,
                "tree_s": round(built, 1),
                "catalog_s_median": round(statistics.median(times), 3),
                "catalog_s_all": [round(t, 3) for t in times],
                "catalog_cpu_s_median": round(statistics.median(cpu), 3),
                "load_average": os.getloadavg()[0],
            }
            results.append(row)
            print(
                f"{name:<9} {report.rows:>7} rows  {report.images:>7} usable images  catalog "
                f"{row['catalog_s_median']:.2f} s wall, {row['catalog_cpu_s_median']:.2f} s CPU (median of "
                f"{args.repeat}; load average {row['load_average']:.1f}; tree written in {built:.0f} s)"
            )
    finally:
        if not args.tree:
            shutil.rmtree(base, ignore_errors=True)
    machine = {
        "cpus": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": machine, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
