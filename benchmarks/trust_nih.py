"""When a model should not be trusted, measured on the real NIH sample (64 px).

For each seed: train chest_xray_attention on the sample's train_val list (its patient-wise 80/20
split: the gate is fitted on the training part and thresholded on validation), give it
guaranteed thresholds on the validation split (``cxrzoo calibrate --split val --target
sensitivity=LEVEL``: images it did not train on), and evaluate on the test list, which no step
saw. Prints, and writes to ``benchmarks/results/trust_nih_64.md``:

- promised vs achieved sensitivity per finding on the test list (mean over seeds, and how often
  the promise was met), for the findings whose validation positives allowed a guarantee;
- the gate: share of test radiographs flagged (the promise: at most the rate) and the AUROC
  separating them from inputs that are not frontal radiographs (inverted, rotated, upside
  down, blank, noise, photo-like, CT-like), with a histogram of the scores (``trust_ood.png``)
  and a plot of promised vs achieved sensitivity (``trust_guarantees.png``).

    python benchmarks/trust_nih.py --data ../shared/data/nih-sample-64 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def cxrzoo(*args: str, env: dict[str, str], log: list[str]) -> str:
    command = [sys.executable, "-m", "cxrzoo", *args]
    log.append("cxrzoo " + shlex.join(args))
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode not in (0, 1):
        raise SystemExit(f"{log[-1]} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data" / "nih-sample-64")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--level", type=float, default=0.8, help="promised sensitivity")
    parser.add_argument("--confidence", type=float, default=0.9)
    parser.add_argument("--home", type=Path, default=None, help="model store (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "trust_nih_64.md")
    args = parser.parse_args()
    if not (args.data / "Data_Entry_2017.csv").is_file():
        raise SystemExit(f"{args.data}: not the NIH sample (no Data_Entry_2017.csv)")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_auc_score

    from cxrzoo import store
    from cxrzoo.data.io import read_image
    from cxrzoo.ood import image_features
    from cxrzoo.testing import odd_inputs

    home = args.home or Path(tempfile.mkdtemp(prefix="cxrzoo-trust-"))
    env = {**os.environ, "CXRZOO_HOME": str(home)}
    os.environ["CXRZOO_HOME"] = str(home)
    log: list[str] = []
    started = time.time()
    per_seed = []
    trained = 0
    test_names = (args.data / "test_list.txt").read_text().split()
    test_images = [read_image(args.data / "images_001" / "images" / n) for n in test_names]
    odd = odd_inputs(test_images, 64)
    for seed in args.seeds:
        name = f"trust-cxa-{seed}"
        if not (store.model_path(name) / store.CONFIG_NAME).is_file():
            trained += 1
            cxrzoo(
                "train",
                "chest_xray_attention",
                "--data",
                str(args.data),
                "--image-size",
                "64",
                "--seed",
                str(seed),
                "--no-progress",
                "--name",
                name,
                env=env,
                log=log,
            )
        calibrated = f"{name}-sens"
        cxrzoo(
            "calibrate",
            name,
            "--data",
            str(args.data),
            "--split",
            "val",
            "--target",
            f"sensitivity={args.level}",
            "--confidence",
            str(args.confidence),
            "--name",
            calibrated,
            "--force",
            "--no-progress",
            env=env,
            log=log,
        )
        metrics = json.loads(
            cxrzoo(
                "evaluate",
                calibrated,
                "--data",
                str(args.data),
                "--split",
                "test",
                "--bootstrap",
                "0",
                "--json",
                "--no-progress",
                env=env,
                log=log,
            )
        )
        model = store.load_folder(store.model_path(calibrated))
        gate = model.ood_detector
        inside = gate.score(*image_features(model, test_images))
        outside = {k: gate.score(*image_features(model, v)) for k, v in odd.items()}
        all_out = np.concatenate(list(outside.values()))
        per_seed.append(
            {
                "seed": seed,
                "macro_auroc": metrics["macro_auroc"],
                "guarantees": metrics.get("guarantees", {}).get("per_finding", {}),
                "flagged_test": float(np.mean(inside > gate.threshold)),
                "rate": gate.record["false_rejection_rate"],
                "threshold": gate.threshold,
                "auroc_by_kind": {
                    k: float(roc_auc_score(np.r_[np.zeros(len(inside)), np.ones(len(s))], np.r_[inside, s]))
                    for k, s in outside.items()
                },
                "auroc_all": float(
                    roc_auc_score(np.r_[np.zeros(len(inside)), np.ones(len(all_out))], np.r_[inside, all_out])
                ),
                "scores_inside": inside.tolist(),
                "scores_outside": {k: v.tolist() for k, v in outside.items()},
            }
        )
    minutes = (time.time() - started) / 60

    findings = sorted({f for r in per_seed for f in r["guarantees"]})
    lines = [
        f"# When a model should not be trusted: NIH sample, 64 px, chest_xray_attention, seeds {args.seeds}",
        "",
        f"{minutes:.1f} min on this machine ({trained} of {len(args.seeds)} models trained in this run, the "
        f"others reused from --home). Produced by `python benchmarks/trust_nih.py --data {args.data} "
        f"--seeds {' '.join(map(str, args.seeds))}`; one run of the defaults.",
        "",
        f"Thresholds guarantee sensitivity ≥ {args.level:g} with {args.confidence:.0%} confidence, chosen on "
        "each model's validation split (images it did not train on); achieved = sensitivity on the 142-image "
        "test list, which no step saw. Findings with too few validation positives get no guarantee.",
        "",
        "| Finding | seeds guaranteed | test positives | promised | achieved (mean) | min-max | met |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    plotted: list[tuple[int, float]] = []
    for f in findings:
        rows = [
            r["guarantees"][f]
            for r in per_seed
            if f in r["guarantees"] and r["guarantees"][f]["achieved"] is not None
        ]
        if not rows:
            continue
        values = [g["achieved"] for g in rows]
        met = sum(bool(g["met"]) for g in rows)
        plotted += [(len({i for i, _ in plotted}), v) for v in values]
        lines.append(
            f"| {f} | {len(rows)} | {rows[0]['cases']} | {args.level:.2f} | {np.mean(values):.3f} | "
            f"{min(values):.3f}-{max(values):.3f} | {met}/{len(rows)} |"
        )
    total_met = sum(
        bool(g["met"]) for r in per_seed for g in r["guarantees"].values() if g["met"] is not None
    )
    total = sum(1 for r in per_seed for g in r["guarantees"].values() if g["met"] is not None)
    lines += [
        "",
        f"Met in {total_met} of {total} (finding, seed) pairs; the promise allows it to fail in "
        f"{1 - args.confidence:.0%} of calibration draws, and a test list of a few positives measures "
        "sensitivity coarsely.",
        "",
        "## Out-of-distribution gate",
        "",
        "| Seed | test macro AUROC | gate threshold | test radiographs flagged | AUROC vs all odd inputs | "
        + " | ".join(per_seed[0]["auroc_by_kind"])
        + " |",
        "|---:|---:|---:|---:|---:|" + "---:|" * len(per_seed[0]["auroc_by_kind"]),
    ]
    from scipy.stats import binom

    n_test = len(test_images)
    for r in per_seed:
        bound = binom.ppf(0.99, n_test, r["rate"]) / n_test
        lines.append(
            f"| {r['seed']} | {r['macro_auroc']:.3f} | {r['threshold']:.3f} | {r['flagged_test']:.1%} "
            f"({round(r['flagged_test'] * n_test)} of {n_test}; rate {r['rate']:.0%}, 99% chance bound "
            f"{bound:.1%}) | {r['auroc_all']:.3f} | "
            + " | ".join(f"{v:.3f}" for v in r["auroc_by_kind"].values())
            + " |"
        )
    mean_flagged = float(np.mean([r["flagged_test"] for r in per_seed]))
    lines += [
        "",
        f"Mean share of test radiographs flagged: {mean_flagged:.1%} over {len(per_seed)} seed(s), for a "
        f"promised rate of {per_seed[0]['rate']:.0%} on images like the validation split's. With {n_test} "
        "test images a single run varies by chance (the bound above); the test list's patients are "
        "others than validation's, so a rate above the promise is also the shift between them.",
    ]
    lines += [
        "",
        "![OOD scores](trust_ood.png)",
        "",
        "![Guarantees](trust_guarantees.png)",
        "",
        "Commands:",
        "",
        "```",
    ]
    lines += [*log, "```", ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))

    first = per_seed[0]
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    bins = np.logspace(
        np.log10(0.3), np.log10(max(50.0, max(max(v) for v in first["scores_outside"].values()))), 50
    )
    ax.hist(first["scores_inside"], bins=bins, alpha=0.8, label="NIH test radiographs")
    for kind, values in first["scores_outside"].items():
        ax.hist(values, bins=bins, alpha=0.5, label=kind, histtype="step", linewidth=1.5)
    ax.axvline(first["threshold"], color="k", linestyle="--", label="gate threshold")
    ax.set_xscale("log")
    ax.set_xlabel("ood_score")
    ax.set_ylabel("images")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(args.out.parent / "trust_ood.png", dpi=100)
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    shown = [f for f in findings if any(f in r["guarantees"] for r in per_seed)]
    if plotted:
        jitter = np.random.default_rng(0).uniform(-0.12, 0.12, len(plotted))
        ax.scatter(
            np.array([i for i, _ in plotted]) + jitter,
            [v for _, v in plotted],
            label="achieved on the test list",
        )
    ax.axhline(args.level, color="k", linestyle="--", label=f"promised {args.level:g}")
    ax.set_xticks(range(len(shown)), shown, rotation=20)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("sensitivity (one dot per seed)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out.parent / "trust_guarantees.png", dpi=100)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
