"""Evaluating a trained model on a split, and the report that goes with it."""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrzoo.data.spec import DataSpec, load_splits
from cxrzoo.errors import DataError, UserError, show
from cxrzoo.inference import predict_table
from cxrzoo.labels import DEFAULT_RARE
from cxrzoo.model import ZooModel
from cxrzoo.outputs import check_folder, result_folder

Echo = Callable[[str], None]
SPLITS = ("test", "val", "train")


def data_spec_for(
    model: ZooModel,
    *,
    data: str | None = None,
    dataset: str | None = None,
    options: dict[str, Any] | None = None,
    fraction: float | None = None,
    seed: int | None = None,
) -> DataSpec:
    """The data to evaluate on: what was given, else what the model was trained on.

    Without data options a model is evaluated on the same data set, sample and patient split
    it was trained with, so its test split is exactly the images it never saw.
    """
    trained = model.metadata.get("training") or {}
    if data is None and dataset is None and trained and not options:
        spec = DataSpec.from_dict(trained)
    else:
        spec = DataSpec(data=data, dataset=dataset, options=options)
        if data is None and dataset is None:
            spec.dataset = "synthetic"
    if fraction is not None:
        spec.fraction = fraction
    if seed is not None:
        spec.seed = seed
    return spec


def _rare(model: ZooModel) -> list[str]:
    rare = model.rare_findings() or DEFAULT_RARE
    return [r for r in rare if r in model.labels]


def subgroup_metrics(
    table: pd.DataFrame, y: np.ndarray, p: np.ndarray, labels: Sequence[str]
) -> dict[str, Any]:
    """Macro AUROC and image count by sex and by view position."""
    from cxrzoo.metrics import evaluate_predictions

    out: dict[str, Any] = {}
    for column, title in (("sex", "sex"), ("view", "view")):
        if column not in table:
            continue
        values = table[column].fillna("unknown").astype(str).to_numpy()
        for value in sorted(set(values)):
            mask = values == value
            if mask.sum() < 2:
                continue
            m = evaluate_predictions(y[mask], p[mask], labels, metrics=["auroc"])
            out[f"{title}={value}"] = {"images": int(mask.sum()), "macro_auroc": m["macro_auroc"]}
    return out


def _split_table(spec: DataSpec, split: str, echo: Echo) -> pd.DataFrame:
    if split not in SPLITS:
        raise UserError(f"Unknown split {split!r}; expected one of {SPLITS}")
    splits = load_splits(spec, echo=echo)
    table = getattr(splits, split)
    if len(table) == 0:
        raise DataError(f"The {split} split of {spec.name} is empty")
    return table


