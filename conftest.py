"""Settings for every test in the repository (core, plugins, example)."""

import os

import torch

# Under pytest-xdist each worker gets one intra-op thread: several workers each spinning a pool
# as wide as the machine oversubscribe the cores and make every step many times slower.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # for the CLI subprocesses tests start
