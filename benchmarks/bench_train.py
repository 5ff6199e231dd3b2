"""Training-step throughput of every zoo model against a plain timm ResNet-50.

    .venv/bin/python benchmarks/bench_train.py                          # CPU: 64 px, batch 16
    python3 benchmarks/bench_train.py --device cuda                     # 224 px, batch 64, bf16
    python3 benchmarks/bench_train.py --device cuda --compile           # torch.compile on all

One step is what ``cxrzoo.training.Trainer`` does per batch: forward, BCE loss on the logits
(plus ``model.auxiliary_loss(targets)`` where the model returns one: rare_disease's memory
replay), backward and an AdamW step. On CUDA the forward runs under bf16 autocast and models
and inputs are channels_last, the baseline included; ``--compile`` wraps every model, the
baseline included, in ``torch.compile``. Inputs are random tensors already on the device, so
the figures are the models' own rates. Each model takes ``--warmup`` untimed steps (on CUDA at
least a second's worth), then ``--steps`` timed ones. On CUDA each model is timed as one block of
steps between two synchronisations. On the CPU, whose speed drifts with other work on the
machine, all models are built first and take their timed steps in turn, one each, and the
median step counts.

The baseline is ``timm.create_model("resnet50", num_classes=14, in_chans=3)`` at the same batch
and image size; each model's ratio to it is printed (goal: at least 0.6x). The baseline runs
first and, timed in blocks, again last (not with --compile); ratios are to the mean of its runs.
``advanced_resnet`` also runs with ``attention=False, fpn=False`` (a bare ResNet-50 feature
extractor with its head) so the cost of CBAM and the FPN shows. The ensemble has no training step of its own (its members
train), so it is not here; see bench_inference.py.

Then the input pipeline on the same device (the memory-mapped cache read by ``BatchLoader``,
``augment_report`` and normalisation by ``Preprocessing.tensor``) is timed alone and, on CUDA,
also feeding the real training step of every model ("end to end"), to tell whether it keeps up.
Results go to benchmarks/results/train.json (train_compile.json with --compile), rewritten
after every model so a run cut short keeps what it measured.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
import torch.nn.functional as F
from common import (
    CpuMonitor,
    add_common_args,
    cache_batches,
    choose_threads,
    exit_on_sigterm,
    feed_rate,
    fmt_ratio,
    median,
    print_table,
    ratio,
    report_load,
    resolve_device,
    synchronize,
    write_results,
)
from torch import nn

import cxrzoo
from cxrzoo.training.loader import ArrayData
from cxrzoo.training.trainer import autocast_for
from cxrzoo.transforms import Preprocessing

BASELINE = "resnet50 (timm)"
GOAL = 0.6
AUGMENT = "augment_report"
#: Seconds of warm-up steps on CUDA after the first step, at least.
WARMUP_CUDA_S = 1.0


def baseline_model(image_size: int) -> nn.Module:
    model = timm.create_model("resnet50", num_classes=14, in_chans=3)
    model.config = cxrzoo.ModelConfig(in_chans=3, image_size=image_size)  # for the input shape
    return model


#: Rows in the order they run: (row name, model factory given the image size).
MODELS: dict[str, Callable[[int], nn.Module]] = {
    BASELINE: baseline_model,
    "advanced_resnet": lambda s: cxrzoo.create_model("advanced_resnet", image_size=s),
    "advanced_resnet (no CBAM, no FPN)": lambda s: cxrzoo.create_model(
        "advanced_resnet", image_size=s, attention=False, fpn=False
    ),
    "chest_xray_attention": lambda s: cxrzoo.create_model("chest_xray_attention", image_size=s),
    "rare_disease": lambda s: cxrzoo.create_model("rare_disease", image_size=s),
}


class Step:
    """One training step of ``model`` as the Trainer takes it, on inputs given per call."""

    def __init__(
        self, model: nn.Module, device: torch.device, *, amp: bool, channels_last: bool, compile: bool
    ) -> None:
        self.model = model.to(device).train()
        self.device = device
        self.amp = amp
        self.channels_last = channels_last and device.type == "cuda"
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.net: Any = torch.compile(self.model) if compile else self.model
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4, weight_decay=1e-4)
        self.aux: Callable[[torch.Tensor], torch.Tensor | None] | None = getattr(
            model, "auxiliary_loss", None
        )

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast_for(self.device, self.amp):
            logits = self.net(x)
        loss = F.binary_cross_entropy_with_logits(logits.float(), y)
        if self.aux is not None:
            extra = self.aux(y)
            if extra is not None:
                loss = loss + extra
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()


def random_batch(
    batch: int, chans: int, size: int, device: torch.device, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, chans, size, size, generator=g)
    y = (torch.rand(batch, 14, generator=g) < 0.15).float()  # rare labels get positives too
    return x.to(device), y.to(device)


def warm_up(step: Step, inputs: Callable[[int], tuple[torch.Tensor, torch.Tensor]], args: Any) -> float:
    """``args.warmup`` untimed steps; seconds they took (the first autotunes cuDNN or compiles).

    On CUDA the warm-up also lasts at least ``WARMUP_CUDA_S`` after the first step, so that
    clocks and allocator have settled for every model alike.
    """
    device = step.device
    start = time.perf_counter()
    step(*inputs(0))
    synchronize(device)
    settle = time.perf_counter()
    i = 1
    while i < args.warmup or (device.type == "cuda" and time.perf_counter() - settle < WARMUP_CUDA_S):
        step(*inputs(i))
        i += 1
        if device.type == "cuda" and i % 5 == 0:
            synchronize(device)
    synchronize(device)
    return round(time.perf_counter() - start, 2)


def block_rate(
    step: Step, inputs: Callable[[int], tuple[torch.Tensor, torch.Tensor]], args: Any
) -> dict[str, Any]:
    """``args.steps`` steps timed as one block between two synchronisations (for CUDA)."""
    synchronize(step.device)
    start = time.perf_counter()
    for i in range(args.steps):
        step(*inputs(i))
    synchronize(step.device)
    per_step = (time.perf_counter() - start) / args.steps
    return {"img_s": round(args.batch_size / per_step, 1), "ms_per_step": round(per_step * 1000, 2)}


def median_rate(times: list[float], batch_size: int) -> dict[str, Any]:
    """The median of steps timed one by one (for the CPU)."""
    per_step = median(times)
    return {
        "img_s": round(batch_size / per_step, 1),
        "ms_per_step": round(per_step * 1000, 2),
        "ms_per_step_all": [round(t * 1000, 1) for t in times],
        "img_s_mean": round(batch_size * len(times) / sum(times), 1),
    }


def make_cache(folder: Path, n: int, size: int) -> ArrayData:
    """A cache-format ``images.npy`` of ``n`` random ``size`` images, opened memory-mapped as
    ``ImageCache`` does (reading speed does not depend on what the pixels show)."""
    path = folder / "images.npy"
    images = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, size, size))
    images[:] = np.random.default_rng(0).integers(0, 256, size=images.shape, dtype=np.uint8)
    images.flush()
    del images
    mapped = np.load(path, mmap_mode="r")
    labels = (np.random.default_rng(1).random((n, 14)) < 0.15).astype(np.uint8)
    return ArrayData(mapped, np.arange(n), labels, [f"{i:08d}_000.png" for i in range(n)])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_args(parser, threads=True)
    parser.add_argument(
        "--image-size", type=int, default=None, help="default 224 on CUDA, 64 on the CPU, quick 32"
    )
    parser.add_argument(
        "--batch-size", type=int, default=None, help="default 64 on CUDA, 16 on the CPU, quick 4"
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="timed steps (default 30 on CUDA, 8 on the CPU)"
    )
    parser.add_argument(
        "--warmup", type=int, default=None, help="untimed steps first (default 5 on CUDA, 2 on CPU)"
    )
    parser.add_argument(
        "--timing",
        choices=("interleaved", "block"),
        default=None,
        help="one step per model in turn (default on the CPU), or a block of steps per model (CUDA)",
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile every model, the baseline too")
    parser.add_argument("--no-amp", dest="amp", action="store_false", help="no bf16 autocast on CUDA")
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS), metavar="NAME")
    parser.add_argument(
        "--end-to-end",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also train every model fed by the cached input pipeline (default: on CUDA only)",
    )
    args = parser.parse_args()
    exit_on_sigterm()
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    args.image_size = args.image_size or (32 if args.quick else 224 if cuda else 64)
    args.batch_size = args.batch_size or (4 if args.quick else 64 if cuda else 16)
    args.steps = args.steps or (2 if args.quick else 30 if cuda else 8)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 5 if cuda else 2)
    end_to_end = cuda if args.end_to_end is None else args.end_to_end
    if BASELINE not in args.models:
        args.models.insert(0, BASELINE)
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    threads, why = (torch.get_num_threads(), "default") if cuda else choose_threads(args.threads)
    torch.set_num_threads(threads)
    # A shared CPU's speed drifts: there the models take their timed steps in turn. Timed in
    # blocks (CUDA), the baseline runs again at the end and ratios are to the mean of both runs
    # (compiled, the second run would mostly time compilation).
    interleave = args.timing == "interleaved" if args.timing else not cuda
    repeat_baseline = not interleave and not args.quick and not args.compile
    order = [*args.models, BASELINE] if repeat_baseline else list(args.models)
    name = "train_compile" if args.compile else "train"
    monitor = CpuMonitor()
    settings = {
        "device": str(device),
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "warmup_steps": args.warmup,
        "warmup_cuda_seconds_at_least": WARMUP_CUDA_S if cuda else 0,
        "timed_steps": args.steps,
        "timing": "one step per model in turn, median" if interleave else "block of steps per model",
        "amp_bf16": bool(cuda and args.amp),
        "channels_last": bool(cuda and args.channels_last),
        "compile": args.compile,
        "optimizer": "AdamW",
        "torch_threads": threads,
        "torch_threads_why": why,
        "goal_ratio": GOAL,
    }
    print(
        f"Training steps on {device}: {args.image_size} px, batch {args.batch_size}, "
        f"{args.warmup} warm-up + {args.steps} timed steps"
        + (", bf16 autocast" if settings["amp_bf16"] else "")
        + (", channels_last" if settings["channels_last"] else "")
        + (", torch.compile" if args.compile else "")
        + ("" if cuda else f"; {threads} CPU thread(s): {why}"),
        flush=True,
    )

    scratch = tempfile.TemporaryDirectory(prefix="cxrzoo-bench-train-")
    n_cache = max(8 * args.batch_size, 64)
    data = make_cache(Path(scratch.name), n_cache, args.image_size)
    pipelines: dict[tuple[Any, ...], dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []

    def figures() -> dict[str, Any]:
        base = [r["img_s"] for r in rows if r["model"] == BASELINE and "img_s" in r]
        base_img_s = float(np.mean(base)) if base else None
        for r in rows:
            r["vs_resnet50"] = ratio(r.get("img_s"), base_img_s) if r["model"] != BASELINE else None
            if "img_s" in r and r["model"] != BASELINE:
                r["meets_goal"] = bool(r["vs_resnet50"] is not None and r["vs_resnet50"] >= GOAL)
            if "pipeline_img_s" in r and "img_s" in r:
                r["pipeline_keeps_up"] = r["pipeline_img_s"] >= r["img_s"]
        return {
            **settings,
            "baseline_img_s": None if base_img_s is None else round(base_img_s, 1),
            "baseline_img_s_runs": base,
            "rows": rows,
            "pipeline": list(pipelines.values()),
        }

    def save() -> Path:
        return write_results(name, figures(), out=args.out, quick=args.quick, device=device, monitor=monitor)

    def finish(row: dict[str, Any], step: Step, prep: Preprocessing) -> None:
        """The input pipeline's rate alone and, if asked, feeding this model's training step."""
        key = (prep.specs, prep.in_chans, prep.image_size)
        if key not in pipelines:
            rate = feed_rate(
                cache_batches(data, args.batch_size, device),
                prep,
                device=device,
                epochs=2 if not args.quick else 1,
                min_seconds=0.0 if args.quick else 1.0,
                augment=True,
            )
            pipelines[key] = {"preprocessing": list(prep.specs), "in_chans": prep.in_chans, **rate}
        row["pipeline_img_s"] = pipelines[key]["img_s"]
        if end_to_end:
            row["end_to_end_img_s"] = end_to_end_rate(step, data, prep, args)

    def failed(row: dict[str, Any], exc: Exception) -> None:
        row["error"] = f"{type(exc).__name__}: {exc}"[:500]
        print(f" failed: {row['error']}", flush=True)

    # On the CPU every model is built and warmed up first, then the models take one timed step
    # each in turn, so that other work on the machine slows them all alike. On CUDA each model is
    # timed as a block of steps and freed before the next.
    live: dict[int, tuple[Step, Callable[[int], tuple[torch.Tensor, torch.Tensor]], Preprocessing]] = {}
    for index, row_name in enumerate(order):
        print(f"  {row_name} …", end="", flush=True)
        row: dict[str, Any] = {"model": row_name}
        rows.append(row)
        model = step = None
        try:
            model = MODELS[row_name](args.image_size)
            chans = model.config.in_chans
            row["params_m"] = round(sum(p.numel() for p in model.parameters()) / 1e6, 2)
            row["in_chans"] = chans
            step = Step(model, device, amp=args.amp, channels_last=args.channels_last, compile=args.compile)
            batches = [
                random_batch(args.batch_size, chans, args.image_size, device, seed=i) for i in range(4)
            ]

            def inputs(i: int, b: list = batches) -> tuple[torch.Tensor, torch.Tensor]:
                return b[i % len(b)]

            if cuda:
                torch.cuda.reset_peak_memory_stats(device)
            row["warmup_seconds"] = warm_up(step, inputs, args)
            prep = Preprocessing.from_config(model.config, augment=AUGMENT)
            if interleave:
                live[index] = (step, inputs, prep)
                print(" warmed up", flush=True)
                continue
            row.update(block_rate(step, inputs, args))
            if cuda:
                row["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
            finish(row, step, prep)
            print(f" {row['img_s']:,.1f} img/s", flush=True)
        except Exception as exc:  # one model failing (memory, compile) must not lose the others
            failed(row, exc)
        finally:
            if not interleave:
                model = step = None
                gc.collect()
                if cuda:
                    torch.cuda.empty_cache()
            save()

    if live:
        print(f"  timing {args.steps} rounds of one step per model …", flush=True)
        times: dict[int, list[float]] = {i: [] for i in live}
        for s in range(args.steps):
            for i, (step, inputs, _) in live.items():
                start = time.perf_counter()
                step(*inputs(s))
                times[i].append(time.perf_counter() - start)
        for i, (step, _, prep) in live.items():
            rows[i].update(median_rate(times[i], args.batch_size))
            try:
                finish(rows[i], step, prep)
            except Exception as exc:
                failed(rows[i], exc)
        live.clear()
        save()

    result = figures()
    print(
        f"\nimg/s per model, {args.image_size} px, batch {args.batch_size}; "
        f"ratio to {BASELINE} (goal >= {GOAL}x):"
    )
    columns = [
        ("model", "model"),
        ("params_m", "params (M)"),
        ("ms_per_step", "ms/step"),
        ("img_s", "img/s"),
        ("vs_resnet50", "vs resnet50"),
        ("meets_goal", f">= {GOAL}x"),
        ("pipeline_img_s", "pipeline img/s"),
        ("pipeline_keeps_up", "keeps up"),
    ]
    if end_to_end:
        columns.append(("end_to_end_img_s", "end to end img/s"))
    if cuda:
        columns.append(("peak_memory_gib", "peak GiB"))
    print_table(rows, columns)
    if repeat_baseline:
        print(
            f"  baseline runs (first, last): {', '.join(f'{v:.1f}' for v in result['baseline_img_s_runs'])} img/s"
        )
    for r in rows:
        if "error" in r:
            print(f"  {r['model']}: {r['error']}")
    ablation = next((r for r in rows if r["model"].startswith("advanced_resnet (") and "img_s" in r), None)
    full = next((r for r in rows if r["model"] == "advanced_resnet" and "img_s" in r), None)
    if ablation and full:
        print(
            f"  CBAM + FPN cost advanced_resnet {1 - full['img_s'] / ablation['img_s']:.0%} of its "
            f"throughput ({fmt_ratio(ratio(full['img_s'], ablation['img_s']))} of the ablation)"
        )
    report_load(monitor)
    print(f"wrote {save()}")
    scratch.cleanup()
    return 0


def end_to_end_rate(step: Step, data: ArrayData, prep: Preprocessing, args: Any) -> float:
    """img/s of the training step fed by the cache, BatchLoader and the augmentation."""
    device = step.device
    batches = cache_batches(data, args.batch_size, device)
    generator = torch.Generator().manual_seed(0)
    done = 0
    epoch = 0
    start = None
    while done < args.steps * args.batch_size:
        for x, y in batches(epoch):
            if len(x) < args.batch_size:
                continue
            x = prep.tensor(x, train=True, generator=generator)
            step(x, y)
            if start is None:  # the first batch warms up the loader
                synchronize(device)
                start = time.perf_counter()
                continue
            done += len(x)
            if done >= args.steps * args.batch_size:
                break
        epoch += 1
    synchronize(device)
    assert start is not None
    return round(done / (time.perf_counter() - start), 1)


if __name__ == "__main__":
    sys.exit(main())
