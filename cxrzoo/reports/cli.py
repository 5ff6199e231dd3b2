"""``cxrzoo evaluate``, ``compare``, ``predict``, ``explain`` and ``export``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from cxrzoo.clickutil import DEVICE, ZooCommand
from cxrzoo.data.options import FRACTION, SEED, data_options, dataset_options


def _device(device: str | None) -> str:
    import torch

    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def _eval_options(func: Any) -> Any:
    for option in reversed(
        [
            # --data (repeatable, layout detected), --dataset, --data-option, --synthetic-n:
            # the same as train's. Without them a model is evaluated on its training data.
            data_options(sampling=False),
            click.option(
                "--fraction", type=FRACTION, help="Default: the training fraction (or 1.0 with --data)."
            ),
            click.option("--seed", type=SEED, help="Default: the training seed."),
            click.option(
                "--split", type=click.Choice(["test", "val", "train"]), default="test", show_default=True
            ),
            click.option(
                "--bootstrap",
                "n_resamples",
                type=click.IntRange(min=0),
                default=1000,
                show_default=True,
                help="Bootstrap resamples for confidence intervals (0 = none).",
            ),
            click.option(
                "--device", type=DEVICE, help="cpu, cuda, cuda:N, mps … (default: cuda when available)."
            ),
            click.option("--no-progress", is_flag=True),
        ]
    ):
        func = option(func)
    return func


def _evaluate(
    name: str,
    data: str | None,
    dataset: str | None,
    synthetic_n: int | None,
    fraction: float | None,
    seed: int | None,
    split: str,
    n_resamples: int,
    device: str | None,
    report: str | None,
    progress: bool,
    echo: Any,
    metrics: list[str] | None = None,
    overwrite: bool = False,
    uncertainty: bool = False,
) -> dict[str, Any]:
    from cxrzoo import load
    from cxrzoo.reports.evaluate import data_spec_for, evaluate_model

    model = load(name)
    spec = data_spec_for(
        model,
        data=data,
        dataset=dataset,
        options=dataset_options(data, dataset, synthetic_n),
        fraction=fraction,
        seed=seed,
    )
    result = evaluate_model(
        model,
        spec,
        split=split,
        report_dir=report,
        overwrite=overwrite,
        n_resamples=n_resamples,
        device=_device(device),
        progress=progress,
        echo=echo,
        metrics=metrics,
        uncertainty=uncertainty,
    )
    if split == "test" and model.metadata.get("folder"):
        # Held-out figures travel with the model: config.json and the card's model-index.
        from cxrzoo import store

        try:
            store.record_evaluation(model.metadata["folder"], result)
        except (OSError, store.StoreError) as exc:
            echo(f"Warning: the evaluation could not be recorded in {model.metadata['folder']}: {exc}")
    return result


def _f(value: float | None) -> str:
    return "  n/a" if value is None else f"{value:.3f}"


@click.command(cls=ZooCommand)
@click.argument("name", required=False)
@_eval_options
@click.option(
    "--predictions",
    "predictions_file",
    type=click.Path(dir_okay=False, exists=True),
    help="Score an external model's predictions (CSV: an image column such as 'Image Index', one "
    "probability column per finding, e.g. 'Effusion' or 'prob_Effusion') instead of NAME, on "
    "--data's split; calls at 0.5.",
)
@click.option(
    "--report", type=click.Path(file_okay=False), help="Write metrics.json, CSVs, figures and report.md here."
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace files in --report that an earlier cxrzoo report did not write (refused without this).",
)
@click.option("--json", "as_json", is_flag=True, help="Print metrics.json to stdout.")
@click.option(
    "--uncertainty",
    is_flag=True,
    help="Add each image's spread per finding to the report (ensemble members, or the mirror image).",
)
@click.option(
    "--metric",
    "metric_names",
    multiple=True,
    metavar="NAME",
    help="A registered metric to compute besides the standard ones (repeatable; plugins' too). "
    "Default: the standard set plus brier and ece.",
)
def evaluate(
    name: str,
    data: str | None,
    dataset: str | None,
    synthetic_n: int | None,
    fraction: float | None,
    seed: int | None,
    split: str,
    n_resamples: int,
    device: str | None,
    no_progress: bool,
    report: str | None,
    overwrite: bool,
    as_json: bool,
    uncertainty: bool,
    metric_names: tuple[str, ...],
    predictions_file: str | None,
) -> None:
    """Evaluate trained model NAME per finding, at its calibrated thresholds.

    Without --data, NAME is evaluated on the held-out split of the data it was trained on.
    With --predictions FILE.csv (and no NAME) an external model's predictions are scored on
    --data's split with the same metrics and report.
    """
    echo = (lambda m: click.echo(m, err=True)) if as_json else click.echo
    if (name is None) == (predictions_file is None):
        raise click.UsageError("Give a trained model NAME or --predictions FILE.csv (one of them)")
    if report:
        from cxrzoo.reports.evaluate import check_report

        check_report(report, overwrite=overwrite)
    if predictions_file is not None:
        if uncertainty:
            raise click.UsageError(
                "--uncertainty needs a model NAME: a predictions file has no spread to report"
            )
        from cxrzoo.data.spec import DataSpec
        from cxrzoo.reports.evaluate import evaluate_predictions_file

        if not data and not dataset:
            raise click.UsageError("--predictions needs --data DIR (or --dataset NAME): the images' labels")
        spec = DataSpec(
            data=data or None,
            dataset=dataset or None,
            options=dataset_options(data, dataset, synthetic_n),
            fraction=1.0 if fraction is None else fraction,
            seed=0 if seed is None else seed,
        )
        metrics = evaluate_predictions_file(
            predictions_file,
            spec,
            split=split,
            report_dir=report,
            overwrite=overwrite,
            n_resamples=n_resamples,
            echo=echo,
            metrics=list(metric_names) or None,
        )
    else:
        metrics = _evaluate(
            name,
            data,
            dataset,
            synthetic_n,
            fraction,
            seed,
            split,
            n_resamples,
            device,
            report,
            not no_progress and not as_json,
            echo,
            metrics=list(metric_names) or None,
            overwrite=overwrite,
            uncertainty=uncertainty,
        )
    if as_json:
        click.echo(json.dumps(metrics, indent=2, default=float))
        return
    ci = metrics.get("macro_auroc_ci") or {}
    click.echo(f"{metrics['model']} on {metrics['data']['dataset']} {split} ({metrics['n_images']} images)")
    shown = ("auroc", "f1", "precision", "recall")
    extra = [n for n in metric_names if n not in shown]
    click.echo(
        f"{'finding':<20} {'n+':>5} {'AUROC':>6} {'F1':>6} {'prec':>6} {'recall':>6} {'thr':>6}"
        + "".join(f" {n[:10]:>10}" for n in extra)
    )
    not_scorable = metrics.get("not_scorable") or {}
    for label, m in metrics["per_class"].items():
        click.echo(
            f"{label:<20} {m['positives']:>5} {_f(m['auroc']):>6} {_f(m['f1']):>6} "
            f"{_f(m['precision']):>6} {_f(m['recall']):>6} {_f(m['threshold']):>6}"
            + "".join(f" {_f(m.get(n)):>10}" for n in extra)
            + (f"   not scorable: {not_scorable[label]}" if label in not_scorable else "")
        )
    ci_text = f" (95% CI {_f(ci.get('low'))}-{_f(ci.get('high'))})" if ci else ""
    click.echo(
        f"macro AUROC {_f(metrics['macro_auroc'])}{ci_text}   macro F1 {_f(metrics['macro'].get('f1'))}"
    )
    groups = metrics.get("groups", {})
    click.echo(
        f"rare AUROC {_f(groups.get('rare', {}).get('auroc'))}   common AUROC {_f(groups.get('common', {}).get('auroc'))}"
    )
    promised = metrics.get("guarantees")
    if promised and promised.get("per_finding"):
        rows = promised["per_finding"]
        scored = {k: g for k, g in rows.items() if g["met"] is not None}
        missed = [k for k, g in scored.items() if not g["met"]]
        click.echo(
            f"guarantee ({promised['statement']}): met on {len(scored) - len(missed)} of {len(scored)} "
            f"findings with cases here" + (f"; not met: {', '.join(missed)}" if missed else "")
        )
    gate = metrics.get("ood")
    if gate:
        click.echo(
            f"out of distribution: {gate['flagged']} of {gate['images']} images flagged "
            f"(the gate flags {gate['false_rejection_rate']:.0%} of in-distribution images)"
        )
    if report:
        click.echo(f"Report: {Path(report) / 'report.md'}")


COMPARISON_KIND = "model comparison"
COMPARISON_FILES = ("comparison.csv", "comparison.json")


@click.command(cls=ZooCommand)
@click.argument("names", nargs=-1, required=True)
@_eval_options
@click.option("--report", type=click.Path(file_okay=False), help="Write comparison.csv and .json here.")
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace files in --report that an earlier cxrzoo report did not write (refused without this).",
)
@click.option("--json", "as_json", is_flag=True)
def compare(
    names: tuple[str, ...],
    data: str | None,
    dataset: str | None,
    synthetic_n: int | None,
    fraction: float | None,
    seed: int | None,
    split: str,
    n_resamples: int,
    device: str | None,
    no_progress: bool,
    report: str | None,
    overwrite: bool,
    as_json: bool,
) -> None:
    """Evaluate trained models side by side on the same split and name the best.

    Without --data every model is evaluated on the training data of the first one.
    """
    import pandas as pd

    from cxrzoo import load
    from cxrzoo.outputs import check_folder, result_folder

    if report:
        check_folder(
            report, option="--report", kind=COMPARISON_KIND, names=COMPARISON_FILES, overwrite=overwrite
        )

    if data is None and dataset is None and fraction is None and seed is None:
        # Same images for everyone: the first model's data, sample and split.
        trained = load(names[0]).metadata.get("training") or {}
        data, fraction, seed = trained.get("data"), trained.get("fraction"), trained.get("seed")
        if data is None:
            dataset = trained.get("dataset")
            options = trained.get("options") or {}
            synthetic_n = options.get("n", synthetic_n)
    echo = (lambda m: click.echo(m, err=True)) if as_json else click.echo
    rows = []
    for name in names:
        m = _evaluate(
            name,
            data,
            dataset,
            synthetic_n,
            fraction,
            seed,
            split,
            n_resamples,
            device,
            None,
            not no_progress and not as_json,
            echo,
        )
        ci = m.get("macro_auroc_ci") or {}
        groups = m.get("groups", {})
        rows.append(
            {
                "model": name,
                "architecture": m["architecture"],
                "images": m["n_images"],
                "macro_auroc": m["macro_auroc"],
                "auroc_low": ci.get("low"),
                "auroc_high": ci.get("high"),
                "macro_f1": m["macro"].get("f1"),
                "micro_auroc": m["micro"].get("auroc"),
                "rare_auroc": groups.get("rare", {}).get("auroc"),
                "common_auroc": groups.get("common", {}).get("auroc"),
            }
        )
    scored = [r for r in rows if r["macro_auroc"] is not None]
    best = max(scored, key=lambda r: r["macro_auroc"])["model"] if scored else None
    result = {"split": split, "models": rows, "best": best}
    if report:
        with result_folder(report, kind=COMPARISON_KIND) as tmp:
            pd.DataFrame(rows).to_csv(tmp / "comparison.csv", index=False)
            (tmp / "comparison.json").write_text(json.dumps(result, indent=2))
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"{'model':<24} {'macro AUROC (95% CI)':<24} {'F1':>6} {'rare':>6} {'common':>6}")
    for r in rows:
        ci = f"{_f(r['macro_auroc'])} ({_f(r['auroc_low'])}-{_f(r['auroc_high'])})"
        click.echo(
            f"{r['model']:<24} {ci:<24} {_f(r['macro_f1']):>6} {_f(r['rare_auroc']):>6} {_f(r['common_auroc']):>6}"
        )
    click.echo(f"Best by macro AUROC on {split}: {best}")


BACKENDS = ("torch", "onnxruntime")
#: Failed images named in full in the summary line; the rest are counted.
FAILED_NAMED = 10


def _load_for_prediction(name: str, backend: str | None, device: str | None) -> tuple[Any, str]:
    """The model to predict with and the backend: a store name or folder with PyTorch, an
    ONNX file (or a store model exported on the fly) with onnxruntime."""
    is_onnx = name.lower().endswith(".onnx")
    if backend is None:
        backend = "onnxruntime" if is_onnx else "torch"
    if backend == "torch":
        if is_onnx:
            from cxrzoo.errors import UserError

            raise UserError(f"{name} is an ONNX file: predict it with --backend onnxruntime")
        from cxrzoo import load

        return load(name, device=_device(device)), backend
    from cxrzoo.export import OnnxModel
    from cxrzoo.optional import require

    require("onnxruntime", purpose="--backend onnxruntime")
    if not is_onnx:
        require("onnx", purpose="--backend onnxruntime with a store model (exported first)")
    if is_onnx:
        return OnnxModel(name, device=device), backend
    import tempfile

    from cxrzoo import load
    from cxrzoo.export import export_onnx

    model = load(name)
    with tempfile.TemporaryDirectory(prefix="cxrzoo-onnx-") as tmp:
        onnx_path = Path(tmp) / f"{Path(name).name}.onnx"
        export_onnx(model, onnx_path, check=False)
        return OnnxModel(onnx_path, device=device), backend


def _guarantee_statements(model: Any) -> dict[str, str]:
    """Per guaranteed finding, what its threshold promises (from ``cxrzoo calibrate --target``)."""
    promised = (getattr(model, "metadata", None) or {}).get("guarantees")
    if not isinstance(promised, dict):
        return {}
    out = {}
    for label, entry in (promised.get("per_finding") or {}).items():
        if entry.get("guaranteed"):
            out[label] = (
                f"{promised['statement']} (on {entry['cases']} cases of {promised['data'].get('dataset') or 'the site'})"
            )
        else:
            out[label] = f"not guaranteed: {entry.get('reason', '')}"
    return out


def _calibrated(model: Any) -> bool:
    calibrated = getattr(model, "calibrated", None)
    return bool(calibrated) if calibrated is not None else model.config.thresholds is not None


def _failure_summary(failed: list[dict[str, str]], total: int) -> str:
    shown = "; ".join(f"{f['image']} ({f['error']})" for f in failed[:FAILED_NAMED])
    more = f"; and {len(failed) - FAILED_NAMED} more" if len(failed) > FAILED_NAMED else ""
    return f"{len(failed)} of {total} image(s) could not be predicted: {shown}{more}"


def _progress(total: int, disable: bool) -> Any:
    from tqdm import tqdm

    # disable=None: shown only when stderr is a terminal.
    return tqdm(
        total=total, unit="img", file=sys.stderr, disable=True if disable else None, dynamic_ncols=True
    )


@click.command(cls=ZooCommand)
@click.argument("name", metavar="NAME")
@click.argument("images", nargs=-1, required=True, metavar="PATH...")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON (without --out).")
@click.option("--device", type=DEVICE, help="cpu, cuda, cuda:N, mps … (default: cuda when available).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    help="Decoding threads (default: one per usable CPU, at most 8; 0: decode in the main thread).",
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False),
    help="Write a table, one row per image: .csv, .json, .jsonl or .parquet (needs pyarrow).",
)
@click.option("--resume", is_flag=True, help="Skip the images already in --out and add the others.")
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace --out even when it is not a cxrzoo prediction table (refused without this).",
)
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    help="torch, or onnxruntime (default for an .onnx NAME; a store NAME is exported first).",
)
@click.option(
    "--ood",
    "ood_mode",
    type=click.Choice(["flag", "reject", "off"]),
    default="flag",
    show_default=True,
    help="Images outside the model's out-of-distribution gate: flag them (ood_score, "
    "in_distribution), reject them (no probabilities; named like unreadable images), or off.",
)
@click.option(
    "--uncertainty",
    is_flag=True,
    help="Add each probability's spread (ensemble members' disagreement, or the mirror image's).",
)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def predict(
    name: str,
    images: tuple[str, ...],
    as_json: bool,
    device: str | None,
    batch_size: int,
    workers: int | None,
    out_path: str | None,
    resume: bool,
    overwrite: bool,
    backend: str | None,
    ood_mode: str,
    uncertainty: bool,
    no_progress: bool,
) -> None:
    """Probabilities and calibrated positive findings for each image of PATH.

    NAME is a trained model (store name or folder) or an exported .onnx file. A PATH is an
    image file, a folder (searched recursively for PNG, JPEG, TIFF and DICOM) or a glob
    pattern. Images are decoded in parallel and predicted in batches; unreadable images are
    named on stderr (and in --out with their error), the rest are still predicted, and the
    exit code is then 1.

    A model with an out-of-distribution gate (fitted by 'cxrzoo train' or 'cxrzoo calibrate
    --ood') adds ood_score and in_distribution per image; --ood reject leaves the images
    outside unpredicted.
    """
    from cxrzoo.errors import UserError
    from cxrzoo.inference import expand_inputs, predict_stream
    from cxrzoo.reports.predictions import (
        PredictionWriter,
        check_output,
        detail_columns,
        gate_threshold,
        gated,
        path_key,
        table_row,
    )

    if resume and not out_path:
        raise UserError("--resume needs --out: it skips the images already in that table")
    if out_path:
        check_output(out_path, resume=resume, overwrite=overwrite)
    paths = expand_inputs(images)
    from cxrzoo.reports.distributed import predict_command, runs_across_ranks

    if runs_across_ranks(out_path, resume):  # torchrun: each rank predicts its share, rank 0 writes --out
        predict_command(
            name,
            paths,
            out_path,
            resume=resume,
            overwrite=overwrite,
            backend=backend,
            batch_size=batch_size,
            workers=workers,
            device=device,
            ood_mode=ood_mode,
            uncertainty=uncertainty,
            as_json=as_json,
        )
        return
    model, backend = _load_for_prediction(name, backend, device)
    labels = list(model.labels)
    thresholds = model.thresholds
    stream_device = device if backend == "torch" else None
    threshold = gate_threshold(model, ood_mode, name)
    if uncertainty and backend != "torch":
        raise UserError("--uncertainty needs the PyTorch backend (--backend torch)")
    extra = detail_columns(labels, ood=threshold is not None, uncertainty=uncertainty)

    def stream(items: list[Any]) -> Any:
        predictions = predict_stream(
            model,
            items,
            batch_size=batch_size,
            workers=workers,
            device=stream_device,
            ood=threshold is not None,
            uncertainty=uncertainty,
        )
        return gated(predictions, ood_mode, threshold)

    failed: list[dict[str, str]] = []
    if out_path:
        writer = PredictionWriter(out_path, labels, resume=resume, overwrite=overwrite, extra=extra)
        todo = [p for p in paths if path_key(p) not in writer.done]
        bar = _progress(len(todo), no_progress)
        complete = False
        try:
            rows: list[dict[str, Any]] = []
            for pred in stream(todo):
                rows.append(table_row(pred, model, labels, extra))
                if pred.error is not None:
                    failed.append({"image": pred.path or "", "error": pred.error})
                bar.update()
                if len(rows) >= batch_size:
                    writer.write(rows)
                    rows = []
            writer.write(rows)
            complete = True
        finally:
            bar.close()
            kept = writer.close(complete=complete)
            if not complete:
                where = (
                    f"{writer.rows_written} new row(s) kept in {out_path}"
                    if kept
                    else f"{out_path} left as it was"
                )
                click.echo(f"Interrupted: {where}; run again with --resume to finish.", err=True)
        skipped = len(paths) - len(todo)
        done = f"; {skipped} already in {out_path} skipped" if skipped else ""
        click.echo(f"Predicted {len(todo) - len(failed)} image(s) into {out_path}{done}.", err=as_json)
        if failed:
            click.echo(_failure_summary(failed, len(todo)), err=True)
            sys.exit(1)
        return

    results = []
    statements = _guarantee_statements(model)
    bar = _progress(len(paths), no_progress)
    try:
        for pred in stream(paths):
            bar.update()
            if pred.probabilities is None:
                failed.append({"image": pred.path or "", "error": pred.error or ""})
                bar.write(f"Skipping {pred.path}: {pred.error}", file=sys.stderr)
                continue
            result: dict[str, Any] = {
                "image": pred.path,
                "probabilities": dict(zip(labels, map(float, pred.probabilities), strict=True)),
                "positive": model.positives(pred.probabilities[None])[0],
                "thresholds": dict(zip(labels, map(float, thresholds), strict=True)),
            }
            info = pred.details or {}
            if "ood_score" in info:
                result["ood_score"] = info["ood_score"]
                result["in_distribution"] = info["in_distribution"]
            if "uncertainty" in info:
                result["uncertainty"] = dict(zip(labels, map(float, info["uncertainty"]), strict=True))
            if statements:
                result["guarantees"] = statements
            results.append(result)
    finally:
        bar.close()
    if as_json:
        click.echo(
            json.dumps(
                {"model": name, "calibrated": _calibrated(model), "results": results, "failed": failed},
                indent=2,
            )
        )
    else:
        if not _calibrated(model):
            click.echo("Note: this model has no calibrated thresholds; 0.5 is used.", err=True)
        for r in results:
            outside = (
                "  [OUT OF DISTRIBUTION: do not trust these calls]"
                if r.get("in_distribution") is False
                else ""
            )
            click.echo(f"{r['image']}: positive: {', '.join(r['positive']) or 'none'}{outside}")
            for label, p in sorted(r["probabilities"].items(), key=lambda kv: -kv[1]):
                mark = "+" if label in r["positive"] else " "
                click.echo(f"  {mark} {label:<20} {p:.3f}  (threshold {r['thresholds'][label]:.3f})")
    if failed:
        click.echo(_failure_summary(failed, len(paths)), err=True)
        sys.exit(1)


@click.command(cls=ZooCommand)
@click.argument("name")
@click.argument("images", nargs=-1, required=True, metavar="PATH...")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="explain", show_default=True)
@click.option("--top", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--method", type=click.Choice(["gradcam", "gradcam++"]), default="gradcam", show_default=True)
@click.option("--device", type=DEVICE, help="cpu, cuda, cuda:N, mps … (default: cuda when available).")
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace files in --out that an earlier explanation did not write (refused without this).",
)
def explain(
    name: str,
    images: tuple[str, ...],
    out_dir: str,
    top: int,
    method: str,
    device: str | None,
    overwrite: bool,
) -> None:
    """Grad-CAM overlays of each image of PATH for NAME's top findings.

    A PATH is an image file, a folder (searched recursively) or a glob pattern; one PNG per
    image and finding is written to --out, named IMAGE_FINDING.png. A file of that name that an
    earlier explanation did not write is refused before any work, unless --overwrite.
    """
    from cxrzoo import load
    from cxrzoo.data.io import ImageReadError
    from cxrzoo.inference import expand_inputs
    from cxrzoo.outputs import check_folder
    from cxrzoo.reports.gradcam import OVERLAY_KIND, explain_image, overlay_name

    paths = expand_inputs(images)
    model = load(name, device=_device(device))
    counts: dict[str, int] = {}
    stems = []
    for path in paths:
        # Two images of the same name in different folders get stem, stem-2, stem-3 …
        count = counts[path.stem] = counts.get(path.stem, 0) + 1
        stems.append(path.stem if count == 1 else f"{path.stem}-{count}")
    # Which findings come out on top is known only after predicting: check every finding's name.
    names = [overlay_name(stem, label) for stem in stems for label in model.labels]
    check_folder(out_dir, option="--out", kind=OVERLAY_KIND, names=names, overwrite=overwrite)
    failed: list[dict[str, str]] = []
    for path, stem in zip(paths, stems, strict=True):
        try:
            written = explain_image(
                model, path, out_dir, top=top, method=method, stem=stem, overwrite=overwrite
            )
        except ImageReadError as exc:
            failed.append({"image": str(path), "error": exc.reason})
            click.echo(f"Skipping {path}: {exc.reason}", err=True)
            continue
        if len(paths) > 1:
            click.echo(f"{path}:")
        for item in written:
            flag = "positive" if item["positive"] else "below threshold"
            click.echo(f"{item['finding']:<20} {item['probability']:.3f} ({flag})  {item['path']}")
    if failed:
        click.echo(_failure_summary(failed, len(paths)), err=True)
        sys.exit(1)


@click.command(cls=ZooCommand)
@click.argument("name")
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True)
@click.option("--out", "out_path", type=click.Path(dir_okay=False), help="Default: NAME.onnx")
@click.option("--opset", type=int, default=17, show_default=True)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace --out even when it is not a cxrzoo ONNX export (refused without this).",
)
def export(name: str, fmt: str, out_path: str | None, opset: int, overwrite: bool) -> None:
    """Export NAME to ONNX and check that onnxruntime matches PyTorch.

    The file carries the labels, calibrated thresholds and preprocessing in its metadata, so
    'cxrzoo predict FILE.onnx PATH --backend onnxruntime' needs nothing else.
    """
    from cxrzoo import load
    from cxrzoo.export import check_export_path, export_onnx
    from cxrzoo.optional import require

    require("onnx", purpose="ONNX export")
    require("onnxruntime", purpose="Checking the ONNX export")
    target = check_export_path(out_path or f"{Path(name).name}.onnx", overwrite=overwrite)
    model = load(name)
    result = export_onnx(model, target, opset=opset, overwrite=overwrite)
    click.echo(
        f"Wrote {result['path']} (opset {opset}); onnxruntime vs PyTorch max |diff| {result['max_abs_diff']:.2e}"
    )