def evaluate_model(
    model: ZooModel,
    spec: DataSpec,
    *,
    split: str = "test",
    report_dir: str | Path | None = None,
    overwrite: bool = False,
    n_resamples: int = 1000,
    device: str = "cpu",
    progress: bool = True,
    echo: Echo = print,
    metrics: Sequence[str] | None = None,
    uncertainty: bool = False,
) -> dict[str, Any]:
    """Predict ``split`` of ``spec``'s data, score it at the model's calibrated thresholds, with
    bootstrap confidence intervals; write the report files when ``report_dir`` is given (see
    :func:`check_report` for when its files are replaced).

    With ``uncertainty``, each image's spread per finding goes into predictions.csv and the
    mean per finding into the metrics (one more forward pass for a single model).
    ``metrics`` names registered metrics (plugins' too) to compute beside the standard ones;
    ``None`` computes the default set. Findings the data cannot score (absent from the data set,
    or without known positives) are listed with the reason under ``not_scorable``.
    """
    if report_dir is not None:
        check_report(report_dir, overwrite=overwrite)
    table = _split_table(spec, split, echo)
    found: list[dict[str, Any]] = []
    probs, arrays = predict_table(
        model, table, device=device, echo=echo, progress=progress, details=found, uncertainty=uncertainty
    )
    rows = table.set_index("image").loc[arrays.names].reset_index()
    extra: dict[str, Any] = {}
    columns: dict[str, np.ndarray] = {}
    gate = getattr(model, "ood_detector", None)
    if gate is not None and found:
        values = np.asarray([d["ood_score"] for d in found])
        inside = gate.inside(values)
        columns = {"ood_score": values, "in_distribution": inside}
        extra["ood"] = {
            "threshold": gate.threshold,
            "false_rejection_rate": gate.record.get("false_rejection_rate"),
            "images": len(values),
            "flagged": int((~inside).sum()),
            "flagged_share": float((~inside).mean()),
        }
    if uncertainty and found:
        spread = np.stack([d["uncertainty"] for d in found])
        columns.update({f"uncertainty_{label}": spread[:, j] for j, label in enumerate(model.labels)})
        extra["uncertainty"] = {
            "method": "ensemble members' standard deviation"
            if model.member_models()
            else "half |p - p(mirror)|",
            "mean": dict(zip(model.labels, map(float, spread.mean(0)), strict=True)),
        }
    from cxrzoo.calibrate import guarantee_report

    promised = guarantee_report(model, arrays.labels, probs)
    if promised is not None:
        extra["guarantees"] = promised
    return score_predictions(
        arrays.labels,
        probs,
        rows,
        extra=extra,
        image_columns=columns,
        labels=model.labels,
        thresholds=model.thresholds.tolist(),
        calibrated=model.config.thresholds is not None,
        rare=_rare(model),
        name=model.metadata.get("name") or model.architecture,
        architecture=model.architecture,
        spec=spec,
        split=split,
        report_dir=report_dir,
        overwrite=overwrite,
        n_resamples=n_resamples,
        metrics=metrics,
    )


def score_predictions(
    y: np.ndarray,
    probs: np.ndarray,
    rows: pd.DataFrame,
    *,
    labels: Sequence[str],
    thresholds: Sequence[float],
    calibrated: bool,
    rare: Sequence[str],
    name: str,
    architecture: str,
    spec: DataSpec,
    split: str,
    report_dir: str | Path | None = None,
    overwrite: bool = False,
    n_resamples: int = 1000,
    metrics: Sequence[str] | None = None,
    extra: dict[str, Any] | None = None,
    image_columns: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """The evaluation of probabilities ``probs`` against ``y`` (NaN = unknown): metrics,
    bootstrap intervals, subgroups and, with ``report_dir``, the report files. The same for a
    cxrzoo model and for any external model's predictions."""
    from cxrzoo.metrics import bootstrap_ci, evaluate_predictions

    labels = list(labels)
    result = evaluate_predictions(y, probs, labels, thresholds=thresholds, rare=rare, metrics=metrics)
    if n_resamples:
        ci = bootstrap_ci(y, probs, labels, thresholds=thresholds, n_resamples=n_resamples)
        result["ci"] = ci
        for label, entry in result["per_class"].items():
            entry["ci"] = ci.get("per_class", {}).get(label)
        result["macro_auroc_ci"] = ci.get("macro_auroc")
    result["subgroups"] = subgroup_metrics(rows, y, probs, labels)
    result.update(
        {
            "model": name,
            "architecture": architecture,
            "split": split,
            "data": spec.to_dict(),
            "calibrated": calibrated,
            "thresholds": dict(zip(labels, [float(t) for t in thresholds], strict=True)),
            "evaluated": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }
    )
    result.update(extra or {})
    if report_dir is not None:
        write_report(
            Path(report_dir),
            result,
            y,
            probs,
            labels,
            rare,
            rows,
            overwrite=overwrite,
            image_columns=image_columns,
        )
    return result


#: Columns a predictions file may name its images by, in order of preference.
ID_COLUMNS = ("image", "Image Index", "image_id", "Path", "path", "filename")
_PROB_PREFIXES = ("prob_", "p_", "prob ", "probability_")


def read_predictions(path: str | Path) -> tuple[pd.Series, list[str], np.ndarray]:
    """An external predictions CSV: its image names, findings and probabilities ``[N, F]``.

    The image column is one of :data:`ID_COLUMNS` (a path is reduced to its file name); each
    other column whose name (without a ``prob_`` prefix) is a known finding holds that finding's
    probability. Thresholds are not part of such a file: calls are made at 0.5.
    """
    from cxrzoo.labels import canonical

    path = Path(path)
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read the predictions CSV ({exc})") from None
    id_column = next((c for c in ID_COLUMNS if c in frame.columns), None)
    if id_column is None:
        raise DataError(f"{path}: no image column; expected one of {', '.join(ID_COLUMNS)}")
    findings, columns = [], []
    for column in frame.columns:
        if column == id_column:
            continue
        name = str(column)
        for prefix in _PROB_PREFIXES:
            if name.lower().startswith(prefix):
                name = name[len(prefix) :]
                break
        finding = canonical(name)
        if finding is not None and finding not in findings:
            findings.append(finding)
            columns.append(column)
    if not findings:
        raise DataError(f"{path}: no column names a finding (e.g. 'Effusion' or 'prob_Effusion')")
    values = frame[columns].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values) | (values < 0) | (values > 1)
    if bad.any():
        row, col = (int(v[0]) for v in np.nonzero(bad))
        raise DataError(
            f"{path}: line {row + 2}, column {columns[col]!r}: {show(frame[columns[col]].iloc[row])} is not a "
            f"probability in [0, 1]"
        )
    names = frame[id_column].astype(str).map(lambda p: Path(p).name if "/" in p or "\\" in p else p)
    if names.duplicated().any():
        raise DataError(f"{path}: image {show(names[names.duplicated()].iloc[0])} appears twice")
    return names, findings, values


