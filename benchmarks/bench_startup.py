"""How long the describing commands take to answer, beside Python's and torch's own start.

    .venv/bin/python benchmarks/bench_startup.py              # best of 5 of each command
    .venv/bin/python benchmarks/bench_startup.py --quick      # best of 2, results to a temp folder

Each command runs in a fresh process (the ``cxrzoo`` console script beside this Python), as a
user types it, with an empty ``CXRZOO_HOME``. Baselines measured in the same run: ``python -c
pass`` (the interpreter alone) and ``python -c "import torch"`` (what every command paid before
models were registered lazily). One more row imports every registered model, transform and
metric, the work that registration used to do up front. Results: the table on stdout and
``benchmarks/results/startup.json`` and ``startup.md``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import (
    CpuMonitor,
    add_common_args,
    default_out,
    exit_on_sigterm,
    fmt_ratio,
    print_table,
    ratio,
    report_load,
    write_results,
)

EAGER = (
    "import cxrzoo\n"
    "from cxrzoo import plugins\n"
    "for registry in plugins.REGISTRIES.values():\n"
    "    for name in registry.names():\n"
    "        registry.get(name)\n"
)


def cxrzoo_command() -> list[str]:
    """The console script installed beside this Python, else ``python -m cxrzoo``."""
    script = Path(sys.executable).with_name("cxrzoo")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "cxrzoo"]


def commands() -> list[tuple[str, list[str]]]:
    cli = cxrzoo_command()
    return [
        ("python -c pass", [sys.executable, "-c", "pass"]),
        ('python -c "import torch"', [sys.executable, "-c", "import torch"]),
        ("cxrzoo list", [*cli, "list"]),
        ("cxrzoo plugins", [*cli, "plugins"]),
        ("cxrzoo info rare_disease", [*cli, "info", "rare_disease"]),
        ("import every registered object", [sys.executable, "-c", EAGER]),
    ]


def time_command(argv: list[str], env: dict[str, str], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return times


def markdown(rows: list[dict[str, Any]], repeat: int, monitor: dict[str, Any]) -> str:
    lines = [
        "# Start-up time of the describing commands",
        "",
        f"Best of {repeat} runs in a fresh process each (median beside it), measured by "
        "`benchmarks/bench_startup.py`. `vs python` is the ratio to the interpreter alone; "
        '`vs torch` to `python -c "import torch"`, which every command paid before models '
        "were registered lazily.",
        "",
        "| Command | Best (s) | Median (s) | vs python | vs torch |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['command']}` | {r['best_s']:.3f} | {r['median_s']:.3f} | "
            f"{fmt_ratio(r['vs_python'])} | {fmt_ratio(r['vs_import_torch'])} |"
        )
    share = monitor.get("other_processes_cpu_share")
    lines += [
        "",
        f"Other processes used {'?' if share is None else f'{share:.0%}'} of the CPU time during the run"
        + (
            " (shared machine: absolute times are high, ratios still hold)."
            if monitor.get("cpu_shared")
            else "."
        ),
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_args(parser, device=False)
    parser.add_argument(
        "--repeat", type=int, default=None, help="runs of each command (default 5; 2 with --quick)"
    )
    args = parser.parse_args()
    exit_on_sigterm()
    repeat = args.repeat or (2 if args.quick else 5)
    home = Path(tempfile.mkdtemp(prefix="cxrzoo-bench-startup-"))
    env = {**os.environ, "CXRZOO_HOME": str(home), "OMP_NUM_THREADS": "1"}
    monitor = CpuMonitor()
    rows: list[dict[str, Any]] = []
    try:
        # One untimed run of each, so that every command meets a warm file-system cache.
        for _, argv in commands():
            time_command(argv, env, 1)
        for label, argv in commands():
            times = time_command(argv, env, repeat)
            rows.append(
                {
                    "command": label,
                    "best_s": round(min(times), 4),
                    "median_s": round(statistics.median(times), 4),
                    "times_s": [round(t, 4) for t in times],
                }
            )
            print(f"  {label:<34} best {min(times):.3f} s", flush=True)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    python = rows[0]["best_s"]
    torch = rows[1]["best_s"]
    for r in rows:
        r["vs_python"] = ratio(r["best_s"], python)
        r["vs_import_torch"] = ratio(r["best_s"], torch)
    print()
    print_table(
        rows,
        [
            ("command", "command"),
            ("best_s", "best s"),
            ("median_s", "median s"),
            ("vs_python", "vs python"),
            ("vs_import_torch", "vs torch"),
        ],
    )
    report_load(monitor)
    summary = monitor.summary()
    out = args.out if args.out is not None else default_out("startup", args.quick)
    path = write_results(
        "startup", {"repeat": repeat, "rows": rows}, out=out, quick=args.quick, monitor=monitor
    )
    path.with_suffix(".md").write_text(markdown(rows, repeat, summary))
    print(f"\nWrote {path} and {path.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
