"""Preprocessing cache build (``build_cache``) on full-size radiographs, per core and on all cores.

    .venv/bin/python benchmarks/bench_cache.py                 # 200 PNGs of 1024 x 1024
    .venv/bin/python benchmarks/bench_cache.py --images 2000   # as on a GPU machine

Writes ``--images`` synthetic 1024 x 1024 8-bit grey PNGs (the size of NIH's images) and times:

  (a) the baseline: a plain loop of ``cv2.imread`` over every file, decoding only;
  (b) ``build_cache`` with one worker thread and OpenCV limited to one thread: img/s per core;
  (c) ``build_cache`` with one worker thread and OpenCV's own threads (the library's default);
  (d) ``build_cache`` with ``--workers`` threads (default: one per CPU).

The four take turns, one run each per round, ``--repeat`` rounds, and the median counts.
``build_cache`` decodes, runs the image steps (CLAHE on the full image, resize to
``--image-size``) and writes the memory-mapped cache. (b) against (a) tells how much of the cost
is the decode. The files were just written, so they are read from the page cache: this measures
the CPU's work, not the disk. Results go to benchmarks/results/cache.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from common import (
    CpuMonitor,
    add_common_args,
    exit_on_sigterm,
    fmt_ratio,
    median,
    print_table,
    ratio,
    report_load,
    write_phantom_pngs,
    write_results,
)

from cxrzoo.config import DEFAULT_PREPROCESSING
from cxrzoo.data.cache import build_cache
from cxrzoo.transforms import Preprocessing


def decode_only(paths: list[str]) -> float:
    """Seconds a plain loop takes to decode every file with ``cv2.imread``."""
    start = time.perf_counter()
    for path in paths:
        img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if img is None:
            raise OSError(f"cannot decode {path}")
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_args(parser, device=False)
    parser.add_argument("--images", type=int, default=None, help="PNG files to write (default 200, quick 12)")
    parser.add_argument("--size", type=int, default=1024, help="side of the PNG files (default 1024, as NIH)")
    parser.add_argument("--image-size", type=int, default=224, help="side of the cached images (default 224)")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count(), help="threads of the parallel build (default: CPUs)"
    )
    parser.add_argument(
        "--repeat", type=int, default=None, help="timed runs of each step (default 3, quick 1)"
    )
    parser.add_argument(
        "--single-images",
        type=int,
        default=None,
        help="images of the single-thread steps (a)-(c) (default: all)",
    )
    parser.add_argument(
        "--data", type=Path, default=None, help="keep (or reuse) the PNG files in this folder"
    )
    args = parser.parse_args()
    exit_on_sigterm()
    n = args.images or (12 if args.quick else 200)
    repeat = args.repeat or (1 if args.quick else 3)
    workers = max(1, args.workers or 1)
    cpus = os.cpu_count() or 1
    monitor = CpuMonitor()

    scratch = Path(tempfile.mkdtemp(prefix="cxrzoo-bench-cache-"))
    folder = args.data if args.data is not None else scratch / "images"
    try:
        print(f"Writing {n} synthetic {args.size} x {args.size} PNGs to {folder} …", flush=True)
        table, _, gen_s = write_phantom_pngs(folder, n, size=args.size)
        paths = table["path"].tolist()
        mean_kib = float(np.mean([os.path.getsize(p) for p in paths])) / 1024
        print(f"  {gen_s:.1f} s, {mean_kib:.0f} KiB per file")
        prep = Preprocessing(DEFAULT_PREPROCESSING, image_size=args.image_size)
        cache_dir = scratch / "cache"

        def build(w: int, rows: int) -> float:
            """Seconds per image of a fresh build of the first ``rows`` images."""
            part = table.iloc[:rows]
            cache = build_cache(part, prep, cache_dir=cache_dir, workers=w, progress=False, rebuild=True)
            if len(cache) != rows:
                raise RuntimeError(f"cache holds {len(cache)} images of {rows}: {cache.failed}")
            return cache.seconds / rows

        # The single-thread steps may use fewer images: they are the slow ones.
        n1 = min(n, args.single_images or n)
        decode_only(paths[: min(n, 8)])  # warm the decoder and the page cache
        # The steps take turns, one run each per round, so that other work on the machine
        # slows them alike.
        timings: dict[str, list[float]] = {"decode": [], "core": [], "single": [], "parallel": []}
        default_threads = cv2.getNumThreads()
        for _ in range(repeat):
            timings["decode"].append(decode_only(paths[:n1]) / n1)
            cv2.setNumThreads(1)
            try:
                timings["core"].append(build(1, n1))
            finally:
                cv2.setNumThreads(default_threads)
            timings["single"].append(build(1, n1))
            timings["parallel"].append(build(workers, n))
        decode_s, single_core_s, single_s, parallel_s = (median(timings[k]) for k in timings)
        start = time.perf_counter()
        reopened = build_cache(table, prep, cache_dir=cache_dir, workers=workers, progress=False)
        reopen_s = time.perf_counter() - start
        assert not reopened.built
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    def row(step: str, images: int, threads: int, per_image_s: float, per_core: bool) -> dict[str, Any]:
        return {
            "step": step,
            "images": images,
            "threads": threads,
            "seconds": round(per_image_s * images, 3),
            "img_s": round(1 / per_image_s, 1),
            "img_s_core": round(1 / per_image_s / min(threads, cpus), 1) if per_core else None,
        }

    rows = [
        row("(a) baseline: cv2.imread loop, decode only", n1, 1, decode_s, True),
        row("(b) build_cache, 1 worker, OpenCV 1 thread", n1, 1, single_core_s, True),
        row("(c) build_cache, 1 worker, OpenCV default", n1, 1, single_s, False),
        row(f"(d) build_cache, {workers} workers", n, workers, parallel_s, True),
    ]
    for row in rows:
        row["vs_decode"] = ratio(row["img_s"], rows[0]["img_s"])
    decode_share = decode_s / single_core_s
    scaling = single_core_s / parallel_s
    print(
        f"\nbuild_cache of PNGs {args.size} x {args.size} -> {args.image_size} x {args.image_size} "
        f"({', '.join(prep.image_specs)}), median of {repeat}:"
    )
    print_table(
        rows,
        [
            ("step", "step"),
            ("images", "images"),
            ("seconds", "s"),
            ("img_s", "img/s"),
            ("img_s_core", "img/s/core"),
            ("vs_decode", "vs (a)"),
        ],
    )
    print(f"  decoding is {decode_share:.0%} of the single-core build (the rest: CLAHE, resize, write)")
    print(
        f"  {workers} workers vs 1 core: {fmt_ratio(scaling)} on {cpus} CPUs "
        f"({scaling / min(workers, cpus):.0%} parallel efficiency)"
    )
    print(f"  reopening the finished cache: {reopen_s * 1000:.1f} ms")
    report_load(monitor)

    figures = {
        "images": n,
        "source_size": args.size,
        "image_size": args.image_size,
        "image_steps": list(prep.image_specs),
        "mean_file_kib": round(mean_kib, 1),
        "generate_seconds": round(gen_s, 2),
        "repeat": repeat,
        "workers": workers,
        "single_thread_images": n1,
        "decode_only_img_s": rows[0]["img_s"],
        "build_1core_img_s": rows[1]["img_s"],
        "build_1worker_img_s": rows[2]["img_s"],
        "build_parallel_img_s": rows[3]["img_s"],
        "build_parallel_img_s_per_core": rows[3]["img_s_core"],
        "decode_share_of_build": round(decode_share, 3),
        "parallel_speedup": round(scaling, 2),
        "reopen_seconds": round(reopen_s, 4),
        "rows": rows,
    }
    path = write_results("cache", figures, out=args.out, quick=args.quick, monitor=monitor)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
