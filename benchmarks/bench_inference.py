"""CPU inference throughput of every zoo model, PyTorch against onnxruntime, beside a ResNet-50.

    .venv/bin/python benchmarks/bench_inference.py            # 224 px, batch 16
    .venv/bin/python benchmarks/bench_inference.py --quick    # 64 px, batch 2

For each model (untrained weights: the speed does not depend on them):

  - PyTorch: ``model.eval()`` under ``torch.inference_mode()``, ``--threads`` intra-op threads;
  - onnxruntime: the model exported by ``cxrzoo.export.export_onnx`` (which also checks that
    onnxruntime's logits agree with PyTorch's) to a temporary folder, run by the
    CPUExecutionProvider with the same number of intra-op threads.

Inputs are preprocessed float batches ``[batch, in_chans, size, size]``. The baseline is a plain
``timm.create_model("resnet50", num_classes=14, in_chans=3)``, exported the same way; each model's
ratio to it is printed for each runtime (goal: chest_xray_attention, the model for weak
hardware, at least as fast as the ResNet-50). The ensemble is built from its three default
members, untrained, and runs all three per image. Every model is built, exported and warmed up
(``--warmup`` batches) first; then ``--repeat`` rounds each time one batch of every model on each
runtime in turn, so that other work on the machine slows them all alike, and the median of each
counts. Results go to benchmarks/results/inference.json.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
from common import (
    CpuMonitor,
    add_common_args,
    choose_threads,
    exit_on_sigterm,
    fmt_ratio,
    median,
    print_table,
    ratio,
    report_load,
    time_repeats,
    write_results,
)
from torch import nn

import cxrzoo
from cxrzoo.export import ExportError, export_onnx

BASELINE = "resnet50 (timm)"
GOAL_MODEL = "chest_xray_attention"


def _ensemble(size: int) -> nn.Module:
    members = [
        cxrzoo.create_model(name, image_size=size)
        for name in ("advanced_resnet", "chest_xray_attention", "rare_disease")
    ]
    return cxrzoo.create_model("ensemble", members=members)


MODELS: dict[str, Callable[[int], nn.Module]] = {
    BASELINE: lambda s: timm.create_model("resnet50", num_classes=14, in_chans=3),
    "advanced_resnet": lambda s: cxrzoo.create_model("advanced_resnet", image_size=s),
    "chest_xray_attention": lambda s: cxrzoo.create_model("chest_xray_attention", image_size=s),
    "rare_disease": lambda s: cxrzoo.create_model("rare_disease", image_size=s),
    "ensemble": _ensemble,
}


def in_chans_of(model: nn.Module) -> int:
    config = getattr(model, "config", None)
    return int(config.in_chans) if config is not None else 3


def export(model: nn.Module, path: Path, *, in_chans: int, size: int) -> dict[str, Any]:
    """ONNX file of ``model``: ``export_onnx`` for a zoo model, the same settings for the baseline."""
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        warnings.simplefilter("ignore")
        if isinstance(model, cxrzoo.ZooModel):
            try:
                return export_onnx(model, path)
            except ExportError as exc:  # the file is written; its check failed
                return {"path": str(path), "check_failed": str(exc)}
        torch.onnx.export(
            model.eval(),
            (torch.randn(2, in_chans, size, size),),
            str(path),
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
        return {"path": str(path)}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_args(parser, device=False, threads=True)
    parser.add_argument("--image-size", type=int, default=None, help="default 224, quick 64")
    parser.add_argument("--batch-size", type=int, default=None, help="default 16, quick 2")
    parser.add_argument("--repeat", type=int, default=None, help="timed rounds (default 5, quick 2)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed batches first (default 1)")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS), metavar="NAME")
    parser.add_argument("--no-onnx", dest="onnx", action="store_false", help="PyTorch only")
    args = parser.parse_args()
    exit_on_sigterm()
    size = args.image_size or (64 if args.quick else 224)
    batch = args.batch_size or (2 if args.quick else 16)
    repeat = args.repeat or (2 if args.quick else 5)
    if BASELINE not in args.models:
        args.models.insert(0, BASELINE)
    threads, why = choose_threads(args.threads)
    torch.set_num_threads(threads)
    monitor = CpuMonitor()
    ort = None
    if args.onnx:
        try:
            import onnxruntime as ort
        except ImportError:
            print("onnxruntime is not installed: PyTorch only (pip install 'cxrzoo[onnx]')")
    print(
        f"CPU inference: {size} px, batch {batch}, {args.warmup} warm-up + {repeat} timed batches; "
        f"{threads} thread(s): {why}",
        flush=True,
    )

    # Every model (and its onnxruntime session) is built and warmed up first; then each timed
    # round runs one batch of every model on each runtime in turn, so that other work on the
    # machine slows them all alike.
    rows: list[dict[str, Any]] = []
    runners: list[tuple[dict[str, Any], str, Callable[[], Any]]] = []
    scratch = tempfile.TemporaryDirectory(prefix="cxrzoo-bench-inference-")
    for name in args.models:
        row: dict[str, Any] = {"model": name}
        rows.append(row)
        print(f"  {name} …", end="", flush=True)
        try:
            model = MODELS[name](size).eval()
            chans = in_chans_of(model)
            row["params_m"] = round(sum(p.numel() for p in model.parameters()) / 1e6, 2)
            row["in_chans"] = chans
            x = torch.randn(batch, chans, size, size, generator=torch.Generator().manual_seed(0))

            def forward(m: nn.Module = model, x: torch.Tensor = x) -> None:
                with torch.inference_mode():
                    m(x)

            time_repeats(forward, warmup=args.warmup, repeat=0)
            runners.append((row, "torch", forward))
            print(" PyTorch", end="", flush=True)
            if ort is not None:
                path = Path(scratch.name) / f"{name.split()[0]}.onnx"
                start = time.perf_counter()
                info = export(model, path, in_chans=chans, size=size)
                row["onnx_export_seconds"] = round(time.perf_counter() - start, 1)
                if "max_abs_diff" in info:
                    row["onnx_max_abs_diff"] = info["max_abs_diff"]
                if "check_failed" in info:
                    row["onnx_check_failed"] = info["check_failed"]
                options = ort.SessionOptions()
                options.intra_op_num_threads = threads
                options.inter_op_num_threads = 1
                options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

                feed = {"image": x.numpy()}

                def run(s: Any = session, feed: dict[str, np.ndarray] = feed) -> None:
                    s.run(None, feed)

                time_repeats(run, warmup=args.warmup, repeat=0)
                runners.append((row, "onnx", run))
                print(", onnxruntime", end="", flush=True)
            print(": ready", flush=True)
        except Exception as exc:  # one model failing to export must not lose the others
            row["error"] = f"{type(exc).__name__}: {exc}"[:500]
            print(f" failed: {row['error']}", flush=True)

    print(f"  timing {repeat} rounds of one batch per model and runtime …", flush=True)
    times: list[list[float]] = [[] for _ in runners]
    for _ in range(repeat):
        for i, (_, _, fn) in enumerate(runners):
            times[i] += time_repeats(fn, warmup=0, repeat=1)
    for (row, kind, _), t in zip(runners, times):
        row[f"{kind}_img_s"] = round(batch / median(t), 1)
        row[f"{kind}_ms_per_batch_all"] = [round(v * 1000, 1) for v in t]
    for row in rows:
        row["onnx_vs_torch"] = ratio(row.get("onnx_img_s"), row.get("torch_img_s"))
    runners.clear()
    gc.collect()

    base_row = next(r for r in rows if r["model"] == BASELINE)
    base_torch, base_onnx = base_row.get("torch_img_s"), base_row.get("onnx_img_s")
    for r in rows:
        if r["model"] != BASELINE:
            r["torch_vs_resnet50"] = ratio(r.get("torch_img_s"), base_torch)
            r["onnx_vs_resnet50"] = ratio(r.get("onnx_img_s"), base_onnx)
    goal_row = next((r for r in rows if r["model"] == GOAL_MODEL), None)
    goal = None
    if goal_row is not None:
        checks = [goal_row.get(k) for k in ("torch_vs_resnet50", "onnx_vs_resnet50")]
        measured = [c for c in checks if c is not None]
        goal = bool(measured) and all(c >= 1.0 for c in measured)

    print(
        f"\nimg/s, {size} px, batch {batch}, {threads} thread(s); ratios to {BASELINE} on the same runtime:"
    )
    print_table(
        rows,
        [
            ("model", "model"),
            ("params_m", "params (M)"),
            ("torch_img_s", "PyTorch img/s"),
            ("torch_vs_resnet50", "vs resnet50"),
            ("onnx_img_s", "ONNX img/s"),
            ("onnx_vs_resnet50", "vs resnet50"),
            ("onnx_vs_torch", "ONNX/PyTorch"),
        ],
    )
    if goal_row is not None:
        print(
            f"  {GOAL_MODEL} vs resnet50: PyTorch {fmt_ratio(goal_row.get('torch_vs_resnet50'))}, "
            f"onnxruntime {fmt_ratio(goal_row.get('onnx_vs_resnet50'))}: goal (>= 1x) "
            + ("met" if goal else "NOT met")
        )
    for r in rows:
        for key in ("error", "onnx_check_failed"):
            if key in r:
                print(f"  {r['model']}: {r[key]}")
    report_load(monitor)

    figures = {
        "image_size": size,
        "batch_size": batch,
        "warmup_batches": args.warmup,
        "timed_batches": repeat,
        "threads": threads,
        "threads_why": why,
        "onnxruntime": None if ort is None else ort.__version__,
        "baseline_torch_img_s": base_torch,
        "baseline_onnx_img_s": base_onnx,
        "goal_model": GOAL_MODEL,
        "goal_met": goal,
        "rows": rows,
    }
    path = write_results("inference", figures, out=args.out, quick=args.quick, device="cpu", monitor=monitor)
    scratch.cleanup()
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
