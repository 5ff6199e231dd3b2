"""Train every model on a real NIH sample in the Kaggle layout and score its test list.

    python benchmarks/nih_sample.py [--data DIR] [--image-size N] [--recipes default report]
                                    [--seeds 0 1 2] [--models ...] [--home DIR]

Any folder in NIH's Kaggle layout works (``Data_Entry_2017.csv``, ``train_val_list.txt``,
``test_list.txt``, ``images_*/images/*.png``): the 707-image ``nih-sample-64`` at 64 px, the
381-image ``nih-sample-512`` at 128 px on a CPU or 224 px on a GPU (the default size: the
images' own size when they are smaller than that). For each recipe and seed it runs exactly
these commands (printed as they run) in one store:

    cxrzoo train MODEL --data DATA --image-size N --recipe R --seed S --name PREFIX-R-MODEL-S
    cxrzoo train ensemble ... --set members=PREFIX-R-advanced_resnet-S,...   # the plain average
    cxrzoo train ensemble ... --set members=... --set weighting=auroc         # weighted per finding
    cxrzoo evaluate PREFIX-R-MODEL-S --split test --json                       # each of them

After the last seed of a recipe it builds one seed ensemble per architecture
(``cxrzoo train ensemble --set members=PREFIX-R-rare_disease-0,...-1,...-2``: no new training)
and evaluates it. A ``reference/*_predictions.csv`` beside the data (the full-data DenseNet-121
of nih-sample-512) is scored on the same test images by ``cxrzoo evaluate --predictions`` and
shown in the same table.

Results go to ``benchmarks/results/<sample>_<size>.json`` and ``.md`` (``nih_sample_64.md``
when the size is the sample's own), rewritten after every seed, so an interrupted run keeps
what it finished; run it again with the same ``--home`` and trained models are reused (a model
interrupted mid-training resumes from its last epoch). ``--no-train`` scores what the store
holds and skips seeds with a model missing. ``--set KEY=VALUE`` goes to every ``cxrzoo train``
(``--set select=last`` measures a recipe change; use another ``--home`` and ``--out``).

    python benchmarks/nih_sample.py --ablation [--home DIR]

trains the variants in ABLATION with the same recipe and seeds, each one ``--set`` away from
a model's defaults (advanced_resnet with its parts switched off or a smaller backbone;
chest_xray_attention with CLAHE preprocessing instead of per-image standardisation), and writes
``<stem>_ablation.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parents[1] / "shared" / "data" / "nih-sample-64"
MODELS = ("advanced_resnet", "chest_xray_attention", "rare_disease")
#: Reference points on nih-sample-64, from the data's README (other samples have none).
REFERENCES_64 = {
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


def sample_image_size(data: Path) -> int | None:
    """The side of the sample's first image (the samples are square), or None."""
    from PIL import Image

    for path in sorted(data.glob("images*/images/*.png"))[:1]:
        with Image.open(path) as image:
            return max(image.size)
    return None


def cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:  # pragma: no cover - torch is a dependency
        return False


def hardware(device: str) -> str:
    """What trained: the GPU's name, or the CPU's and how many cores."""
    if device.startswith("cuda"):
        import torch

        return f"GPU: {torch.cuda.get_device_name(0)}"
    from common import processor_name, usable_cpus

    return f"CPU: {usable_cpus()} cores of {processor_name() or platform.machine()}"


