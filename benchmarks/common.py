"""Helpers shared by the benchmarks: command-line options, machine facts, timing, results files
and full-size synthetic radiographs written as PNG.

Every benchmark measures its baseline in the same run as the thing it measures, so a ratio stays
meaningful on a machine that other work slows down. To tell how much other work there was, the
results record the load average and the share of the machine's CPU time that other processes
used while the benchmark ran (:class:`CpuMonitor`).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import shlex
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
#: Other processes using more than this share of all CPU time mark a run as shared.
SHARED_CPU_SHARE = 0.10


# ----------------------------------------------------------------------------------------------
# Options
# ----------------------------------------------------------------------------------------------


def add_common_args(parser: argparse.ArgumentParser, *, device: bool = True, threads: bool = False) -> None:
    """``--device``, ``--quick`` and ``--out`` (and ``--threads``), the same in every benchmark."""
    if device:
        parser.add_argument(
            "--device", default="auto", help="cpu, cuda, cuda:N, or auto (cuda when available; default)"
        )
    if threads:
        parser.add_argument(
            "--threads",
            default="auto",
            help="CPU threads of PyTorch and onnxruntime: a number, or auto (every idle CPU; default)",
        )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run in seconds")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results file (default benchmarks/results/<name>.json; with --quick, a temporary folder)",
    )


def exit_on_sigterm() -> None:
    """Let ``timeout``'s SIGTERM end the run like Ctrl-C would, so temporary folders are removed."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def default_out(name: str, quick: bool) -> Path:
    """benchmarks/results/<name>.json; a ``--quick`` smoke run's figures go to a temporary folder."""
    if quick:
        return Path(tempfile.gettempdir()) / "cxrzoo-bench-quick" / f"{name}.json"
    return RESULTS_DIR / f"{name}.json"


def resolve_device(name: str) -> Any:
    """``torch.device`` for a ``--device`` value; ``auto`` picks CUDA when there is one."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: PyTorch sees no CUDA device on this machine")
    return device


# ----------------------------------------------------------------------------------------------
# Machine facts
# ----------------------------------------------------------------------------------------------


def processor_name() -> str:
    """The CPU's model name (``platform.processor()`` is empty on most Linux systems)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # pragma: no cover - not available
        return None


def busy_cpus_now(seconds: float = 1.0) -> float | None:
    """How many CPUs other processes keep busy, sampled over ``seconds`` while this one sleeps."""
    busy0, own0 = _cpu_busy_seconds(), _own_cpu_seconds()
    if busy0 is None:
        return None
    time.sleep(seconds)
    busy1, own1 = _cpu_busy_seconds(), _own_cpu_seconds()
    if busy1 is None:
        return None
    return max(0.0, (busy1 - busy0) - (own1 - own0)) / seconds


def choose_threads(requested: str) -> tuple[int, str]:
    """Intra-op threads for PyTorch and onnxruntime on the CPU, and why.

    ``auto`` takes every CPU on an idle machine, but only the idle ones while other processes
    keep some busy: their thread pools wait at a barrier after every operator for the slowest
    thread, and a thread that shares its core with another job makes each step tens of times
    slower (seen on a 2-CPU machine with one CPU taken: a ResNet-50 training step at 32 px took
    11 s with 2 threads, 0.2 s with 1).
    """
    cpus = usable_cpus()
    if requested != "auto":
        return max(1, int(requested)), "as asked"
    busy = busy_cpus_now()
    if busy is None or busy < 0.5:
        return cpus, "all CPUs (machine idle)"
    free = max(1, cpus - math.ceil(busy - 0.25))
    return free, f"the idle CPUs: other processes kept {busy:.1f} of {cpus} busy"


