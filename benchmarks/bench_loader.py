"""Training input throughput: batches from the preprocessing cache against decoding every epoch.

    .venv/bin/python benchmarks/bench_loader.py                       # CPU, 300 PNGs of 512 px
    python3 benchmarks/bench_loader.py --device cuda --images 2000    # on a GPU machine

Writes ``--images`` synthetic PNGs of ``--source-size`` and feeds ``--image-size`` batches, with
the training augmentation (``augment_report``) and normalisation run on ``--device``, two ways:

  (a) the baseline, decoding every epoch: a ``torch.utils.data.DataLoader`` with one worker
      process per CPU whose dataset reads each PNG (``read_image``), runs the image steps
      (``Preprocessing.image``: CLAHE, resize) and returns a tensor; batches then go to the
      device (pinned on CUDA) for ``Preprocessing.tensor(train=True)``;
  (b) cxrzoo's way: the cache built once by ``build_cache`` (memory-mapped uint8), read by
      ``BatchLoader`` (a prefetching thread, pinned memory on CUDA), then the same tensor steps.

Also shown: (b) without the augmentation, the rate of ``BatchLoader`` alone. An epoch here makes
enough passes over the images to hold ``--round-images`` (a DataLoader's workers start decoding
only when an epoch starts, a delay a short epoch would mostly time). The first epoch of each is
a warm-up. Then the three take timed epochs in turn, one each per round, so that other work on
the machine slows them alike (at least ``--epochs`` rounds, more until they have run for
``--min-seconds`` together), the device synchronised after every epoch. Results go to
benchmarks/results/loader.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from common import (
    CpuMonitor,
    Feed,
    add_common_args,
    cache_batches,
    choose_threads,
    exit_on_sigterm,
    feed_rates,
    fmt_ratio,
    print_table,
    ratio,
    report_load,
    resolve_device,
    synchronize,
    write_phantom_pngs,
    write_results,
)

from cxrzoo.config import DEFAULT_PREPROCESSING
from cxrzoo.data.cache import build_cache
from cxrzoo.data.io import read_image
from cxrzoo.training.loader import ArrayData
from cxrzoo.transforms import Preprocessing

AUGMENT = "augment_report"


class DecodingDataset(torch.utils.data.Dataset):
    """One PNG per item, decoded and run through the image steps every time it is read."""

    def __init__(self, paths: list[str], labels: np.ndarray, prep: Preprocessing) -> None:
        self.paths = paths
        self.labels = labels.astype(np.float32)
        self.prep = prep

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = self.prep.image(read_image(self.paths[i]), name=os.path.basename(self.paths[i]))
        return torch.from_numpy(img), torch.from_numpy(self.labels[i])


def _one_opencv_thread(_: int) -> None:
    # Each worker process is one decoder; OpenCV's own threads would only oversubscribe the CPUs.
    cv2.setNumThreads(1)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_args(parser, threads=True)
    parser.add_argument("--images", type=int, default=None, help="PNG files (default 300, quick 32)")
    parser.add_argument(
        "--source-size", type=int, default=None, help="side of the PNGs (default 512, quick 256)"
    )
    parser.add_argument("--image-size", type=int, default=224, help="side of the model input (default 224)")
    parser.add_argument("--in-chans", type=int, default=1, choices=(1, 3))
    parser.add_argument("--batch-size", type=int, default=None, help="default 64, quick 16")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count(), help="DataLoader workers of (a) (default: CPUs)"
    )
    parser.add_argument("--epochs", type=int, default=None, help="timed epochs at least (default 2, quick 1)")
    parser.add_argument("--min-seconds", type=float, default=None, help="timed seconds at least (default 3)")
    parser.add_argument(
        "--round-images",
        type=int,
        default=None,
        help="images per timed epoch, in passes over the data (default 1000 on the CPU, 8000 on CUDA)",
    )
    parser.add_argument(
        "--data", type=Path, default=None, help="keep (or reuse) the PNG files in this folder"
    )
    args = parser.parse_args()
    exit_on_sigterm()
    device = resolve_device(args.device)
    n = args.images or (32 if args.quick else 300)
    source_size = args.source_size or (256 if args.quick else 512)
    batch_size = args.batch_size or (16 if args.quick else 64)
    epochs = args.epochs or (1 if args.quick else 2)
    min_seconds = args.min_seconds if args.min_seconds is not None else (0.0 if args.quick else 3.0)
    workers = max(0, args.workers or 0)
    round_images = (
        args.round_images if args.round_images is not None else (8000 if device.type == "cuda" else 1000)
    )
    passes = 1 if args.quick else max(1, -(-round_images // n))
    threads, why = (
        choose_threads(args.threads) if device.type == "cpu" else (torch.get_num_threads(), "default")
    )
    torch.set_num_threads(threads)
    monitor = CpuMonitor()

    prep = Preprocessing(
        DEFAULT_PREPROCESSING, image_size=args.image_size, in_chans=args.in_chans, augment=AUGMENT
    )
    scratch = Path(tempfile.mkdtemp(prefix="cxrzoo-bench-loader-"))
    folder = args.data if args.data is not None else scratch / "images"
    try:
        print(f"Writing {n} synthetic {source_size} x {source_size} PNGs to {folder} …", flush=True)
        table, labels, gen_s = write_phantom_pngs(folder, n, size=source_size)
        print(f"  {gen_s:.1f} s")
        paths = table["path"].tolist()

        dataset = DecodingDataset(paths, labels, prep)
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=torch.utils.data.RandomSampler(
                dataset, num_samples=passes * n, generator=torch.Generator().manual_seed(0)
            ),
            num_workers=workers,
            pin_memory=device.type == "cuda",
            persistent_workers=workers > 0,
            worker_init_fn=_one_opencv_thread if workers > 0 else None,
        )
        decode_feed = Feed(lambda _epoch: loader, prep, device=device, augment=True)
        print(f"(a) decode each epoch, DataLoader with {workers} workers: warm-up epoch …", flush=True)
        decode_feed()  # forks the worker processes, before this process has run OpenCV's threads
        synchronize(device)

        start = time.perf_counter()
        cache = build_cache(table, prep, cache_dir=scratch / "cache", progress=False)
        build_s = time.perf_counter() - start
        data = ArrayData(cache.images, cache.indices(table["image"]), labels, list(table["image"]))
        cached_batches = cache_batches(data, batch_size, device, passes=passes)
        feeds = {
            "decode": decode_feed,
            "cached": Feed(cached_batches, prep, device=device, augment=True),
            "cached_raw": Feed(cached_batches, prep, device=device, augment=False),
        }
        for feed in list(feeds.values())[1:]:
            feed()  # warm-up epoch
        print("(a), (b) and (b) without augmentation, one epoch each in turn …", flush=True)
        rates = feed_rates(feeds, epochs=epochs, min_seconds=min_seconds, warm=False)
        decode, cached, cached_raw = rates["decode"], rates["cached"], rates["cached_raw"]
        feeds.clear()
        loader = None  # ends the worker processes
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    speedup = ratio(cached["img_s"], decode["img_s"])
    rows = [
        {"way": f"(a) baseline: decode each epoch, {workers} workers, augment", **decode, "vs_a": 1.0},
        {"way": "(b) cache + BatchLoader, augment", **cached, "vs_a": speedup},
        {
            "way": "    cache + BatchLoader, no augmentation",
            **cached_raw,
            "vs_a": ratio(cached_raw["img_s"], decode["img_s"]),
        },
    ]
    print(
        f"\n{n} images {source_size} px -> {args.image_size} px ({passes} passes an epoch), batch {batch_size}, "
        f"{AUGMENT} + {', '.join(prep.tensor_specs)} on {device}"
        + (f" ({threads} PyTorch thread(s): {why})" if device.type == "cpu" else "")
        + ":"
    )
    print_table(
        rows,
        [
            ("way", "input pipeline"),
            ("epochs", "epochs"),
            ("seconds", "s"),
            ("img_s", "img/s"),
            ("vs_a", "vs (a)"),
        ],
    )
    print(f"  cached / decode-each-epoch: {fmt_ratio(speedup)}  (cache built once in {build_s:.1f} s)")
    report_load(monitor)

    figures = {
        "device": str(device),
        "images": n,
        "source_size": source_size,
        "image_size": args.image_size,
        "in_chans": args.in_chans,
        "batch_size": batch_size,
        "augment": AUGMENT,
        "dataloader_workers": workers,
        "passes_per_epoch": passes,
        "torch_threads": threads,
        "torch_threads_why": why,
        "preprocessing": list(prep.specs),
        "generate_seconds": round(gen_s, 2),
        "cache_build_seconds": round(build_s, 2),
        "decode_each_epoch": decode,
        "cached": cached,
        "cached_no_augment": cached_raw,
        "decode_each_epoch_img_s": decode["img_s"],
        "cached_img_s": cached["img_s"],
        "speedup_cached_vs_decode": speedup,
    }
    path = write_results("loader", figures, out=args.out, quick=args.quick, device=device, monitor=monitor)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
