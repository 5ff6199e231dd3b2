"""Run every benchmark at sizes that finish in about 10 minutes on 2 CPU cores (``make bench``).

    .venv/bin/python benchmarks/run_all.py                 # every benchmark, results/*.json
    .venv/bin/python benchmarks/run_all.py --quick         # smoke run, results to a temporary folder
    .venv/bin/python benchmarks/run_all.py --only train inference

Each benchmark runs in its own process, prints its figures and its ratio to the baseline it
measures in the same run, and writes ``benchmarks/results/<name>.json``. The catalog benchmark
needs NIH's metadata in ../shared/data/nih-metadata and is skipped, saying so, without it.
A summary of the headline figures closes the run. For the GPU figures see gpu.sh.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
METADATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "nih-metadata"
ORDER = ("cache", "loader", "train", "inference", "catalog", "bootstrap")
#: A benchmark still running after this long is stopped (and reported as failed).
TIMEOUT_S = 20 * 60


def command(name: str, args: argparse.Namespace, out: Path) -> list[str] | str:
    """The benchmark's command line, or why it is skipped."""
    script = [sys.executable, str(HERE / f"bench_{name}.py")]
    quick = ["--quick"] if args.quick else []
    device = ["--device", args.device]
    if name == "cache":
        return [*script, *quick, "--out", str(out)]
    if name in ("loader", "train"):
        return [*script, *quick, *device, "--out", str(out)]
    if name == "inference":
        return [*script, *quick, "--out", str(out)]
    if name == "catalog":
        if not (METADATA / "Data_Entry_2017_v2020.csv.gz").is_file():
            return f"NIH metadata not found in {METADATA} (it lives in ../shared/data)"
        if args.quick:
            return "not run with --quick (it always writes benchmarks/results/catalog.json)"
        return [*script]
    if name == "bootstrap":
        sizes = ["--images", "2000", "--resamples", "100", "--baseline-resamples", "5", "--repeats", "1"]
        return [*script, *(sizes if args.quick else []), "--out", str(out)]
    raise ValueError(name)


def headline(name: str, path: Path) -> str:
    """One line of the benchmark's main figures, read from its results file."""
    try:
        r: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return "no results file"
    if name == "cache":
        return (
            f"build_cache {r['build_1core_img_s']:.0f} img/s on 1 core, {r['build_parallel_img_s']:.0f} img/s "
            f"with {r['workers']} workers; decode alone {r['decode_only_img_s']:.0f} img/s "
            f"({r['decode_share_of_build']:.0%} of the build)"
        )
    if name == "loader":
        return (
            f"cached {r['cached_img_s']:,.0f} img/s vs decode each epoch {r['decode_each_epoch_img_s']:,.0f} "
            f"img/s: {r['speedup_cached_vs_decode']:.1f}x ({r['device']})"
        )
    if name in ("train", "train_compile"):
        parts = [f"{row['model']} {row['vs_resnet50']:.2f}x" for row in r["rows"] if row.get("vs_resnet50")]
        return f"resnet50 {r['baseline_img_s']} img/s ({r['device']}); vs resnet50: " + ", ".join(parts)
    if name == "inference":
        parts = [
            f"{row['model']} {row.get('torch_vs_resnet50') or 0:.2f}x/{row.get('onnx_vs_resnet50') or 0:.2f}x"
            for row in r["rows"]
            if row["model"] != "resnet50 (timm)"
        ]
        return (
            f"resnet50 {r['baseline_torch_img_s']} img/s PyTorch, {r['baseline_onnx_img_s']} ONNX; "
            "vs resnet50 (PyTorch/ONNX): " + ", ".join(parts)
        )
    if name == "catalog":
        return (
            f"catalog {r['catalog_seconds']} s vs open-every-file {r['baseline_open_every_file_seconds']} s"
        )
    if name == "bootstrap":
        return (
            f"{r['resamples']} resamples in {r['vectorised_s']:.2f} s; "
            f"{r['speedup_auroc_only']:.0f}x a per-resample sklearn loop"
        )
    return ""


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that every benchmark runs")
    parser.add_argument(
        "--device", default="cpu", help="for the loader and training benchmarks (default cpu)"
    )
    parser.add_argument("--only", nargs="+", choices=ORDER, default=list(ORDER), metavar="NAME")
    parser.add_argument("--skip", nargs="+", choices=ORDER, default=[], metavar="NAME")
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="folder of the results files (default benchmarks/results; a temporary one with --quick)",
    )
    args = parser.parse_args()
    results = args.results or (
        Path(tempfile.gettempdir()) / "cxrzoo-bench-quick" if args.quick else HERE / "results"
    )
    names = [n for n in ORDER if n in args.only and n not in args.skip]
    outcomes: list[tuple[str, str, float]] = []
    start_all = time.perf_counter()
    for name in names:
        out = results / f"{name}.json"
        cmd = command(name, args, out)
        print(f"\n{'=' * 100}\n== {name}", flush=True)
        if isinstance(cmd, str):
            print(f"   skipped: {cmd}", flush=True)
            outcomes.append((name, f"skipped: {cmd}", 0.0))
            continue
        print("   $ " + " ".join(Path(c).name if c == sys.executable else c for c in cmd), flush=True)
        start = time.perf_counter()
        try:
            rc = subprocess.run(cmd, cwd=HERE.parent, timeout=TIMEOUT_S).returncode
        except subprocess.TimeoutExpired:
            rc = -1
        seconds = time.perf_counter() - start
        if name == "catalog":
            out = HERE / "results" / "catalog.json"
        status = headline(name, out) if rc == 0 else f"FAILED (exit {rc})"
        outcomes.append((name, status, seconds))

    total = time.perf_counter() - start_all
    print(f"\n{'=' * 100}\nSummary ({total / 60:.1f} min; results in {results}):")
    for name, status, seconds in outcomes:
        print(f"  {name:<10} {seconds:6.0f} s  {status}")
    return 1 if any(s.startswith("FAILED") for _, s, _ in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
