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
  (``os.sched_getaffinity``), which respects ``taskset`` and container CPU sets.

Whatever the user has set wins: an ``OMP_WAIT_POLICY``, ``KMP_BLOCKTIME`` or
``OMP_NUM_THREADS`` already in the environment is left alone, ``CXRZOO_THREADS=N`` sets the
thread count, and ``CXRZOO_THREADS=off`` leaves every setting to PyTorch and OpenMP.

This module never imports PyTorch: the command line calls :func:`configure_threads` before
anything needs it (``cxrzoo list`` stays free of it), and :func:`cxrzoo.load` and the
inference layer call it again once PyTorch is loaded, to set the thread count.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

#: ``off`` leaves threads and wait policy to PyTorch; a positive number sets the thread count.
THREADS_ENV = "CXRZOO_THREADS"
#: Environment defaults set when the user has not set them.
OPENMP_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}


@dataclass(frozen=True)
class ThreadSettings:
    """What :func:`configure_threads` chose (``torch_threads`` is None until PyTorch is loaded)."""

    enabled: bool
    wait_policy: str | None
    torch_threads: int | None


_env_done = False
_torch_threads: int | None = None


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _setting() -> str:
    return os.environ.get(THREADS_ENV, "").strip().lower()


def _requested_threads() -> int | None:
    """The thread count to set, or None to leave PyTorch's (the user set OMP_NUM_THREADS)."""
    text = _setting()
    if text:
        try:
            number = int(text)
        except ValueError:
            number = 0
        if number < 1:
            from cxrzoo.errors import UserError

            raise UserError(f"{THREADS_ENV}={text!r}: expected a positive number of threads or 'off'")
        return number
    if os.environ.get("OMP_NUM_THREADS", "").strip():
        return None
    return available_cpus()


def configure_threads() -> ThreadSettings:
    """Set the OpenMP wait policy and PyTorch's thread count once per process (see the module
    docstring); cheap to call again. Never imports PyTorch: the thread count is set on the
    first call after PyTorch has been imported."""
    global _env_done, _torch_threads
    if _setting() == "off":
        return ThreadSettings(False, os.environ.get("OMP_WAIT_POLICY"), None)
    if not _env_done:
        _env_done = True
        for key, value in OPENMP_DEFAULTS.items():
            os.environ.setdefault(key, value)
    if _torch_threads is None and "torch" in sys.modules:
        import torch

        wanted = _requested_threads()
        if wanted is not None and torch.get_num_threads() != wanted:
            torch.set_num_threads(wanted)
        _torch_threads = torch.get_num_threads()
    return ThreadSettings(True, os.environ.get("OMP_WAIT_POLICY"), _torch_threads)


# Importing this module is enough to set the OpenMP defaults (cxrzoo/__init__.py does it first).
configure_threads()

__all__ = ["OPENMP_DEFAULTS", "THREADS_ENV", "ThreadSettings", "available_cpus", "configure_threads"]