def machine_info(device: Any = None) -> dict[str, Any]:
    """Processor, CPU count, library versions and, for a CUDA device, the GPU's name."""
    import cv2
    import torch

    info: dict[str, Any] = {
        "processor": processor_name(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "opencv_threads": cv2.getNumThreads(),
    }
    try:
        import timm

        info["timm"] = timm.__version__
    except ImportError:  # pragma: no cover - timm is a dependency
        pass
    if device is not None:
        info["device"] = str(device)
    if torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda"):
        index = torch.device(device).index if device is not None else None
        index = torch.cuda.current_device() if index is None else index
        props = torch.cuda.get_device_properties(index)
        info.update(
            gpu=torch.cuda.get_device_name(index),
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            gpu_count=torch.cuda.device_count(),
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            bf16=torch.cuda.is_bf16_supported(),
        )
    return info


def _cpu_busy_seconds() -> float | None:
    """CPU time all processes spent busy since boot, summed over CPUs (from /proc/stat)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    ticks = [int(v) for v in fields[:8]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class CpuMonitor:
    """How busy the machine was with *other* work while a benchmark ran.

    ``other_processes_cpu_share`` in :meth:`summary` is the fraction of all CPUs' time that
    processes other than this one (and its finished children) used: 0 on an idle machine, 0.5
    when another job kept half the CPUs busy. It needs /proc/stat (Linux) and is ``None``
    elsewhere; ``cpu_shared`` is true above :data:`SHARED_CPU_SHARE`.
    """

    def __init__(self) -> None:
        self.load_before = load_average()
        self.wall0 = time.perf_counter()
        self.busy0 = _cpu_busy_seconds()
        self.own0 = _own_cpu_seconds()

    def summary(self) -> dict[str, Any]:
        wall = time.perf_counter() - self.wall0
        busy1 = _cpu_busy_seconds()
        own = _own_cpu_seconds() - self.own0
        cpus = os.cpu_count() or 1
        others = None
        if self.busy0 is not None and busy1 is not None and wall > 0:
            others = round(min(1.0, max(0.0, (busy1 - self.busy0 - own) / (wall * cpus))), 3)
        load_after = load_average()
        if others is not None:
            shared = others > SHARED_CPU_SHARE
        else:  # the load average also counts this benchmark's own earlier work: a weaker sign
            shared = self.load_before is not None and self.load_before > 0.5 * cpus
        return {
            "load_average_1m_before": self.load_before,
            "load_average_1m_after": load_after,
            "own_cpu_seconds": round(own, 1),
            "wall_seconds": round(wall, 1),
            "other_processes_cpu_share": others,
            "cpu_shared": bool(shared),
        }


# ----------------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------------


def synchronize(device: Any) -> None:
    """Wait for the device's queued work (CUDA kernels run asynchronously)."""
    import torch

    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_repeats(run: Callable[[], Any], *, repeat: int, warmup: int = 0) -> list[float]:
    """Seconds of each of ``repeat`` calls of ``run``, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def ratio(value: float | None, baseline: float | None) -> float | None:
    if not value or not baseline:
        return None
    return round(value / baseline, 3)


def fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


class Feed:
    """One way of feeding training batches: ``batches(epoch)`` gives the epoch's ``(uint8 images,
    labels)`` batches, on any device; each goes to ``device`` and through ``prep.tensor`` (with
    the augmentation when ``augment``). Calling it runs one epoch and returns its image count."""

    def __init__(self, batches: Callable[[int], Any], prep: Any, *, device: Any, augment: bool) -> None:
        import torch

        self.batches, self.prep, self.device, self.augment = batches, prep, device, augment
        self.generator = torch.Generator().manual_seed(0)
        self.sink = torch.zeros((), device=device)
        self.epoch = 0

    def __call__(self) -> int:
        count = 0
        for x, y in self.batches(self.epoch):
            x = self.prep.tensor(
                x.to(self.device, non_blocking=True), train=self.augment, generator=self.generator
            )
            y = y.to(self.device, non_blocking=True)
            self.sink = self.sink + x[0, 0, 0, 0] + y[0, 0]  # keep the work from being skipped
            count += len(x)
        self.epoch += 1
        return count


def feed_rates(
    feeds: dict[str, Feed], *, epochs: int, min_seconds: float, warm: bool = True
) -> dict[str, dict[str, Any]]:
    """Images per second of each feed, over epochs after a warm-up one (unless ``warm`` is off).

    The feeds take their timed epochs in turn, one each per round, so that other work on the
    machine slows them alike; at least ``epochs`` rounds, more until they have run for
    ``min_seconds`` together.
    """
    if warm:
        for feed in feeds.values():
            feed()
            synchronize(feed.device)
    images = dict.fromkeys(feeds, 0)
    seconds = dict.fromkeys(feeds, 0.0)
    rounds = 0
    while rounds < epochs or sum(seconds.values()) < min_seconds:
        for name, feed in feeds.items():
            start = time.perf_counter()
            images[name] += feed()
            synchronize(feed.device)
            seconds[name] += time.perf_counter() - start
        rounds += 1
    for feed in feeds.values():
        float(feed.sink)
    return {
        name: {
            "images": images[name],
            "epochs": rounds,
            "seconds": round(seconds[name], 3),
            "img_s": round(images[name] / seconds[name], 1),
        }
        for name in feeds
    }


def feed_rate(
    batches: Callable[[int], Any], prep: Any, *, device: Any, epochs: int, min_seconds: float, augment: bool
) -> dict[str, Any]:
    """Images per second of one feed (see :class:`Feed`) after a warm-up epoch."""
    feed = Feed(batches, prep, device=device, augment=augment)
    return feed_rates({"feed": feed}, epochs=epochs, min_seconds=min_seconds)["feed"]


def cache_batches(data: Any, batch_size: int, device: Any, *, passes: int = 1) -> Callable[[int], Any]:
    """``epoch -> BatchLoader`` over ``data`` (an ``ArrayData``), shuffled as in training.

    With ``passes`` > 1 one such epoch runs over the data that many times, each in a new order.
    """
    import numpy as np

    from cxrzoo.training.loader import BatchLoader, epoch_order

    def batches(epoch: int) -> Any:
        order = np.concatenate(
            [epoch_order(len(data), seed=0, epoch=epoch * passes + p, shuffle=True) for p in range(passes)]
        )
        return BatchLoader(data, batch_size, order=order, device=device)

    return batches


# ----------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------


def write_results(
    name: str,
    figures: dict[str, Any],
    *,
    out: Path | None,
    quick: bool,
    device: Any = None,
    monitor: CpuMonitor | None = None,
    argv: Sequence[str] | None = None,
) -> Path:
    """Write ``figures`` with the machine, the CPU sharing and the command line as JSON."""
    path = out if out is not None else default_out(name, quick)
    result = {
        "benchmark": name,
        "quick": quick,
        "command": shlex.join(["python", *(sys.argv if argv is None else argv)]),
        "machine": machine_info(device),
        **({"cpu_load": monitor.summary()} if monitor is not None else {}),
        **figures,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=_jsonable) + "\n")
    return path


def report_load(monitor: CpuMonitor) -> None:
    s = monitor.summary()
    share = s["other_processes_cpu_share"]
    print(
        f"machine: {processor_name()}, {os.cpu_count()} CPUs; load {s['load_average_1m_before']} before, "
        f"{s['load_average_1m_after']} after; other processes used "
        f"{'?' if share is None else f'{share:.0%}'} of the CPU time"
        + ("  (CPU shared: absolute figures are low, ratios still hold)" if s["cpu_shared"] else "")
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> None:
    """``columns`` is ``(key, heading)``; floats print with 1 decimal, ratios as given."""
    cells = [[_cell(row.get(key)) for key, _ in columns] for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, (_, h) in enumerate(columns)]
    print(
        "  "
        + "  ".join(
            h.ljust(w) if i == 0 else h.rjust(w) for i, ((_, h), w) in enumerate(zip(columns, widths))
        )
    )
    for c in cells:
        print(
            "  " + "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(c, widths)))
        )


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


# ----------------------------------------------------------------------------------------------
# Synthetic radiographs on disk
# ----------------------------------------------------------------------------------------------


def _draw_and_write(folder: str, start: int, stop: int, size: int, seed: int) -> list[np.ndarray]:
    import cv2

    from cxrzoo.data.synthetic import draw_phantom, resolve_prevalence, sample_labels

    prevalence = resolve_prevalence(None)
    labels = []
    for i in range(start, stop):
        # The same stream as cxrzoo.data.synthetic.generate(n, size=size, seed=seed).
        rng = np.random.default_rng([seed, i])
        label = sample_labels(1, rng, prevalence)[0]
        image = draw_phantom(label, size, rng)
        path = os.path.join(folder, f"{i:08d}_000.png")
        if not cv2.imwrite(path, image):
            raise OSError(f"could not write {path}")
        labels.append(label)
    return labels


def write_phantom_pngs(
    folder: Path, n: int, *, size: int, seed: int = 0, workers: int | None = None
) -> tuple[Any, np.ndarray, float]:
    """``n`` synthetic ``size`` x ``size`` 8-bit grey radiographs as PNG files in ``folder``.

    Returns the dataset table (``image``, ``path`` columns, as :func:`cxrzoo.data.build_cache`
    takes), the labels ``uint8 [n, 14]`` and the seconds it took. The images are those of
    ``cxrzoo.data.synthetic.generate``, drawn by ``workers`` processes (default: one per CPU).
    A folder that already holds ``n`` images of this size from an earlier run is reused.
    """
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    stamp = folder / f".phantoms-{n}-{size}-{seed}.npy"
    start_time = time.perf_counter()
    if stamp.is_file():
        labels = np.load(stamp)
    else:
        workers = max(1, min(workers or os.cpu_count() or 1, n))
        chunk = max(1, -(-n // (workers * 4)))
        bounds = [(s, min(s + chunk, n)) for s in range(0, n, chunk)]
        if workers == 1:
            parts = [_draw_and_write(str(folder), s, e, size, seed) for s, e in bounds]
        else:
            # spawn, not fork: the parent may hold OpenCV or PyTorch thread pools.
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                futures = [pool.submit(_draw_and_write, str(folder), s, e, size, seed) for s, e in bounds]
                parts = [f.result() for f in futures]
        labels = np.asarray([label for part in parts for label in part], dtype=np.uint8)
        np.save(stamp, labels)
    names = [f"{i:08d}_000.png" for i in range(n)]
    table = pd.DataFrame({"image": names, "path": [str(folder / name) for name in names]})
    return table, labels, time.perf_counter() - start_time
