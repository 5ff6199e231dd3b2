"""Train every model on the real NIH sample (64 px) and score the official-style test list.

    python benchmarks/nih_sample.py [--data ../shared/data/nih-sample-64] [--seeds 0 1 2]

For each seed it runs exactly these commands (printed as they run) in a private store:

    cxrzoo train MODEL --data DATA --image-size 64 --seed S --name nih64-MODEL-S
    cxrzoo train ensemble --data DATA --image-size 64 --seed S --name nih64-ensemble-S \\
        --set members=nih64-advanced_resnet-S,nih64-chest_xray_attention-S,nih64-rare_disease-S
    cxrzoo compare nih64-*-S --split test --json

and writes benchmarks/results/nih_sample_64.json and .md: test macro AUROC per model and
seed, the mean over seeds, and the reference points of the data's README.

    python benchmarks/nih_sample.py --ablation [--home DIR]

trains the variants in ABLATION with the same recipe and seeds, each one ``--set`` away from
a model's defaults (advanced_resnet with its parts switched off or a smaller backbone;
chest_xray_attention with CLAHE preprocessing instead of per-image standardisation), and writes
nih_sample_64_ablation.json and .md. Models already in the store under the same name
(with ``--home``) are reused rather than trained again.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parents[1] / "shared" / "data" / "nih-sample-64"
MODELS = ("advanced_resnet", "chest_xray_attention", "rare_disease")
REFERENCES = {
    "pixel logistic regression": 0.58,
    "timm resnet18 from scratch, 60 epochs, 5 seeds (range)": "0.59-0.67",
    "resnet18 + flip/affine/contrast, AdamW one-cycle, 80 epochs, 3 seeds": 0.67,
}
# variant -> (model, store-name stem, --set overrides). Variants with no overrides are the
# models of the main run, reused from the store when it is the same one (--home).
AR, CXA = "advanced_resnet", "chest_xray_attention"
CLAHE = "preprocessing=clahe,resize,scale,normalize_grey"
ABLATION: dict[str, tuple[str, str, list[str]]] = {
    # What each part of advanced_resnet and its backbone's size contribute on small data.
    "advanced_resnet": (AR, AR, []),
    "resnet50 + attention (FPN off)": (AR, "ar-fpn_false", ["fpn=false"]),
    "resnet50 + FPN (attention off)": (AR, "ar-attention_false", ["attention=false"]),
    "resnet50 alone (attention, FPN off)": (
        AR,
        "ar-attention_false-fpn_false",
        ["attention=false", "fpn=false"],
    ),
    "resnet18 + attention + FPN": (AR, "ar-backbone_resnet18", ["backbone=resnet18"]),
    "resnet18 alone (attention, FPN off)": (
        AR,
        "ar-backbone_resnet18-attention_false-fpn_false",
        ["backbone=resnet18", "attention=false", "fpn=false"],
    ),
    # The default preprocessing (resize, scale, standardize) against CLAHE + grey normalisation.
    "chest_xray_attention": (CXA, CXA, []),
    "chest_xray_attention, CLAHE": (CXA, "cxa-clahe", [CLAHE]),
}


def cxrzoo(args: list[str], env: dict[str, str], log: list[str]) -> str:
    line = "cxrzoo " + shlex.join(args)
    print(f"$ {line}", flush=True)
    log.append(line)
    result = subprocess.run(
        [sys.executable, "-m", "cxrzoo", *args], env=env, capture_output=True, text=True, cwd=HERE.parent
    )
    if result.returncode != 0:
        sys.exit(f"failed: {line}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--device", choices=["cpu", "cuda"])
    parser.add_argument("--recipe", default="default")
    parser.add_argument("--home", type=Path, help="Store to train into (default: a temporary folder).")
    parser.add_argument("--out", type=Path, help="Output stem (default: results/nih_sample_64[_ablation]).")
    parser.add_argument("--ablation", action="store_true", help="Train the ABLATION variants instead.")
    args = parser.parse_args()
    if args.out is None:
        args.out = HERE / "results" / ("nih_sample_64_ablation" if args.ablation else "nih_sample_64")
    if not (args.data / "Data_Entry_2017.csv").is_file():
        print(f"No NIH sample at {args.data}; nothing to do.")
        return
    home = args.home or Path(tempfile.mkdtemp(prefix="cxrzoo-nih64-"))
    env = dict(os.environ, CXRZOO_HOME=str(home))
    # Relative to the repository root, where the commands run, so they can be pasted as they are.
    data = os.path.relpath(args.data.resolve(), HERE.parent)
    common = [
        "--data",
        data,
        "--image-size",
        str(args.image_size),
        "--recipe",
        args.recipe,
        "--no-progress",
    ]
    if args.device:
        common += ["--device", args.device]
    if args.ablation:
        ablation(args, home, env, common, data)
        return
    commands: list[str] = []
    runs = []
    started = time.perf_counter()
    for seed in args.seeds:
        names = {m: f"nih64-{m}-{seed}" for m in MODELS}
        for model, name in names.items():
            cxrzoo(["train", model, *common, "--seed", str(seed), "--name", name], env, commands)
        ensemble = f"nih64-ensemble-{seed}"
        members = ",".join(names[m] for m in MODELS)
        cxrzoo(
            [
                "train",
                "ensemble",
                *common,
                "--seed",
                str(seed),
                "--name",
                ensemble,
                "--set",
                f"members={members}",
            ],
            env,
            commands,
        )
        out = cxrzoo(
            ["compare", *names.values(), ensemble, "--split", "test", "--json", "--no-progress"],
            env,
            commands,
        )
        result = json.loads(out)
        for row in result["models"]:
            arch = row["architecture"]
            runs.append(
                {
                    "seed": seed,
                    "model": arch,
                    **{
                        k: row[k]
                        for k in (
                            "macro_auroc",
                            "auroc_low",
                            "auroc_high",
                            "macro_f1",
                            "rare_auroc",
                            "common_auroc",
                            "images",
                        )
                    },
                }
            )
            print(
                f"  seed {seed} {arch:<22} test macro AUROC {row['macro_auroc']:.4f}  F1 {row['macro_f1']:.3f}"
            )
    summary = {}
    for model in (*MODELS, "ensemble"):
        scores = [r["macro_auroc"] for r in runs if r["model"] == model]
        f1s = [r["macro_f1"] for r in runs if r["model"] == model]
        summary[model] = {
            "mean_macro_auroc": round(statistics.mean(scores), 4),
            "sd": round(statistics.stdev(scores), 4) if len(scores) > 1 else None,
            "min": round(min(scores), 4),
            "max": round(max(scores), 4),
            "mean_macro_f1": round(statistics.mean(f1s), 4),
            "vs_pixel_logistic_regression": round(statistics.mean(scores) - 0.58, 4),
            "vs_resnet18_augmented_reference": round(statistics.mean(scores) - 0.67, 4),
        }
    images = runs[0]["images"] if runs else "?"
    table = [
        "| Model | mean test macro AUROC | sd | min-max | mean macro F1 | vs 0.58 (pixel LR) | vs 0.67 (resnet18 ref.) |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for model, s in summary.items():
        table.append(
            f"| {model} | {s['mean_macro_auroc']:.3f} | {s['sd'] if s['sd'] is not None else '-'} | "
            f"{s['min']:.3f}-{s['max']:.3f} | {s['mean_macro_f1']:.3f} | {s['vs_pixel_logistic_regression']:+.3f} | "
            f"{s['vs_resnet18_augmented_reference']:+.3f} |"
        )
    write_results(
        args,
        {
            "data": data,
            "split": f"train on train_val (80/20 by patient for validation), score test_list.txt ({images} images)",
            "commands": commands,
            "runs": runs,
            "summary": summary,
            "references": REFERENCES,
        },
        title=f"NIH sample (real radiographs, {args.image_size} px): test macro AUROC",
        how="`python benchmarks/nih_sample.py`, which runs the commands listed below",
        table=table,
        started=started,
    )


def ablation(args, home: Path, env: dict[str, str], common: list[str], data: str) -> None:
    commands: list[str] = []
    runs = []
    started = time.perf_counter()
    for seed in args.seeds:
        names = {}
        for variant, (model, stem, sets) in ABLATION.items():
            name = names[variant] = f"nih64-{stem}-{seed}"
            overrides = [a for s in sets for a in ("--set", s)]
            cmd = ["train", model, *common, "--seed", str(seed), "--name", name, *overrides]
            if (home / "models" / name / "config.json").is_file():
                print(f"reusing {name} from {home}")
                commands.append(f"cxrzoo {shlex.join(cmd)}  # reused: already in the store")
                continue
            cxrzoo(cmd, env, commands)
        out = cxrzoo(
            ["compare", *names.values(), "--split", "test", "--json", "--no-progress"], env, commands
        )
        by_name = {row["model"]: row for row in json.loads(out)["models"]}
        for variant, name in names.items():
            row = by_name[name]
            runs.append(
                {
                    "seed": seed,
                    "variant": variant,
                    "macro_auroc": row["macro_auroc"],
                    "macro_f1": row["macro_f1"],
                    "rare_auroc": row["rare_auroc"],
                    "common_auroc": row["common_auroc"],
                }
            )
            print(f"  seed {seed} {variant:<38} test macro AUROC {row['macro_auroc']:.4f}")
    summary = {}
    for variant in ABLATION:
        scores = [r["macro_auroc"] for r in runs if r["variant"] == variant]
        summary[variant] = {
            "model": ABLATION[variant][0],
            "set": ABLATION[variant][2],
            "mean_macro_auroc": round(statistics.mean(scores), 4),
            "sd": round(statistics.stdev(scores), 4) if len(scores) > 1 else None,
            "per_seed": [round(x, 4) for x in scores],
        }
    table = ["| Variant | model | `--set` | mean | sd | per seed |", "|---|---|---|---:|---:|---|"]
    for variant, s in summary.items():
        sets = " ".join(s["set"]) or "(defaults)"
        per_seed = ", ".join(f"{x:.3f}" for x in s["per_seed"])
        sd = s["sd"] if s["sd"] is not None else "-"
        table.append(
            f"| {variant} | {s['model']} | {sets} | {s['mean_macro_auroc']:.3f} | {sd} | {per_seed} |"
        )
    write_results(
        args,
        {"data": data, "commands": commands, "runs": runs, "summary": summary},
        title=f"NIH sample, {args.image_size} px: ablations (test macro AUROC)",
        how="`python benchmarks/nih_sample.py --ablation`",
        table=table,
        started=started,
    )


def write_results(args, doc: dict, *, title: str, how: str, table: list[str], started: float) -> None:
    """Write OUT.json (the figures, the commands, the settings) and OUT.md (a table)."""
    minutes = round((time.perf_counter() - started) / 60, 1)
    settings = {"image_size": args.image_size, "recipe": args.recipe, "seeds": args.seeds}
    doc = {**settings, **doc, "minutes": minutes}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(doc, indent=2))
    lines = [
        f"# {title}",
        "",
        f"Recipe `{args.recipe}`, seeds {args.seeds}, {minutes} min. Produced by {how}.",
        "",
        *table,
        "",
        "Commands:",
        "",
        "```",
        *doc["commands"],
        "```",
        "",
    ]
    args.out.with_suffix(".md").write_text("\n".join(lines))
    print(f"\nWrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
