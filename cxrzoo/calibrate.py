"""Calibrating a trained model on labelled images, without retraining it.

:func:`recalibrate` gives a model, from images of a site (any data set layout, DICOM included):

- per-finding thresholds with a finite-sample guarantee (:mod:`cxrzoo.conformal`), stored with
  the guarantee, the number of cases it rests on and the data it was computed on, under the
  ``guarantees`` entry of config.json; findings with too few known cases keep their threshold
  and are named with the count needed;
- an out-of-distribution gate (:mod:`cxrzoo.ood`) fitted on those images' patients (four in
  five) and thresholded on the others, for a stated false-rejection rate.

``cxrzoo calibrate`` saves the result as a new store entry (default ``NAME-<folder name>``),
so the original model is never changed. :func:`fit_training_gate` is the gate ``cxrzoo train``
fits after calibrating thresholds.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from cxrzoo.conformal import Target, achieved, guarantee_thresholds
from cxrzoo.data.spec import DataSpec, load_splits
from cxrzoo.errors import DataError, UserError
from cxrzoo.model import ZooModel

Echo = Callable[[str], None]
SPLITS = ("all", "train", "val", "test")
#: Largest number of training images the gate is fitted on (a random sample beyond).
MAX_GATE_IMAGES = 4000


def calibration_table(spec: DataSpec, split: str, echo: Echo) -> pd.DataFrame:
    """The images of ``split`` of ``spec``'s data; ``all``: every image of every split."""
    if split not in SPLITS:
        raise UserError(f"--split {split!r}: expected one of {', '.join(SPLITS)}")
    splits = load_splits(spec, echo=echo)
    parts = [splits.train, splits.val, splits.test] if split == "all" else [getattr(splits, split)]
    table = (
        pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) else parts[0]
    )
    if len(table) == 0:
        raise DataError(f"The {split} split of {spec.name} has no images")
    return table


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _patient_split(table: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Four patients in five to fit on, the fifth to threshold on (no patient on both sides)."""
    patients = table["patient"].astype(str) if "patient" in table else table["image"].astype(str)
    unique = np.array(sorted(patients.unique()))
    rng = np.random.default_rng(seed)
    held = set(rng.permutation(unique)[: max(1, round(len(unique) / 5))].tolist())
    mask = patients.isin(held).to_numpy()
    return table[~mask], table[mask]


def _sample(paths: list[str], limit: int, seed: int) -> list[str]:
    if len(paths) <= limit:
        return paths
    pick = np.random.default_rng(seed).choice(len(paths), size=limit, replace=False)
    return [paths[i] for i in sorted(pick)]


def fit_gate(
    model: ZooModel,
    fit_paths: list[str],
    heldout_paths: list[str],
    *,
    rate: float,
    device: str | None,
    data: dict[str, Any],
    echo: Echo,
    seed: int = 0,
) -> None:
    """Fit ``model``'s out-of-distribution gate and record where it came from."""
    from cxrzoo.ood import fit_detector

    detector = fit_detector(
        model, _sample(fit_paths, MAX_GATE_IMAGES, seed), heldout_paths, rate=rate, device=device
    )
    detector.record.update({"data": data, "fitted": _now()})
    model.ood_detector = detector
    r = detector.record
    echo(
        f"Out-of-distribution gate: fitted on {r['fit_images']} images, threshold {r['threshold']:.3f} "
        f"for a {rate:.0%} false-rejection rate ({r['heldout_flagged']:.1%} of {r['heldout_images']} "
        f"held-out images flagged)"
    )


def fit_training_gate(
    model: ZooModel, splits: Any, *, rate: float, device: str | None, data: dict, echo: Echo
) -> None:
    """The gate ``cxrzoo train`` fits: on the training images, thresholded on validation. A data
    set too small for one is a note, not a failure."""
    if rate <= 0:
        return
    try:
        fit_gate(
            model,
            splits.train["path"].astype(str).tolist(),
            splits.val["path"].astype(str).tolist(),
            rate=rate,
            device=device,
            data=data,
            echo=echo,
        )
    except DataError as exc:
        echo(f"No out-of-distribution gate: {exc}")


def recalibrate(
    model: ZooModel,
    spec: DataSpec,
    *,
    split: str = "all",
    target: Target | None = None,
    ood: bool = False,
    rate: float = 0.05,
    device: str | None = None,
    progress: bool = True,
    echo: Echo = print,
) -> dict[str, Any]:
    """Guaranteed thresholds (``target``) and/or an out-of-distribution gate (``ood``) for
    ``model`` from ``split`` of ``spec``'s images; returns what was done, per finding."""
    from cxrzoo.inference import predict_table

    if target is None and not ood:
        raise UserError("Nothing to calibrate: give --target KIND=LEVEL, --ood, or both")
    table = calibration_table(spec, split, echo)
    summary: dict[str, Any] = {"data": spec.to_dict(), "split": split, "images": len(table)}
    if target is not None:
        probs, arrays = predict_table(model, table, device=device, echo=echo, progress=progress)
        found = guarantee_thresholds(probs, arrays.labels, model.labels, target)
        thresholds = [
            g.threshold if g.threshold is not None else float(old)
            for g, old in zip(found.values(), model.thresholds, strict=True)
        ]
        model.set_thresholds(thresholds)
        model.metadata["guarantees"] = {
            "target": target.kind,
            "level": target.level,
            "confidence": target.confidence,
            "statement": target.describe(),
            "data": spec.to_dict(),
            "split": split,
            "images": len(arrays.names),
            "calibrated": _now(),
            "per_finding": {name: g.to_dict() for name, g in found.items()},
        }
        summary["guarantees"] = model.metadata["guarantees"]
    if ood:
        fit, held = _patient_split(table, spec.seed)
        fit_gate(
            model,
            fit["path"].astype(str).tolist(),
            held["path"].astype(str).tolist(),
            rate=rate,
            device=device,
            data={**spec.to_dict(), "split": split},
            echo=echo,
        )
        summary["ood"] = dict(model.ood_detector.record)
    return summary


def guarantee_report(model: ZooModel, labels: np.ndarray, probs: np.ndarray) -> dict[str, Any] | None:
    """The promised value of each guaranteed finding beside the one achieved on these images
    (``labels`` aligned to the model's, NaN unknown), for ``evaluate``; None without guarantees."""
    promised = model.metadata.get("guarantees")
    if not isinstance(promised, dict):
        return None
    kind, level = promised["target"], float(promised["level"])
    rows = {}
    for j, name in enumerate(model.labels):
        entry = promised.get("per_finding", {}).get(name) or {}
        if not entry.get("guaranteed"):
            continue
        value, cases = achieved(probs[:, j], labels[:, j], float(model.thresholds[j]), kind)
        rows[name] = {
            "promised": level,
            "achieved": value,
            "cases": cases,
            "met": None if value is None else bool(value >= level),
            "threshold": float(model.thresholds[j]),
        }
    return {"target": kind, "statement": promised.get("statement"), "per_finding": rows}


__all__ = ["SPLITS", "calibration_table", "fit_training_gate", "guarantee_report", "recalibrate"]
