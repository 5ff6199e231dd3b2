"""CPU threads and the OpenMP wait policy, chosen once per process.

PyTorch's CPU kernels run on an OpenMP thread pool. By default a thread that finishes its share
of an operator spins, burning its core while it waits for the others. On a machine where another
process keeps a core busy, the threads that share that core with it run in short time slices and
every operator waits for them, while the spinning threads take CPU time from exactly those
laggards: a training step becomes 20-60x slower instead of about 2x.
:func:`configure_threads` avoids that:

- ``OMP_WAIT_POLICY=PASSIVE`` (GNU OpenMP, which PyTorch's Linux wheels use) and
  ``KMP_BLOCKTIME=0`` (Intel OpenMP): waiting threads sleep instead of spinning. OpenMP reads
  these once, when PyTorch loads it, so they are set when cxrzoo is imported (the first thing
  the command line does), before cxrzoo imports PyTorch. Where PyTorch was imported first they
  still reach child processes.
- ``torch.set_num_threads``: one thread per CPU this process may run on
  (``os.sched_getaffinity``, which respects ``taskset`` and container CPU sets) that other
  processes do not keep busy, measured over a moment (:func:`busy_cpus`) when PyTorch is first
  used; at least one. Fewer threads than cores is what keeps a neighbour from costing 20x: a
  thread that shares its core with another job makes every operator wait for it, whatever the
  wait policy (benchmarks/results/contention.md). The inference layer also leaves a CPU to its
  decoding threads while they run beside the model.

Whatever the user has set wins: an ``OMP_WAIT_POLICY``, ``KMP_BLOCKTIME`` or
``OMP_NUM_THREADS`` already in the environment is left alone, ``CXRZOO_THREADS=N`` sets the
thread count, and ``CXRZOO_THREADS=off`` leaves every setting to PyTorch and OpenMP.

This module never imports PyTorch: the command line calls :func:`configure_threads` before
anything needs it (``cxrzoo list`` stays free of it), and :func:`cxrzoo.load` and the
inference layer call it again once PyTorch is loaded, to set the thread count.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass

#: ``off`` leaves threads and wait policy to PyTorch; a positive number sets the thread count.
THREADS_ENV = "CXRZOO_THREADS"
#: How long :func:`busy_cpus` watches the machine when PyTorch is first used, in seconds.
SAMPLE_SECONDS = 0.15
#: Environment defaults set when the user has not set them.
OPENMP_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}


@dataclass(frozen=True)
class ThreadSettings:
    """What :func:`configure_threads` chose (``torch_threads`` is None until PyTorch is loaded)."""

    enabled: bool
    wait_policy: str | None
    torch_threads: int | None
    reason: str = ""


_env_done = False
_torch_threads: int | None = None
_reason = ""


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _setting() -> str:
    return os.environ.get(THREADS_ENV, "").strip().lower()


def _cpu_busy_seconds() -> float | None:
    """CPU time every process spent busy since boot, summed over CPUs (/proc/stat; Linux)."""
    try:
        with open("/proc/stat") as fh:
            fields = fh.readline().split()[1:]
        ticks = [int(v) for v in fields[:8]]
    except (OSError, ValueError, IndexError):
        return None
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def busy_cpus(seconds: float = SAMPLE_SECONDS) -> float | None:
    """How many CPUs other processes keep busy, watched over ``seconds`` while this one sleeps
    (None where /proc/stat is missing)."""
    busy0, own0 = _cpu_busy_seconds(), time.process_time()
    if busy0 is None:
        return None
    start = time.perf_counter()
    time.sleep(seconds)
    busy1, own1 = _cpu_busy_seconds(), time.process_time()
    if busy1 is None:
        return None
    return max(0.0, (busy1 - busy0) - (own1 - own0)) / (time.perf_counter() - start)


def _requested_threads() -> tuple[int | None, str]:
    """The thread count to set (None: leave PyTorch's, the user set OMP_NUM_THREADS) and why."""
    text = _setting()
    if text:
        try:
            number = int(text)
        except ValueError:
            number = 0
        if number < 1:
            from cxrzoo.errors import UserError

            raise UserError(f"{THREADS_ENV}={text!r}: expected a positive number of threads or 'off'")
        return number, f"{THREADS_ENV}={number}"
    if os.environ.get("OMP_NUM_THREADS", "").strip():
        return None, "OMP_NUM_THREADS"
    cpus = available_cpus()
    busy = busy_cpus() if cpus > 1 else None
    if busy is None or busy < 0.5:
        return cpus, f"all {cpus} usable CPUs (idle machine)"
    free = max(1, cpus - math.ceil(busy - 0.25))
    return free, f"{free} of {cpus} usable CPUs: other processes kept {busy:.1f} busy"


def configure_threads() -> ThreadSettings:
    """Set the OpenMP wait policy and PyTorch's thread count once per process (see the module
    docstring); cheap to call again. Never imports PyTorch: the thread count is set on the
    first call after PyTorch has been imported."""
    global _env_done, _torch_threads, _reason
    if _setting() == "off":
        return ThreadSettings(False, os.environ.get("OMP_WAIT_POLICY"), None, "CXRZOO_THREADS=off")
    if not _env_done:
        _env_done = True
        for key, value in OPENMP_DEFAULTS.items():
            os.environ.setdefault(key, value)
    if _torch_threads is None and "torch" in sys.modules:
        import torch

        wanted, _reason = _requested_threads()
        if wanted is not None and torch.get_num_threads() != wanted:
            torch.set_num_threads(wanted)
        _torch_threads = torch.get_num_threads()
    return ThreadSettings(True, os.environ.get("OMP_WAIT_POLICY"), _torch_threads, _reason)


def threads_beside(workers: int) -> int | None:
    """PyTorch threads to use while ``workers`` decoding threads run in this process: the
    configured count less the CPUs the workers take (at least 1); None when threads are not
    cxrzoo's to choose (``CXRZOO_THREADS=off``, or ``OMP_NUM_THREADS`` or
    ``CXRZOO_THREADS`` set by the user)."""
    settings = configure_threads()
    if not settings.enabled or settings.torch_threads is None or _setting() or workers <= 0:
        return None
    if os.environ.get("OMP_NUM_THREADS", "").strip():
        return None
    return max(1, min(settings.torch_threads, available_cpus() - workers))


# Importing this module is enough to set the OpenMP defaults (cxrzoo/__init__.py does it first).
configure_threads()

__all__ = [
    "OPENMP_DEFAULTS",
    "THREADS_ENV",
    "ThreadSettings",
    "available_cpus",
    "busy_cpus",
    "configure_threads",
    "threads_beside",
]