class Bench:
    """One benchmark run: a store, the shared options, the commands run so far."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.home = args.home or Path(tempfile.mkdtemp(prefix="cxrzoo-nih-"))
        self.env = dict(os.environ, CXRZOO_HOME=str(self.home))
        # Relative to the repository root, where the commands run, so they can be pasted as they are.
        self.data = os.path.relpath(args.data.resolve(), HERE.parent)
        self.commands: list[str] = []
        # Short store names: nih512-128-default-rare_disease-0.
        digits = "".join(c for c in args.data.name if c.isdigit())
        self.prefix = f"nih{digits}-{args.image_size}"
        self.timings: list[dict] = []
        self.earlier_minutes = 0.0

    def common(self, recipe: str) -> list[str]:
        size = str(self.args.image_size)
        return [
            "--data",
            self.data,
            "--image-size",
            size,
            "--recipe",
            recipe,
            "--no-progress",
            "--device",
            self.args.device,
        ]

    def run(self, args: list[str]) -> str:
        return cxrzoo(args, self.env, self.commands)

    def training_seconds(self, name: str) -> float | None:
        """The training time a saved model records (None for composites, which train nothing)."""
        try:
            doc = json.loads((self.home / "models" / name / "config.json").read_text())
        except (OSError, ValueError):
            return None
        return (doc.get("training") or {}).get("seconds")

    def trained(self, name: str) -> bool:
        return (self.home / "models" / name / "config.json").is_file()

    def train(self, model: str, name: str, recipe: str, seed: int, sets: list[str] = ()) -> None:
        cmd = ["train", model, *self.common(recipe), "--seed", str(seed), "--name", name]
        cmd += [a for s in (*self.args.sets, *sets) for a in ("--set", s)]
        if self.trained(name):
            print(f"reusing {name} from {self.home}")
            self.commands.append(f"cxrzoo {shlex.join(cmd)}  # reused: already in the store")
            return
        if (self.home / "runs" / name / "checkpoint.safetensors").is_file():
            cmd.append("--resume")  # an interrupted run of the benchmark goes on where it stopped
        self.run(cmd)

    def evaluate(self, name: str) -> dict:
        doc = json.loads(
            self.run(["evaluate", name, "--data", self.data, "--split", "test", "--json", "--no-progress"])
        )
        return scores(doc)

    def reference(self) -> dict | None:
        files = sorted((self.args.data / "reference").glob("*predictions*.csv"))
        if not files:
            return None
        path = os.path.relpath(files[0].resolve(), HERE.parent)
        doc = json.loads(
            self.run(["evaluate", "--predictions", path, "--data", self.data, "--split", "test", "--json"])
        )
        return {"file": path, **scores(doc)}


def scores(doc: dict) -> dict:
    """The figures of one ``evaluate --json`` this benchmark reports."""
    macro = doc["macro"]
    ci = doc.get("macro_auroc_ci") or {}
    per_class = doc["per_class"]
    with_positives = [k for k, v in per_class.items() if v.get("positives", 0) > 0]
    f1_zero = [k for k in with_positives if not (per_class[k].get("f1") or 0) > 0]
    return {
        "images": doc["n_images"],
        "macro_auroc": doc["macro_auroc"],
        "auroc_low": ci.get("low"),
        "auroc_high": ci.get("high"),
        "macro_f1": macro.get("f1"),
        "findings_with_positives": len(with_positives),
        "f1_zero": f1_zero,
        "per_class_auroc": {k: v.get("auroc") for k, v in per_class.items()},
    }


def default_stem(data: Path, image_size: int, native: int | None) -> str:
    sample = data.name.replace("-", "_")
    return sample if native == image_size else f"{sample}_{image_size}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a sample in NIH's Kaggle layout")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--image-size",
        type=int,
        help="default: 224 on a GPU, 128 on the CPU, or the images' own size if smaller",
    )
    parser.add_argument("--device", help="cpu, cuda, cuda:N (default: cuda when available)")
    parser.add_argument("--recipes", "--recipe", nargs="+", default=["default", "report"])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="passed to every 'cxrzoo train' (a recipe or config option), e.g. --set epochs=2",
    )
    parser.add_argument("--home", type=Path, help="Store to train into (default: a temporary folder).")
    parser.add_argument("--out", type=Path, help="Output stem (default: results/<sample>_<size>[_ablation]).")
    parser.add_argument(
        "--no-train",
        action="store_true",
        help="score the models already in --home (composites are still built); skip seeds with one missing",
    )
    parser.add_argument("--ablation", action="store_true", help="Train the ABLATION variants instead.")
    args = parser.parse_args()
    if not (args.data / "Data_Entry_2017.csv").is_file():
        print(f"No NIH sample at {args.data}; nothing to do.")
        return
    args.device = args.device or ("cuda" if cuda_available() else "cpu")
    native = sample_image_size(args.data)
    if args.image_size is None:
        wanted = 224 if args.device.startswith("cuda") else 128
        args.image_size = min(wanted, native or wanted)
    args.stem = default_stem(args.data, args.image_size, native)
    if args.out is None:
        args.out = HERE / "results" / (args.stem + ("_ablation" if args.ablation else ""))
    bench = Bench(args)
    if args.ablation:
        ablation(bench)
        return
    started = time.perf_counter()
    previous = args.out.with_suffix(".json")
    if args.no_train and previous.is_file():
        # Scoring again what an earlier run trained: keep that run's training times.
        earlier = json.loads(previous.read_text())
        bench.timings = earlier.get("minutes_per_seed", [])
        bench.earlier_minutes = earlier.get("minutes", 0.0)
    reference = bench.reference()
    runs: list[dict] = []
    for recipe in args.recipes:
        done = []
        for seed in args.seeds:
            t0 = time.perf_counter()
            names = {m: f"{bench.prefix}-{recipe}-{m}-{seed}" for m in args.models}
            if args.no_train and not all(bench.trained(n) for n in names.values()):
                print(f"{recipe} seed {seed}: not every model is in {bench.home}; skipped (--no-train)")
                continue
            for model, name in names.items():
                bench.train(model, name, recipe, seed)
            if len(names) > 1:
                # The plain average, and the average weighted per finding by validation AUROC.
                members = ",".join(names.values())
                for label, suffix, sets in (
                    ("ensemble", "ensemble", []),
                    ("ensemble, per-finding weights", "ensemble_auroc", ["weighting=auroc"]),
                ):
                    names[label] = f"{bench.prefix}-{recipe}-{suffix}-{seed}"
                    bench.train("ensemble", names[label], recipe, seed, [f"members={members}", *sets])
            for model, name in names.items():
                runs.append({"recipe": recipe, "seed": seed, "model": model, **bench.evaluate(name)})
                r = runs[-1]
                print(
                    f"  {recipe} seed {seed} {model:<30} test macro AUROC {r['macro_auroc']:.4f}  F1 {r['macro_f1']:.3f}"
                )
            done.append(seed)
            minutes = round((time.perf_counter() - t0) / 60, 1)
            # Training time as each model recorded it, so that reused models count what they took.
            trained = [bench.training_seconds(n) for n in names.values()]
            # A seed scored again replaces its earlier entry rather than counting twice.
            bench.timings = [t for t in bench.timings if (t["recipe"], t["seed"]) != (recipe, seed)]
            bench.timings.append(
                {
                    "recipe": recipe,
                    "seed": seed,
                    "minutes": minutes,
                    "training_minutes": round(sum(t for t in trained if t) / 60, 1),
                }
            )
            report(bench, runs, reference, started)
        if len(done) > 1:
            # One architecture trained with different seeds, averaged: costs no training.
            for model in args.models:
                name = f"{bench.prefix}-{recipe}-seeds-{model}"
                members = ",".join(f"{bench.prefix}-{recipe}-{model}-{s}" for s in done)
                bench.train("ensemble", name, recipe, done[0], [f"members={members}"])
                label = f"seed ensemble of {model} (seeds {', '.join(map(str, done))})"
                runs.append({"recipe": recipe, "seed": "all", "model": label, **bench.evaluate(name)})
            report(bench, runs, reference, started)


def summarise(runs: list[dict]) -> dict[str, dict]:
    summary: dict[str, dict] = {}
    for key in dict.fromkeys((r["recipe"], r["model"]) for r in runs):
        rows = [r for r in runs if (r["recipe"], r["model"]) == key]
        aurocs = [r["macro_auroc"] for r in rows]
        summary[f"{key[0]} / {key[1]}"] = {
            "recipe": key[0],
            "model": key[1],
            "seeds": [r["seed"] for r in rows],
            "mean_macro_auroc": round(statistics.mean(aurocs), 4),
            "sd": round(statistics.stdev(aurocs), 4) if len(aurocs) > 1 else None,
            "per_seed": [round(a, 4) for a in aurocs],
            "mean_macro_f1": round(statistics.mean(r["macro_f1"] for r in rows), 4),
            "f1_zero": sorted({f for r in rows for f in r["f1_zero"]}),
        }
    return summary


def report(bench: Bench, runs: list[dict], reference: dict | None, started: float) -> None:
    args = bench.args
    summary = summarise(runs)
    ref = reference["macro_auroc"] if reference else None
    head = "| Recipe | Model | seeds | mean test macro AUROC | sd | per seed | mean macro F1 | findings with F1 = 0 |"
    table = [
        head + (" vs reference |" if ref else ""),
        "|---|---|---|---:|---:|---|---:|---|" + ("---:|" if ref else ""),
    ]
    if reference:
        table.append(
            f"| full-data reference | DenseNet-121, ImageNet start, 78k images, 224 px | - | {ref:.3f} | - | "
            f"95% CI {reference['auroc_low']:.3f}-{reference['auroc_high']:.3f} | {reference['macro_f1']:.3f} "
            f"(calls at 0.5) | {len(reference['f1_zero'])} of {reference['findings_with_positives']} | - |"
        )
    for s in summary.values():
        seeds = ", ".join(str(x) for x in s["seeds"])
        sd = f"{s['sd']:.3f}" if s["sd"] is not None else "-"
        per_seed = ", ".join(f"{x:.3f}" for x in s["per_seed"])
        zero = ", ".join(s["f1_zero"]) or "none"
        # A run made with --set is that recipe changed: the table says so on every row.
        recipe = " ".join([s["recipe"], *args.sets])
        row = (
            f"| {recipe} | {s['model']} | {seeds} | {s['mean_macro_auroc']:.3f} | {sd} | {per_seed} | "
            f"{s['mean_macro_f1']:.3f} | {zero} |"
        )
        table.append(row + (f" {s['mean_macro_auroc'] - ref:+.3f} |" if ref else ""))
    if bench.timings:
        per = "; ".join(
            f"{t['recipe']} seed {t['seed']}: {t.get('training_minutes', t['minutes'])} min"
            for t in bench.timings
        )
        table += [
            "",
            f"Training time of the models of one recipe and seed, as their config.json records it: {per}.",
        ]
    if args.data.name == "nih-sample-64":
        table += [
            "",
            "Reference points from the data's README: "
            + "; ".join(f"{k} {v}" for k, v in REFERENCES_64.items()),
        ]
    minutes = round(bench.earlier_minutes + (time.perf_counter() - started) / 60, 1)
    doc = {
        "data": bench.data,
        "image_size": args.image_size,
        "device": args.device,
        "hardware": hardware(args.device),
        "recipes": args.recipes,
        # Options every training was changed by (--set): the recipes above with these changes.
        "sets": args.sets,
        "seeds": args.seeds,
        # What finished: a run stopped part-way reports the seeds it completed.
        "seeds_done": sorted({r["seed"] for r in runs if isinstance(r["seed"], int)}),
        "split": "train on train_val_list.txt (80/20 by patient for validation), score test_list.txt",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "minutes": minutes,
        "minutes_per_seed": bench.timings,
        "reference": reference,
        "summary": summary,
        "runs": runs,
        "commands": bench.commands,
    }
    write_results(
        args.out,
        doc,
        title=f"{args.data.name} (real NIH radiographs) at {args.image_size} px: test macro AUROC",
        how="`python benchmarks/nih_sample.py "
        + shlex.join(sys.argv[1:])
        + "`, which runs the commands listed below"
        + (" (with --no-train it scores models an earlier run trained into --home)" if args.no_train else ""),
        table=table,
    )


def ablation(bench: Bench) -> None:
    args = bench.args
    runs = []
    started = time.perf_counter()
    recipe = args.recipes[0]
    for seed in args.seeds:
        for variant, (model, stem, sets) in ABLATION.items():
            name = f"{bench.prefix}-{recipe}-{stem}-{seed}"
            bench.train(model, name, recipe, seed, sets)
            runs.append({"seed": seed, "variant": variant, **bench.evaluate(name)})
            print(f"  seed {seed} {variant:<38} test macro AUROC {runs[-1]['macro_auroc']:.4f}")
    summary = {}
    for variant in ABLATION:
        aurocs = [r["macro_auroc"] for r in runs if r["variant"] == variant]
        summary[variant] = {
            "model": ABLATION[variant][0],
            "set": ABLATION[variant][2],
            "mean_macro_auroc": round(statistics.mean(aurocs), 4),
            "sd": round(statistics.stdev(aurocs), 4) if len(aurocs) > 1 else None,
            "per_seed": [round(x, 4) for x in aurocs],
        }
    table = ["| Variant | model | `--set` | mean | sd | per seed |", "|---|---|---|---:|---:|---|"]
    for variant, s in summary.items():
        sets = " ".join(s["set"]) or "(defaults)"
        per_seed = ", ".join(f"{x:.3f}" for x in s["per_seed"])
        sd = s["sd"] if s["sd"] is not None else "-"
        table.append(
            f"| {variant} | {s['model']} | {sets} | {s['mean_macro_auroc']:.3f} | {sd} | {per_seed} |"
        )
    minutes = round((time.perf_counter() - started) / 60, 1)
    write_results(
        args.out,
        {
            "data": bench.data,
            "image_size": args.image_size,
            "hardware": hardware(args.device),
            "recipe": recipe,
            "seeds": args.seeds,
            "minutes": minutes,
            "runs": runs,
            "summary": summary,
            "commands": bench.commands,
        },
        title=f"{args.data.name} at {args.image_size} px: ablations (test macro AUROC)",
        how="`python benchmarks/nih_sample.py --ablation`",
        table=table,
    )


def write_results(out: Path, doc: dict, *, title: str, how: str, table: list[str]) -> None:
    """Write OUT.json (the figures, the commands, the settings) and OUT.md (a table)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(doc, indent=2))
    seeds = doc.get("seeds_done", doc["seeds"])
    lines = [
        f"# {title}",
        "",
        f"Seeds {seeds} done, {doc['minutes']} min on {doc['hardware']}. Produced by {how}.",
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
    out.with_suffix(".md").write_text("\n".join(lines))
    print(f"\nWrote {out.with_suffix('.json')} and {out.with_suffix('.md')}", flush=True)


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
