"""Compare threshold calibration methods on trained models: F1 on held-out images.

    python benchmarks/bench_calibration.py --home DIR [--methods f1 youden]
                                           [--out benchmarks/results/calibration_NAME] [NAME ...]

For every trained model in the store ``--home`` (or the NAMEs given) it predicts the
validation split that chose its thresholds and the test split of the data it was trained on
(both recorded in its config), then, for each method, chooses thresholds on validation
exactly as training does (:func:`cxrzoo.training.run.choose_thresholds`, with the
training-prevalence rule for findings without a validation positive) and scores them on test:
macro F1 over the findings with test positives, and which of those get F1 = 0. AUROC does not
depend on thresholds and is the same for every method; it is shown once per model.

No training: a store filled by ``benchmarks/nih_sample.py`` is scored in a minute.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("names", nargs="*", help="Trained models (default: every model in --home).")
    parser.add_argument("--home", type=Path, required=True, help="The store (CXRZOO_HOME) to score.")
    parser.add_argument("--methods", nargs="+", default=["f1", "youden"])
    parser.add_argument("--out", type=Path, help="Results stem (.json and .md are written).")
    parser.add_argument(
        "--store-made-by", default="", help="The command that trained the store, for the record."
    )
    args = parser.parse_args()
    if not args.home.is_dir():
        sys.exit(f"--home {args.home}: no such folder")
    os.environ["CXRZOO_HOME"] = str(args.home)

    import cxrzoo
    from cxrzoo import store
    from cxrzoo.data.spec import load_splits
    from cxrzoo.inference import predict_table
    from cxrzoo.labels import table_targets
    from cxrzoo.metrics import evaluate_predictions
    from cxrzoo.metrics.calibration import METHODS
    from cxrzoo.reports.evaluate import data_spec_for
    from cxrzoo.training.run import choose_thresholds, known_prevalence

    unknown = sorted(set(args.methods) - set(METHODS))
    if unknown:
        sys.exit(f"--methods: unknown {unknown}; expected some of {list(METHODS)}")
    names = args.names or store.list_trained()
    if not names:
        sys.exit(f"--home {args.home}: no trained model in it")
    started = time.perf_counter()
    rows = []
    for name in names:
        model = cxrzoo.load(name)
        splits = load_splits(data_spec_for(model), echo=lambda _m: None)
        prevalence = known_prevalence(table_targets(splits.train, model.labels))
        val_p, val = predict_table(model, splits.val, device="cpu", echo=lambda _m: None, progress=False)
        test_p, test = predict_table(model, splits.test, device="cpu", echo=lambda _m: None, progress=False)
        y_test = np.asarray(test.labels, dtype=np.float64)
        scored = [j for j in range(len(model.labels)) if np.nansum(y_test[:, j]) > 0]
        row = {"model": name, "architecture": model.architecture, "methods": {}}
        for method in args.methods:
            thresholds, _ = choose_thresholds(val.labels, val_p, method=method, train_prevalence=prevalence)
            metrics = evaluate_predictions(
                y_test, test_p, model.labels, thresholds=thresholds, metrics=["auroc", "f1"]
            )
            f1 = {model.labels[j]: metrics["per_class"][model.labels[j]]["f1"] for j in scored}
            row["auroc"] = metrics["macro_auroc"]
            row["methods"][method] = {
                "macro_f1": statistics.fmean(f1.values()),
                "zero_f1": sorted(k for k, v in f1.items() if v == 0),
                "f1": f1,
            }
        print(
            f"{name}: AUROC {row['auroc']:.3f}; "
            + "; ".join(
                f"{m} F1 {r['macro_f1']:.3f} ({len(r['zero_f1'])} at 0)" for m, r in row["methods"].items()
            ),
            flush=True,
        )
        rows.append(row)
    summary = {
        m: {
            "mean_macro_f1": statistics.fmean(r["methods"][m]["macro_f1"] for r in rows),
            "mean_zero_f1": statistics.fmean(len(r["methods"][m]["zero_f1"]) for r in rows),
        }
        for m in args.methods
    }
    doc = {
        "home": str(args.home),
        "store_made_by": args.store_made_by or None,
        "methods": args.methods,
        "models": rows,
        "summary": summary,
        "minutes": round((time.perf_counter() - started) / 60, 1),
    }
    command = "python benchmarks/bench_calibration.py " + " ".join(
        [
            f"--home {args.home}",
            "--methods",
            *args.methods,
            *([f"--out {args.out}"] if args.out else []),
            *args.names,
        ]
    )
    made_by = f" The store was trained by `{args.store_made_by}`." if args.store_made_by else ""
    lines = [
        "# Threshold calibration methods: test F1 at thresholds chosen on validation",
        "",
        f"Produced by `{command}`. Macro F1 over the findings with test positives; "
        '"at 0": how many of those get F1 = 0. Thresholds are chosen on each model\'s own '
        "validation split, as training does, and applied unchanged to its test split." + made_by,
        "",
        "| model | test macro AUROC | " + " | ".join(f"{m}: macro F1 (at 0)" for m in args.methods) + " |",
        "|---|---:|" + "---:|" * len(args.methods),
    ]
    for r in rows:
        cells = [
            f"{r['methods'][m]['macro_f1']:.3f} ({len(r['methods'][m]['zero_f1'])})" for m in args.methods
        ]
        lines.append(f"| {r['model']} | {r['auroc']:.3f} | " + " | ".join(cells) + " |")
    cells = [f"{summary[m]['mean_macro_f1']:.3f} ({summary[m]['mean_zero_f1']:.1f})" for m in args.methods]
    lines.append(
        "| **mean** | " + f"{statistics.fmean(r['auroc'] for r in rows):.3f} | " + " | ".join(cells) + " |"
    )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(text)


if __name__ == "__main__":
    main()
