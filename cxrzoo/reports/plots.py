"""Figures of an evaluation report (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: evaluation runs on servers without a display

import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import roc_curve


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def roc_curves(
    y_true: np.ndarray, y_score: np.ndarray, labels: Sequence[str], per_class: dict[str, Any], path: Path
) -> Path:
    """One ROC curve per finding (findings without positives are listed as undefined)."""
    cols = 4
    rows = -(-len(labels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    for ax, (j, label) in zip(axes.flat, enumerate(labels)):
        auc = per_class[label].get("auroc")
        known = ~np.isnan(y_true[:, j])  # images where the data know this finding
        y = y_true[known, j]
        if auc is None:
            ax.text(0.5, 0.5, "undefined\n(no positives\nor negatives)", ha="center", va="center")
        else:
            fpr, tpr, _ = roc_curve(y, y_score[known, j])
            ax.plot(fpr, tpr, lw=1.5)
        ax.plot([0, 1], [0, 1], ls="--", lw=0.8, color="grey")
        title = f"{label}\nAUROC " + ("n/a" if auc is None else f"{auc:.3f}") + f" (n+={int(y.sum())})"
        ax.set_title(title, fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(labels) :]:
        ax.axis("off")
    return _save(fig, path)


def rare_vs_common(per_class: dict[str, Any], rare: Sequence[str], path: Path) -> Path:
    """Per-finding AUROC bars coloured by group, with the group means."""
    labels = list(per_class)
    values = [per_class[lab].get("auroc") for lab in labels]
    colors = ["tab:red" if lab in rare else "tab:blue" for lab in labels]
    fig, ax = plt.subplots(figsize=(9, 4))
    x = np.arange(len(labels))
    ax.bar(x, [np.nan if v is None else v for v in values], color=colors)
    for group, color in (("rare", "tab:red"), ("common", "tab:blue")):
        vals = [v for lab, v in zip(labels, values) if v is not None and ((lab in rare) == (group == "rare"))]
        if vals:
            ax.axhline(
                float(np.mean(vals)), color=color, ls="--", lw=1, label=f"{group} mean {np.mean(vals):.3f}"
            )
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("AUROC")
    ax.set_title("AUROC per finding: rare (red) vs common (blue)")
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def confusion_counts(per_class: dict[str, Any], path: Path) -> Path:
    """TP / FP / FN / TN per finding at the calibrated thresholds."""
    labels = list(per_class)
    keys = ("tp", "fp", "fn", "tn")
    data = np.array([[per_class[lab].get(k, 0) for k in keys] for lab in labels], dtype=float)
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(labels) + 1.2))
    ax.imshow(np.log1p(data), cmap="Blues", aspect="auto")
    for i in range(len(labels)):
        for j in range(len(keys)):
            ax.text(j, i, int(data[i, j]), ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(keys)), [k.upper() for k in keys])
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_title("Confusion counts at calibrated thresholds")
    return _save(fig, path)


def subgroups(table: dict[str, dict[str, Any]], path: Path) -> Path:
    """Macro AUROC per subgroup (sex, view position) with image counts."""
    names = list(table)
    values = [table[n].get("macro_auroc") for n in names]
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(names)), 3.6))
    ax.bar(range(len(names)), [np.nan if v is None else v for v in values], color="tab:green")
    for i, n in enumerate(names):
        v = values[i]
        ax.text(
            i,
            (v or 0) + 0.02,
            f"{'n/a' if v is None else f'{v:.3f}'}\nn={table[n]['images']}",
            ha="center",
            fontsize=8,
        )
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("macro AUROC")
    ax.set_title("Macro AUROC by sex and view position")
    return _save(fig, path)