def evaluate_predictions_file(
    path: str | Path,
    spec: DataSpec,
    *,
    split: str = "test",
    report_dir: str | Path | None = None,
    overwrite: bool = False,
    n_resamples: int = 1000,
    echo: Echo = print,
    metrics: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Score an external model's predictions on ``split`` of ``spec``'s data, with the same
    metrics and report as a cxrzoo model (at 0.5: the file carries no calibrated thresholds)."""
    from cxrzoo.labels import table_targets

    if report_dir is not None:
        check_report(report_dir, overwrite=overwrite)
    names, findings, values = read_predictions(path)
    table = _split_table(spec, split, echo)
    by_name = pd.Series(np.arange(len(names)), index=names.to_numpy())
    present = table["image"].astype(str).isin(by_name.index)
    missing = int((~present).sum())
    if not present.any():
        raise DataError(f"{path}: none of the {len(table)} images of the {split} split has a prediction")
    if missing:
        echo(
            f"{missing} image(s) of the {split} split have no prediction in {Path(path).name}; scoring the rest"
        )
    rows = table[present].reset_index(drop=True)
    probs = values[by_name.loc[rows["image"].astype(str)].to_numpy()]
    y = table_targets(rows, findings)
    return score_predictions(
        y,
        probs,
        rows,
        labels=findings,
        thresholds=[0.5] * len(findings),
        calibrated=False,
        rare=[r for r in DEFAULT_RARE if r in findings],
        name=Path(path).name,
        architecture="external predictions",
        spec=spec,
        split=split,
        report_dir=report_dir,
        overwrite=overwrite,
        n_resamples=n_resamples,
        metrics=metrics,
    )


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def per_class_frame(metrics: dict[str, Any]) -> pd.DataFrame:
    """One row per finding: counts, every metric that ran (in the order it ran), the AUROC's CI."""
    ran = list(metrics.get("metrics") or [])
    rows = []
    for label, m in metrics["per_class"].items():
        ci = m.get("ci") or {}
        auroc_ci = ci.get("auroc") if isinstance(ci, dict) else None
        row: dict[str, Any] = {"finding": label, "positives": m.get("positives"), "unknown": m.get("unknown")}
        for name in ran:
            row[name] = m.get(name)
            if name == "auroc":
                row["auroc_low"] = (auroc_ci or {}).get("low")
                row["auroc_high"] = (auroc_ci or {}).get("high")
        row.update({k: m.get(k) for k in ("threshold", "tp", "fp", "fn", "tn")})
        row["not_scorable"] = (metrics.get("not_scorable") or {}).get(label, "")
        rows.append(row)
    return pd.DataFrame(rows)


#: The files of an evaluation report (``subgroups.png`` only when the data has subgroups).
REPORT_FILES = (
    "metrics.json",
    "per_class.csv",
    "confusion.csv",
    "predictions.csv",
    "roc_curves.png",
    "rare_vs_common.png",
    "confusion.png",
    "subgroups.png",
    "report.md",
)
REPORT_KIND = "evaluation report"


def check_report(out: str | Path, *, overwrite: bool = False) -> Path:
    """Check ``--report`` before any work: its files may be written where none exists, where an
    earlier evaluation report wrote them, or with ``overwrite`` (see :mod:`cxrzoo.outputs`)."""
    return check_folder(out, option="--report", kind=REPORT_KIND, names=REPORT_FILES, overwrite=overwrite)


def write_report(
    out: Path,
    metrics: dict[str, Any],
    y: np.ndarray,
    probs: np.ndarray,
    labels: Sequence[str],
    rare: Sequence[str],
    rows: pd.DataFrame,
    *,
    overwrite: bool = False,
    image_columns: dict[str, np.ndarray] | None = None,
) -> Path:
    """metrics.json, per_class.csv, confusion.csv, predictions.csv, figures and report.md.

    ``image_columns`` adds per-image columns to predictions.csv (the gate's ``ood_score``).

    The files are written beside ``out`` and renamed into it together when all are done, so an
    interrupted evaluation leaves an earlier report as it was; other files in ``out`` are never
    touched.
    """
    from cxrzoo.reports import plots

    check_report(out, overwrite=overwrite)
    with result_folder(out, kind=REPORT_KIND) as tmp:
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
        frame = per_class_frame(metrics)
        frame.to_csv(tmp / "per_class.csv", index=False)
        frame[["finding", "threshold", "tp", "fp", "fn", "tn"]].to_csv(tmp / "confusion.csv", index=False)
        preds = pd.DataFrame(probs, columns=list(labels))
        preds.insert(0, "image", rows["image"].to_numpy())
        for column, values in (image_columns or {}).items():
            preds[column] = values
        preds.to_csv(tmp / "predictions.csv", index=False, float_format="%.6f")
        plots.roc_curves(y, probs, labels, metrics["per_class"], tmp / "roc_curves.png")
        plots.rare_vs_common(metrics["per_class"], rare, tmp / "rare_vs_common.png")
        plots.confusion_counts(metrics["per_class"], tmp / "confusion.png")
        if metrics.get("subgroups"):
            plots.subgroups(metrics["subgroups"], tmp / "subgroups.png")
        (tmp / "report.md").write_text(markdown_report(metrics))
    return out


#: Metrics the Markdown table always shows; any other metric that ran gets its own column.
_TABLE_METRICS = ("auroc", "f1", "precision", "recall", "average_precision", "specificity", "brier", "ece")


def markdown_report(metrics: dict[str, Any]) -> str:
    ci = metrics.get("macro_auroc_ci") or {}
    groups = metrics.get("groups", {})
    lines = [
        f"# Evaluation of {metrics['model']} ({metrics['architecture']})",
        "",
        f"Split **{metrics['split']}** of **{metrics['data']['dataset']}** "
        f"({metrics['n_images']} images), evaluated {metrics['evaluated']}.",
        "",
        f"- Macro AUROC: **{_fmt(metrics['macro_auroc'])}**"
        + (f" (95% CI {_fmt(ci.get('low'))}-{_fmt(ci.get('high'))})" if ci else ""),
        f"- Macro F1 at calibrated thresholds: {_fmt(metrics['macro'].get('f1'))}",
        f"- Micro AUROC: {_fmt(metrics['micro'].get('auroc'))}",
        f"- Rare findings ({', '.join(groups.get('rare', {}).get('labels', []))}): mean AUROC "
        f"{_fmt(groups.get('rare', {}).get('auroc'))}; common: {_fmt(groups.get('common', {}).get('auroc'))}",
        f"- Thresholds: {'calibrated on validation' if metrics['calibrated'] else 'NOT calibrated (0.5)'}",
    ]
    not_scorable = metrics.get("not_scorable") or {}
    undefined = [
        label for label in metrics.get("undefined", {}).get("auroc") or [] if label not in not_scorable
    ]
    if undefined:
        lines.append(
            f"- AUROC undefined (no positives or no negatives in this split): {', '.join(undefined)}"
        )
    if not_scorable:
        lines += ["", "## Findings these data cannot score", ""]
        lines += [f"- {label}: {why}" for label, why in not_scorable.items()]
    extra = [name for name in metrics.get("metrics") or [] if name not in _TABLE_METRICS]
    header = ["Finding", "n+", "AUROC (95% CI)", "F1", "Precision", "Recall", *extra, "Threshold"]
    lines += [
        "",
        "## Per finding",
        "",
        "| " + " | ".join(header) + " |",
        "|---|---:|---|" + "---:|" * (len(header) - 3),
    ]
    for label, m in metrics["per_class"].items():
        c = ((m.get("ci") or {}).get("auroc")) or {}
        cis = f" ({_fmt(c.get('low'))}-{_fmt(c.get('high'))})" if c else ""
        cells = [
            label,
            str(m.get("positives")),
            f"{_fmt(m.get('auroc'))}{cis}",
            *(_fmt(m.get(name)) for name in ("f1", "precision", "recall", *extra)),
            _fmt(m.get("threshold")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "## ROC curves",
        "",
        "![ROC curves](roc_curves.png)",
        "",
        "## Rare vs common findings",
        "",
        "![Rare vs common](rare_vs_common.png)",
        "",
        "## Confusion counts at the calibrated thresholds",
        "",
        "![Confusion counts](confusion.png)",
        "",
        "Counts per finding are also in `confusion.csv`.",
        "",
    ]
    if metrics.get("subgroups"):
        lines += ["## By sex and view position", "", "| Subgroup | Images | Macro AUROC |", "|---|---:|---:|"]
        for name, s in metrics["subgroups"].items():
            lines.append(f"| {name} | {s['images']} | {_fmt(s['macro_auroc'])} |")
        lines += ["", "![Subgroups](subgroups.png)", ""]
    promised = metrics.get("guarantees")
    if promised and promised.get("per_finding"):
        lines += [
            f"## Guarantees: {promised['statement']}",
            "",
            f"| Finding | Promised {promised['target']} | Achieved here | Cases | Met |",
            "|---|---:|---:|---:|---|",
        ]
        for name, g in promised["per_finding"].items():
            met = "n/a" if g["met"] is None else ("yes" if g["met"] else "**no**")
            lines.append(f"| {name} | {g['promised']:.2f} | {_fmt(g['achieved'])} | {g['cases']} | {met} |")
        lines.append("")
    spread = metrics.get("uncertainty")
    if spread:
        lines += [
            f"## Uncertainty ({spread['method']})",
            "",
            "| Finding | Mean spread of the probability |",
            "|---|---:|",
            *(f"| {name} | {value:.4f} |" for name, value in spread["mean"].items()),
            "",
            "Each image's spread per finding is in `predictions.csv` (`uncertainty_<finding>`).",
            "",
        ]
    gate = metrics.get("ood")
    if gate:
        lines += [
            "## Out-of-distribution gate",
            "",
            f"{gate['flagged']} of {gate['images']} images ({gate['flagged_share']:.1%}) are outside the gate "
            f"(threshold {gate['threshold']:.3f}, chosen to flag {gate['false_rejection_rate']:.0%} of "
            f"in-distribution images); their scores are in `predictions.csv`.",
            "",
        ]
    lines += [
        "Files: `metrics.json` (everything above), `per_class.csv`, `confusion.csv`, `predictions.csv`.",
        "",
    ]
    return "\n".join(lines)
