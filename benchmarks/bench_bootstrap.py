"""Time ``bootstrap_ci`` at test-set scale against a naive per-resample scikit-learn loop.

    .venv/bin/python benchmarks/bench_bootstrap.py            # 25,596 x 14, 1,000 resamples

The predictions are synthetic (NIH prevalences, scores that rank positives higher); only
their shape matters for the timing. The naive baseline computes ``roc_auc_score`` for every
finding on explicitly resampled data for a few resamples and is extrapolated linearly.
Results are printed and written to ``benchmarks/results/bootstrap.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tracemalloc
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import sklearn
from common import processor_name, time_repeats
from sklearn.metrics import roc_auc_score

from cxrzoo.labels import LABELS, NIH_PREVALENCE
from cxrzoo.metrics import bootstrap_ci

RESULTS = Path(__file__).parent / "results" / "bootstrap.json"
DEFAULT_METRICS = ("auroc", "f1", "precision", "recall")


def synthetic_predictions(n_images: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    prevalence = np.array([NIH_PREVALENCE[label] for label in LABELS])
    y = (rng.random((n_images, len(LABELS))) < prevalence).astype(np.int8)
    logits = np.log(prevalence / (1 - prevalence)) + 1.2 * y + rng.normal(size=y.shape)
    return y, (1 / (1 + np.exp(-logits))).astype(np.float32)


def naive_auroc_loop(y: np.ndarray, p: np.ndarray, n_resamples: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    n_images = len(y)
    for _ in range(n_resamples):
        index = rng.integers(0, n_images, size=n_images)
        for j in range(y.shape[1]):
            roc_auc_score(y[index, j], p[index, j])


def peak_traced_mib(fn) -> float:
    """Peak memory allocated while ``fn`` runs (numpy reports its buffers to tracemalloc)."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=25_596)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--baseline-resamples", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    y, p = synthetic_predictions(args.images)
    load_before = os.getloadavg()[0]  # other work on the machine slows every figure

    def run(metrics: tuple[str, ...]):
        return lambda: bootstrap_ci(y, p, LABELS, n_resamples=args.resamples, metrics=metrics)

    vectorised = time_repeats(run(DEFAULT_METRICS), repeat=args.repeats)
    auroc_only = time_repeats(run(("auroc",)), repeat=args.repeats)
    naive = time_repeats(lambda: naive_auroc_loop(y, p, args.baseline_resamples), repeat=1)[0]
    naive_extrapolated = naive * args.resamples / args.baseline_resamples
    peak_mib = peak_traced_mib(run(DEFAULT_METRICS))

    figures = {
        "images": args.images,
        "findings": len(LABELS),
        "resamples": args.resamples,
        "metrics": list(DEFAULT_METRICS),
        "vectorised_s": statistics.median(vectorised),
        "vectorised_runs_s": vectorised,
        "vectorised_auroc_only_s": statistics.median(auroc_only),
        "naive_auroc_s_measured": naive,
        "naive_auroc_resamples_measured": args.baseline_resamples,
        "naive_auroc_s_extrapolated": naive_extrapolated,
        "speedup_auroc_only": naive_extrapolated / statistics.median(auroc_only),
        "speedup_all_metrics_vs_naive_auroc": naive_extrapolated / statistics.median(vectorised),
        "peak_traced_memory_mib": peak_mib,
        "machine": {
            "processor": processor_name(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scikit_learn": sklearn.__version__,
            "load_average_1m_before": load_before,
            "load_average_1m_after": os.getloadavg()[0],
        },
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }

    print(f"bootstrap_ci, {args.images:,} x {len(LABELS)}, {args.resamples:,} resamples")
    print(
        f"  vectorised, {', '.join(DEFAULT_METRICS)}: {figures['vectorised_s']:.2f} s (median of {args.repeats})"
    )
    print(f"  vectorised, auroc only:          {figures['vectorised_auroc_only_s']:.2f} s")
    print(
        f"  naive sklearn roc_auc_score loop: {naive:.2f} s for {args.baseline_resamples} resamples "
        f"-> {naive_extrapolated:.0f} s extrapolated"
    )
    print(f"  speedup (auroc only): {figures['speedup_auroc_only']:.0f}x")
    print(f"  peak traced memory: {peak_mib:.0f} MiB")
    print(f"  machine: {figures['machine']['processor']}, {os.cpu_count()} CPUs, load {load_before:.1f}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
