"""Step time alone and beside a busy process, with PyTorch's OpenMP defaults and with cxrzoo's
thread settings (cxrzoo/threads.py).

    .venv/bin/python benchmarks/bench_contention.py            # about 2 minutes on 2 CPUs
    .venv/bin/python benchmarks/bench_contention.py --quick

Two steps of ``chest_xray_attention`` in its tiny configuration (``test_resnet`` backbone):

- ``train``: forward, BCE, backward and AdamW on a batch of 16 at 64 px;
- ``predict``: a no-grad forward of a batch of 32 at 128 px.

Each is timed in a fresh subprocess (OpenMP reads its settings when PyTorch loads it) in two
settings:

- ``before``: PyTorch's defaults: one OpenMP thread per CPU, GNU OpenMP's default wait policy
  (threads spin for a while before they sleep), ``CXRZOO_THREADS=off``;
- ``after``: cxrzoo's: ``OMP_WAIT_POLICY=PASSIVE`` and as many threads as the CPUs that other
  processes leave idle (measured when PyTorch is first used, as ``cxrzoo.load`` does);

once alone and once beside a busy process: a second Python process running a torch matmul loop
(``--busy-threads`` threads, default 1, with OpenMP's defaults). The figure is the median step
time beside the busy process divided by the median alone. Results go to
benchmarks/results/contention.json and contention.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import (
    RESULTS_DIR,
    CpuMonitor,
    add_common_args,
    exit_on_sigterm,
    processor_name,
    report_load,
    write_results,
)

SETTINGS = ("before", "after")
STEPS = ("train", "predict")
OMP_KEYS = (
    "OMP_WAIT_POLICY",
    "KMP_BLOCKTIME",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "CXRZOO_THREADS",
    "GOMP_SPINCOUNT",
)

BUSY = (
    "import torch, sys\n"
    "torch.set_num_threads(int(sys.argv[1]))\n"
    "a = torch.randn(384, 384)\n"
    "print('ready', flush=True)\n"
    "while True:\n"
    "    a = torch.tanh(a @ a)\n"
)


def child(step: str, seconds: float, min_steps: int) -> None:
    import torch

    import cxrzoo

    settings = cxrzoo.threads.configure_threads()  # what cxrzoo.load and the inference layer do
    from cxrzoo.plugins import models

    torch.manual_seed(0)
    size, batch = (64, 16) if step == "train" else (128, 32)
    config = models.get("chest_xray_attention").tiny_config().replace(image_size=size)
    model = cxrzoo.create_model("chest_xray_attention", config)
    x = torch.randn(batch, 1, size, size)
    y = (torch.rand(batch, len(model.labels)) < 0.3).float()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def run() -> None:
        if step == "train":
            model.train()
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
            loss.backward()
            opt.step()
        else:
            model.eval()
            with torch.no_grad():
                model(x)

    for _ in range(2):
        run()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_steps or time.perf_counter() - start < seconds:
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
        if time.perf_counter() - start > 4 * seconds:  # a very slow setting: enough
            break
    print(
        json.dumps(
            {
                "median_s": statistics.median(times),
                "steps": len(times),
                "threads": torch.get_num_threads(),
                "wait_policy": os.environ.get("OMP_WAIT_POLICY") or "(GNU OpenMP default)",
                "reason": settings.reason,
            }
        )
    )


def measure(step: str, setting: str, seconds: float, min_steps: int) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in OMP_KEYS}
    if setting == "before":
        env["CXRZOO_THREADS"] = "off"
    cmd = [
        sys.executable,
        __file__,
        "--child",
        step,
        "--seconds",
        str(seconds),
        "--min-steps",
        str(min_steps),
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise SystemExit(f"{step}/{setting} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def start_busy(threads: int) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in OMP_KEYS}
    proc = subprocess.Popen(
        [sys.executable, "-c", BUSY, str(threads)], env=env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    proc.stdout.readline()  # 'ready': the loop is running
    time.sleep(0.5)
    return proc


def write_markdown(path: Path, figures: dict[str, Any]) -> None:
    load = figures["cpu_load_summary"]
    lines = [
        "# Step time beside a busy process: PyTorch's OpenMP defaults vs cxrzoo's thread settings",
        "",
        f"`python benchmarks/bench_contention.py` on {figures['machine']}; chest_xray_attention tiny "
        f"config; busy neighbour: a Python process looping torch matmuls on {figures['busy_threads']} "
        f"thread(s). Slowdown = median step time beside the busy process / alone (same setting).",
        "",
        "| step | setting | threads (alone / beside) | alone (ms) | beside (ms) | slowdown | beside / best alone |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in figures["rows"]:
        lines.append(
            f"| {r['step']} | {r['setting']} | {r['threads_alone']} / {r['threads_beside']} | "
            f"{r['alone_ms']:.1f} | {r['beside_ms']:.1f} | {r['slowdown']:.2f}x | "
            f"{r['beside_vs_best_alone']:.2f}x |"
        )
    lines += [
        "",
        "- before: PyTorch's defaults (one OpenMP thread per CPU, GNU OpenMP's default wait "
        "policy), `CXRZOO_THREADS=off`.",
        "- after: `OMP_WAIT_POLICY=PASSIVE`, `KMP_BLOCKTIME=0`, and PyTorch threads = the usable "
        "CPUs that other processes leave idle, measured when PyTorch is first used "
        "(`cxrzoo.threads.configure_threads`).",
        "",
        f"The machine was shared with other work during the run: other processes (the busy "
        f"neighbour included) used {load.get('other_processes_cpu_share')} of all CPU time, load "
        f"average {load.get('load_average_1m_before')} before. 'Alone' therefore means 'without "
        f"the benchmark's own neighbour', not on an idle machine.",
    ]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_args(parser, device=False)
    parser.add_argument("--seconds", type=float, default=None, help="timing per measurement (default 5)")
    parser.add_argument("--min-steps", type=int, default=3)
    parser.add_argument("--busy-threads", type=int, default=1)
    parser.add_argument("--child", choices=STEPS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    seconds = args.seconds or (1.0 if args.quick else 5.0)
    if args.child:
        child(args.child, seconds, args.min_steps)
        return
    exit_on_sigterm()
    monitor = CpuMonitor()
    results: dict[tuple[str, str, str], dict[str, Any]] = {}
    for step in STEPS:
        for setting in SETTINGS:
            results[step, setting, "alone"] = measure(step, setting, seconds, args.min_steps)
        busy = start_busy(args.busy_threads)
        try:
            for setting in SETTINGS:
                results[step, setting, "beside"] = measure(step, setting, seconds, args.min_steps)
        finally:
            busy.terminate()
            busy.wait()
    rows = []
    best_alone = {
        step: min(results[step, setting, "alone"]["median_s"] for setting in SETTINGS) for step in STEPS
    }
    for step in STEPS:
        for setting in SETTINGS:
            alone, beside = results[step, setting, "alone"], results[step, setting, "beside"]
            row = {
                "step": step,
                "setting": setting,
                "threads_alone": alone["threads"],
                "threads_beside": beside["threads"],
                "wait_policy": alone["wait_policy"],
                "alone_ms": round(alone["median_s"] * 1000, 2),
                "beside_ms": round(beside["median_s"] * 1000, 2),
                "slowdown": round(beside["median_s"] / alone["median_s"], 2),
                # Beside the neighbour against the faster setting alone: what the neighbour costs
                # a user who would otherwise run with the better settings.
                "beside_vs_best_alone": round(beside["median_s"] / best_alone[step], 2),
                "steps": [alone["steps"], beside["steps"]],
                "reason": [alone["reason"], beside["reason"]],
            }
            rows.append(row)
            print(
                f"  {step:<8} {setting:<7} threads {row['threads_alone']}/{row['threads_beside']}  "
                f"alone {row['alone_ms']:8.1f} ms  beside {row['beside_ms']:8.1f} ms  {row['slowdown']:6.2f}x"
            )
    report_load(monitor)
    figures = {
        "machine": f"{processor_name()}, {len(os.sched_getaffinity(0))} usable CPUs",
        "busy_threads": args.busy_threads,
        "seconds_per_measurement": seconds,
        "rows": rows,
        "cpu_load_summary": monitor.summary(),
    }
    path = write_results("contention", figures, out=args.out, quick=args.quick, monitor=monitor)
    md = path.with_suffix(".md") if args.out or args.quick else RESULTS_DIR / "contention.md"
    write_markdown(md, figures)
    print(f"results: {path}, {md}")


if __name__ == "__main__":
    main()
