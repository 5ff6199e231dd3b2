"""The main job, end to end on a CPU in a few minutes: train ``rare_disease`` on the built-in
synthetic phantoms, evaluate it on their held-out test split, and predict one image.

    make demo            # or: python examples/demo.py

Each step is the ``cxrzoo`` command a user would type, printed before it runs. The trained
model lands in the store ($CXRZOO_HOME, default ~/.cache/cxrzoo) and the report in
out/demo-report/.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from pathlib import Path

REPORT = Path("out") / "demo-report"


def run(*args: str) -> str:
    cmd = [sys.executable, "-m", "cxrzoo", *args]
    print(f"\n$ cxrzoo {shlex.join(args)}", flush=True)
    result = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    print(result.stdout, end="", flush=True)
    if result.returncode != 0:
        sys.exit(f"'cxrzoo {shlex.join(args)}' failed with exit code {result.returncode}")
    return result.stdout


def main() -> None:
    start = time.perf_counter()
    run("list", "--kind", "model")
    # No --data: the built-in synthetic phantoms, drawn once and cached; 64 px on a CPU.
    run("train", "rare_disease", "--recipe", "quick", "--no-progress")
    run("evaluate", "rare_disease", "--report", str(REPORT), "--no-progress")
    from cxrzoo import load
    from cxrzoo.training.run import DataSpec, load_splits

    model = load("rare_disease")
    test = load_splits(DataSpec.from_dict(model.metadata["training"]), echo=lambda _m: None).test
    positive = test[test["Cardiomegaly"] == 1]
    image = (positive if len(positive) else test).iloc[0]["path"]
    run("predict", "rare_disease", image)
    minutes = (time.perf_counter() - start) / 60
    print(f"\nDone in {minutes:.1f} min. Report: {REPORT / 'report.md'}")


if __name__ == "__main__":
    main()
