"""``cxrzoo predict`` over a folder of full-size radiographs: images per second and peak memory.

    .venv/bin/python benchmarks/bench_predict.py            # 500 and 2,000 PNGs of 1024 px
    .venv/bin/python benchmarks/bench_predict.py --quick    # 40 and 120 PNGs: a smoke run

The images are 1024 x 1024 8-bit grey PNGs (NIH's size) of noise and shapes written with
``cv2.imwrite``: ``--unique`` distinct images (default 100), hard-linked under N names, so
that writing 2,000 files takes seconds and little disk; every file is still opened, decoded and
preprocessed on its own. The model is ``chest_xray_attention`` in its tiny configuration
(``test_resnet`` backbone) at 224 px input, untrained: the figures measure decoding, batching
and writing, not a network's arithmetic.

Each variant runs in a subprocess of its own, on the same files, one after the other:

- ``stream``: ``cxrzoo predict MODEL FOLDER --out preds.csv`` (the inference layer: decoding
  threads ahead of the model, batches of 32, rows appended to the CSV as batches finish);
- ``loop``: a plain loop of ``model.predict([path])`` over the files, one image at a time, the
  rows written to the CSV at the end (what a user would write without the inference layer);
- ``decode_all``: what ``cxrzoo predict`` did before: decode every image first, then
  ``model.predict_proba`` on the list.

Images per second count the prediction only (the subprocess times it after loading the
model); peak memory is the subprocess's maximum resident set (``ru_maxrss`` from ``os.wait4``),
beside ``idle``, a subprocess that only loads the model. Results go to
benchmarks/results/predict.json and predict.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import (
    RESULTS_DIR,
    CpuMonitor,
    add_common_args,
    exit_on_sigterm,
    print_table,
    report_load,
    usable_cpus,
    write_results,
)

MODEL = "chest_xray_attention"
STORE_NAME = "bench_predict"
IMAGE_SIZE = 224
VARIANTS = ("stream", "loop", "decode_all")


# ----------------------------------------------------------------------------------------------
# Subprocesses
# ----------------------------------------------------------------------------------------------


def _vm_hwm_kib() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def child(variant: str, folder: Path, out: Path, batch_size: int, workers: int | None) -> None:
    """Run one variant and print ``{"seconds", "images", ...}`` as JSON on the last line."""
    import torch

    import cxrzoo

    files = sorted(str(p) for p in folder.glob("*.png"))
    start = time.perf_counter()
    if variant == "idle":
        cxrzoo.load(STORE_NAME)
        images = 0
    elif variant == "stream":
        from cxrzoo.cli import main

        args = ["predict", STORE_NAME, str(folder), "--out", str(out), "--no-progress"]
        args += ["--batch-size", str(batch_size)]
        if workers is not None:
            args += ["--workers", str(workers)]
        main(args, standalone_mode=False)
        images = len(files)
    else:
        import pandas as pd

        model = cxrzoo.load(STORE_NAME)
        start = time.perf_counter()
        if variant == "loop":
            probs = [model.predict_proba([f], workers=0)[0] for f in files]
        elif variant == "decode_all":
            from cxrzoo.data.io import read_image

            decoded = [read_image(f) for f in files]
            probs = list(model.predict_proba(decoded, batch_size=batch_size, workers=0))
        else:
            raise SystemExit(f"unknown variant {variant}")
        frame = pd.DataFrame(np.stack(probs), columns=list(model.labels))
        frame.insert(0, "path", files)
        frame.to_csv(out, index=False)
        images = len(files)
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "seconds": seconds,
                "images": images,
                "vm_hwm_kib": _vm_hwm_kib(),
                "torch_threads": torch.get_num_threads(),
                "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            }
        )
    )


def run_child(
    variant: str, folder: Path, out: Path, *, home: Path, batch_size: int, workers: int | None
) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", variant, "--folder", str(folder), "--csv", str(out)]
    cmd += ["--batch-size", str(batch_size)]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    env = {**os.environ, "CXRZOO_HOME": str(home)}
    wall0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # os.wait4 gives this child's own resource usage: its peak resident set in KiB on Linux.
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    stdout, stderr = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    if proc.returncode != 0:
        raise SystemExit(f"{variant} failed ({proc.returncode}):\n{stdout[-2000:]}\n{stderr[-2000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["max_rss_mib"] = round(usage.ru_maxrss / 1024, 1)
    result["process_seconds"] = round(time.perf_counter() - wall0, 2)
    if result["images"]:
        result["img_s"] = round(result["images"] / result["seconds"], 1)
    result["seconds"] = round(result["seconds"], 2)
    return result


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------


def write_images(folder: Path, n: int, *, unique: int, size: int = 1024) -> float:
    """``n`` PNG names in ``folder``: ``unique`` distinct radiograph-like images, hard-linked."""
    import cv2

    start = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    pool = folder.parent / f"pool-{size}"
    pool.mkdir(exist_ok=True)
    sources = []
    for i in range(min(unique, n)):
        path = pool / f"{i:05d}.png"
        if not path.exists():
            rng = np.random.default_rng(i)
            img = np.full((size, size), 40 + i % 30, np.uint8)
            # Two lung fields, a heart, ribs, a nodule: shapes at random places over noise.
            for cx in (0.32, 0.68):
                center = (int(size * (cx + rng.uniform(-0.03, 0.03))), int(size * 0.5))
                cv2.ellipse(img, center, (int(size * 0.13), int(size * 0.3)), 0, 0, 360, 150, -1)
            cv2.circle(img, (int(size * 0.55), int(size * 0.62)), int(size * 0.1), 200, -1)
            for k in range(8):
                y = int(size * (0.25 + 0.07 * k))
                cv2.line(img, (int(size * 0.15), y), (int(size * 0.85), y + 40), 185, 6)
            cv2.circle(img, tuple(int(v) for v in rng.integers(200, size - 200, 2)), 18, 230, -1)
            noise = rng.normal(0, 10, (size, size))
            img = np.clip(img + noise, 0, 255).astype(np.uint8)
            if not cv2.imwrite(str(path), img):
                raise OSError(f"could not write {path}")
        sources.append(path)
    for i in range(n):
        target = folder / f"{i:06d}.png"
        if not target.exists():
            os.link(sources[i % len(sources)], target)
    return time.perf_counter() - start


def save_model(home: Path) -> None:
    os.environ["CXRZOO_HOME"] = str(home)
    import torch

    import cxrzoo
    from cxrzoo import store
    from cxrzoo.plugins import models

    torch.manual_seed(0)
    config = models.get(MODEL).tiny_config().replace(image_size=IMAGE_SIZE)
    model = cxrzoo.create_model(MODEL, config)
    model.set_thresholds([0.5] * len(model.labels))
    store.save(model, STORE_NAME)


# ----------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------


def write_markdown(path: Path, figures: dict[str, Any], monitor: dict[str, Any]) -> None:
    rows = figures["runs"]
    lines = [
        "# cxrzoo predict over a folder: throughput and peak memory",
        "",
        f"`python benchmarks/bench_predict.py` on {figures['machine_summary']}; "
        f"{MODEL} tiny config (test_resnet backbone) at {IMAGE_SIZE} px, untrained; "
        f"1024 x 1024 8-bit PNGs ({figures['unique_images']} distinct images hard-linked under "
        f"N names); batch {figures['batch_size']}, decoding workers: "
        f"{figures['workers'] if figures['workers'] is not None else 'default (one per CPU)'}.",
        "",
        "| variant | images | img/s | peak RSS (MiB) | seconds |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['images']:,} | {r.get('img_s', '-')} | {r['max_rss_mib']:.0f} | "
            f"{r['seconds']:.1f} |"
        )
    g = figures["growth"]
    lines += [
        "",
        "Peak RSS growth from the small to the large folder: "
        + ", ".join(f"{k} {v:+.0f} MiB" for k, v in g.items())
        + f". Stream vs loop speed-up: {figures['speedup_vs_loop']}x (at {figures['sizes'][-1]:,} images).",
        f"Largest |difference| between the stream's and the loop's probabilities: "
        f"{figures['max_abs_diff_stream_vs_loop']:.1e}.",
        "",
        f"Other processes used {monitor.get('other_processes_cpu_share')} of the machine's CPU time "
        f"during the run (load average {monitor.get('load_average_1m_before')} before): the "
        "machine was shared, so absolute rates are low; the runs took turns, so ratios hold better.",
        "",
        "- `stream`: `cxrzoo predict MODEL FOLDER --out preds.csv`: decoding threads ahead of the "
        "model in bounded batches, rows appended as batches finish.",
        "- `loop`: `model.predict_proba([path])` per file, rows written at the end.",
        "- `decode_all`: the previous `cxrzoo predict`: every image decoded first, then predicted.",
        "- `idle`: a process that only imports cxrzoo and loads the model.",
    ]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_args(parser, device=False)
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="image counts (default 500 2000)")
    parser.add_argument("--unique", type=int, default=100, help="distinct images among them")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=None, help="decoding threads of 'stream'")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--csv", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.folder, args.csv, args.batch_size, args.workers)
        return
    exit_on_sigterm()
    sizes = args.sizes or ([40, 120] if args.quick else [500, 2000])
    monitor = CpuMonitor()
    runs = []
    with tempfile.TemporaryDirectory(prefix="cxrzoo-bench-predict-") as tmp:
        root = Path(tmp)
        home = root / "home"
        save_model(home)
        gen = {}
        for n in sizes:
            gen[n] = round(write_images(root / f"n{n}", n, unique=args.unique), 1)
        print(f"wrote {', '.join(f'{n} images in {s} s' for n, s in gen.items())}")
        idle = run_child(
            "idle", root / f"n{sizes[0]}", root / "idle.csv", home=home, batch_size=1, workers=None
        )
        runs.append({"variant": "idle", "images": 0, **idle})
        outputs: dict[tuple[str, int], Path] = {}
        for n in sizes:
            for variant in args.variants:
                out = root / f"{variant}-{n}.csv"
                r = run_child(
                    variant, root / f"n{n}", out, home=home, batch_size=args.batch_size, workers=args.workers
                )
                runs.append({"variant": variant, **r})
                outputs[variant, n] = out
                print(
                    f"  {variant:<10} {n:>6} images  {r['img_s']:>7} img/s  peak RSS {r['max_rss_mib']:>7} MiB"
                )
        import pandas as pd

        diff = 0.0
        if ("stream", sizes[-1]) in outputs and ("loop", sizes[-1]) in outputs:
            a = pd.read_csv(outputs["stream", sizes[-1]]).sort_values("path").reset_index(drop=True)
            b = pd.read_csv(outputs["loop", sizes[-1]]).sort_values("path").reset_index(drop=True)
            labels = [c for c in b.columns if c != "path"]
            diff = float(np.abs(a[labels].to_numpy() - b[labels].to_numpy()).max())
    by = {(r["variant"], r["images"]): r for r in runs}
    growth = {
        v: round(by[v, sizes[-1]]["max_rss_mib"] - by[v, sizes[0]]["max_rss_mib"], 1)
        for v in args.variants
        if (v, sizes[0]) in by and (v, sizes[-1]) in by
    }
    speedup = None
    if ("stream", sizes[-1]) in by and ("loop", sizes[-1]) in by:
        speedup = round(by["stream", sizes[-1]]["img_s"] / by["loop", sizes[-1]]["img_s"], 2)
    print_table(
        runs,
        [("variant", "variant"), ("images", "images"), ("img_s", "img/s"), ("max_rss_mib", "peak MiB")],
    )
    report_load(monitor)
    summary = monitor.summary()
    from common import processor_name

    figures = {
        "model": f"{MODEL} tiny (test_resnet) at {IMAGE_SIZE} px",
        "machine_summary": f"{processor_name()}, {usable_cpus()} usable CPUs",
        "sizes": sizes,
        "unique_images": args.unique,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "image_generation_seconds": gen,
        "runs": runs,
        "growth": growth,
        "speedup_vs_loop": speedup,
        "max_abs_diff_stream_vs_loop": diff,
    }
    path = write_results("predict", figures, out=args.out, quick=args.quick, monitor=monitor)
    md = path.with_suffix(".md") if args.out or args.quick else RESULTS_DIR / "predict.md"
    write_markdown(md, figures, summary)
    print(f"results: {path}, {md}")


if __name__ == "__main__":
    main()
