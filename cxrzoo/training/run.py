"""From a model name and a data set to a trained, calibrated model in the store.

    from cxrzoo.training import train_model
    model = train_model("rare_disease", data="~/nih-chest-xrays", fraction=0.05)

The steps: open the data set, catalogue it, sample and split it by patient, preprocess each
image once into the cache, train with early stopping, calibrate per-finding thresholds on
validation, and save weights + config (thresholds, data, split, recipe, metrics) + card.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from cxrzoo.config import ModelConfig
from cxrzoo.data.spec import DataSpec, SplitTables, as_data, load_splits
from cxrzoo.model import ZooModel
from cxrzoo.training.distributed import DistContext
from cxrzoo.training.loader import ArrayData
from cxrzoo.training.recipes import Recipe, get_recipe
from cxrzoo.training.trainer import Trainer, history_csv, predict_arrays

Echo = Callable[[str], None]


def arrays_for(
    table: pd.DataFrame,
    config: ModelConfig,
    *,
    echo: Echo = print,
    workers: int | None = None,
    progress: bool = True,
) -> ArrayData:
    """Preprocess ``table``'s images as ``config`` says (cached) and line up their labels.

    Images that fail to decode are reported by name and left out.
    """
    from cxrzoo.data.cache import build_cache
    from cxrzoo.transforms import Preprocessing

    prep = Preprocessing.from_config(config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unreadable images are reported below, once
        cache = build_cache(table, prep, workers=workers, progress=progress)
    if cache.failed:
        shown = ", ".join(f"{n} ({r})" for n, r in list(cache.failed.items())[:10])
        more = f" and {len(cache.failed) - 10} more" if len(cache.failed) > 10 else ""
        echo(f"Skipped {len(cache.failed)} unreadable image(s): {shown}{more}")
    keep = table[~table["image"].isin(cache.failed)]
    rows = cache.indices(keep["image"].tolist())
    from cxrzoo.labels import table_targets

    labels = table_targets(keep, config.labels)
    return ArrayData(cache.images, rows, labels, keep["image"].tolist(), keep["patient"].astype(str).tolist())


def predict_table(
    model: ZooModel,
    table: pd.DataFrame,
    *,
    device: str | torch.device = "cpu",
    batch_size: int = 128,
    echo: Echo = print,
    progress: bool = True,
) -> tuple[np.ndarray, ArrayData]:
    """Probabilities for ``table``'s images with the model's own preprocessing.

    An ensemble predicts with each member on that member's preprocessing and combines.
    """
    members = getattr(model, "members", None)
    if members is not None and hasattr(model, "combine"):
        outputs = [
            predict_table(m, table, device=device, batch_size=batch_size, echo=echo, progress=progress)
            for m in members
        ]
        names = set(outputs[0][1].names)
        for _, d in outputs[1:]:
            names &= set(d.names)
        aligned = []
        for probs, d in outputs:
            keep = np.array([n in names for n in d.names])
            aligned.append(torch.from_numpy(probs[keep]))
        data = outputs[0][1].subset(np.flatnonzero([n in names for n in outputs[0][1].names]))
        return model.combine(aligned).numpy(), data
    data = arrays_for(table, model.config, echo=echo, progress=progress)
    dev = torch.device(device)
    model.to(dev)
    probs = predict_arrays(model, data, model.preprocessing(), device=dev, batch_size=batch_size)
    return probs, data


def _rare_labels(model: ZooModel) -> Sequence[str] | None:
    return getattr(model.config, "rare_labels", None)


def calibrate_and_score(
    model: ZooModel,
    labels: np.ndarray,
    probs: np.ndarray,
    *,
    method: str,
    split: str,
    dataset: str,
    train_prevalence: np.ndarray | None = None,
) -> dict[str, Any]:
    """Set the model's thresholds from these (validation) predictions; return its metrics.

    A finding with no positives in validation cannot be calibrated there. Its threshold is
    then the score above which validation images occur at the finding's training prevalence
    (the model calls it about as often as it was seen), or 0.5 without a prevalence.
    """
    from cxrzoo.metrics import calibrate_thresholds, evaluate_predictions

    calibration = calibrate_thresholds(labels, probs, method=method)
    thresholds = calibration.as_list()
    for k in calibration.fallback:
        if (
            train_prevalence is not None
            and np.isfinite(train_prevalence[k])
            and 0 < train_prevalence[k] < 1
            and len(probs)
        ):
            thresholds[k] = float(np.quantile(probs[:, k], 1 - train_prevalence[k]))
    model.set_thresholds(thresholds)
    metrics = evaluate_predictions(
        labels, probs, model.labels, thresholds=thresholds, rare=_rare_labels(model)
    )
    model.metadata["calibration"] = {
        "method": method,
        "split": split,
        "fallback": [model.labels[i] for i in calibration.fallback],
        "fallback_rule": "training prevalence" if train_prevalence is not None else "0.5",
    }
    return {"split": split, "dataset": dataset, **metrics}


def known_prevalence(labels: np.ndarray) -> np.ndarray:
    """Share of positives per finding among the images where it is known (NaN if never known)."""
    labels = np.asarray(labels, dtype=np.float64)
    known = ~np.isnan(labels)
    counts = known.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, np.nansum(labels, 0) / np.maximum(counts, 1), np.nan)


def _quiet(_message: str) -> None:
    pass


def train_model(
    model_name: str,
    *,
    data: str | os.PathLike[str] | None = None,
    dataset: str | None = None,
    dataset_options: dict[str, Any] | None = None,
    fraction: float = 1.0,
    seed: int = 0,
    recipe: str | Recipe = "default",
    recipe_overrides: dict[str, Any] | None = None,
    config_overrides: dict[str, Any] | None = None,
    device: str | None = None,
    name: str | None = None,
    resume: bool = False,
    save: bool = True,
    progress: bool = True,
    echo: Echo = print,
    _save_locked: bool = False,
) -> ZooModel:
    """Train ``model_name`` and (by default) save it in the store under ``name``.

    While it trains, the store entry ``name`` is locked: a second training of the same name
    fails at once instead of overwriting this one's files.
    """
    from cxrzoo import create_model, store
    from cxrzoo.plugins import models

    cls = models.get(model_name)
    name = model_name if name is None else name
    # Checked before any work: the run folder and the store entry must stay inside the store.
    store.model_path(name)
    store.run_path(name)
    if save:
        with store.entry_lock_for(name):
            return train_model(
                model_name,
                data=data,
                dataset=dataset,
                dataset_options=dataset_options,
                fraction=fraction,
                seed=seed,
                recipe=recipe,
                recipe_overrides=recipe_overrides,
                config_overrides=config_overrides,
                device=device,
                name=name,
                resume=resume,
                save=False,
                _save_locked=True,
                progress=progress,
                echo=echo,
            )
    spec = DataSpec(
        data=as_data(data),
        dataset=dataset,
        options=dataset_options,
        fraction=fraction,
        seed=seed,
    )
    if getattr(cls, "trains_members", False):
        return _train_ensemble(
            model_name,
            spec,
            recipe=recipe,
            recipe_overrides=recipe_overrides,
            config_overrides=config_overrides,
            device=device,
            name=name,
            save=_save_locked,
            progress=progress,
            echo=echo,
        )
    recipe_obj = get_recipe(recipe) if isinstance(recipe, str) else recipe
    if recipe_overrides:
        recipe_obj = recipe_obj.replace(**recipe_overrides)
    config = cls.config_class().replace(**(config_overrides or {}))

    dist, dev = DistContext.from_env(device)
    if not dist.is_main:
        echo = _quiet
    try:
        if spec.data is None and spec.name == "synthetic":
            echo("No --data given: training on the built-in synthetic phantoms (cxrzoo data synth).")
        t0 = time.perf_counter()
        if not dist.is_main:
            dist.barrier()  # rank 0 materialises data and caches first; the others then reuse them
        splits = load_splits(spec, echo=echo)
        counts = splits.summary.get("splits", {})
        echo(
            "Split: "
            + ", ".join(
                f"{k} {v.get('images')} images / {v.get('patients')} patients" for k, v in counts.items()
            )
        )
        train = arrays_for(splits.train, config, echo=echo, progress=progress and dist.is_main)
        val = arrays_for(splits.val, config, echo=echo, progress=progress and dist.is_main)
        if dist.is_main:
            dist.barrier()
        prevalence = dict(zip(config.labels, known_prevalence(train.labels).tolist(), strict=True))
        config = config.for_data(prevalence)

        torch.manual_seed(seed)
        model = create_model(model_name, config)
        run_dir = store.run_path(name)
        run_config = {
            "architecture": model_name,
            "config": config.to_dict(),
            "recipe": recipe_obj.to_dict(),
            "data": spec.to_dict(),
            "world": dist.world,
        }
        if not resume and dist.is_main:
            (run_dir / "checkpoint.safetensors").unlink(missing_ok=True)
        echo(
            f"Training {model_name} ({model.num_parameters():,} parameters) on {dev} with recipe "
            f"{recipe_obj.name!r}: {len(train)} train / {len(val)} val images at {config.image_size} px"
        )
        trainer = Trainer(
            model,
            recipe_obj,
            train,
            val,
            device=dev,
            seed=seed,
            run_dir=run_dir,
            run_config=run_config,
            progress=progress,
            echo=echo,
            dist=dist,
        )
        result = trainer.fit(resume=resume)
        dist.barrier()
        if not dist.is_main:
            return model
        val_probs, _, _ = trainer.validate()
        metrics = calibrate_and_score(
            model,
            val.labels,
            val_probs,
            method=recipe_obj.calibration,
            split="val",
            dataset=spec.name,
            train_prevalence=known_prevalence(train.labels),
        )
        model.metadata.update(
            {
                "training": {
                    **spec.to_dict(),
                    "split": {
                        k: {"images": v.get("images"), "patients": v.get("patients")}
                        for k, v in counts.items()
                    },
                    "image_size": config.image_size,
                    "recipe": recipe_obj.to_dict(),
                    "epochs_run": result.epochs_run,
                    "best_epoch": result.best_epoch,
                    "stopped_early": result.stopped_early,
                    "device": str(dev),
                    "world_size": dist.world,
                    "seconds": round(time.perf_counter() - t0, 1),
                },
                "metrics": metrics,
            }
        )
        auc = metrics.get("macro_auroc")
        echo(
            f"Best epoch {result.best_epoch}: validation macro AUROC "
            f"{'undefined' if auc is None else f'{auc:.4f}'}; thresholds calibrated ({recipe_obj.calibration})"
        )
        if _save_locked:
            path = store.save(
                model, name, extra_files={"train_log.csv": history_csv(result.history)}, locked=True
            )
            echo(f"Saved to {path}")
        return model.cpu()
    finally:
        dist.close()


def _train_ensemble(
    model_name: str,
    spec: DataSpec,
    *,
    recipe: str | Recipe,
    recipe_overrides: dict[str, Any] | None,
    config_overrides: dict[str, Any] | None,
    device: str | None,
    name: str,
    save: bool,
    progress: bool,
    echo: Echo,
) -> ZooModel:
    """Train the members the store lacks, then combine them and calibrate the combination."""
    from cxrzoo import create_model, store
    from cxrzoo.plugins import models

    cls = models.get(model_name)
    config = cls.config_class().replace(**(config_overrides or {}))
    for member in config.members:
        if member in store.list_trained():
            echo(f"Ensemble member {member!r}: using the trained model in the store")
            continue
        if member not in models:
            models.get(member)  # the registry's error, with close matches
        echo(f"Ensemble member {member!r}: not in the store, training it first")
        train_model(
            member,
            data=spec.data,
            dataset=spec.dataset,
            dataset_options=spec.options,
            fraction=spec.fraction,
            seed=spec.seed,
            recipe=recipe,
            recipe_overrides=recipe_overrides,
            device=device,
            name=member,
            save=True,
            progress=progress,
            echo=echo,
        )
    model = create_model(model_name, config)
    splits = load_splits(spec, echo=echo)
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    probs, val = predict_table(model, splits.val, device=dev, echo=echo, progress=progress)
    recipe_obj = get_recipe(recipe) if isinstance(recipe, str) else recipe
    from cxrzoo.labels import table_targets

    train_labels = table_targets(splits.train, model.labels)
    metrics = calibrate_and_score(
        model,
        val.labels,
        probs,
        method=recipe_obj.calibration,
        split="val",
        dataset=spec.name,
        train_prevalence=known_prevalence(train_labels) if len(train_labels) else None,
    )
    counts = splits.summary.get("splits", {})
    model.metadata.update(
        {
            "training": {
                **spec.to_dict(),
                "split": {
                    k: {"images": v.get("images"), "patients": v.get("patients")} for k, v in counts.items()
                },
                "members": list(config.members),
                "recipe": {"name": "ensemble", "combination": "weighted mean of probabilities"},
            },
            "metrics": metrics,
        }
    )
    auc = metrics.get("macro_auroc")
    echo(
        f"Ensemble of {', '.join(config.members)}: validation macro AUROC {'undefined' if auc is None else f'{auc:.4f}'}"
    )
    if save:
        echo(f"Saved to {store.save(model.cpu(), name, locked=True)}")
    return model.cpu()


def crossval_model(
    model_name: str,
    *,
    folds: int = 5,
    data: str | os.PathLike[str] | None = None,
    dataset: str | None = None,
    dataset_options: dict[str, Any] | None = None,
    fraction: float = 1.0,
    seed: int = 0,
    recipe: str | Recipe = "default",
    recipe_overrides: dict[str, Any] | None = None,
    config_overrides: dict[str, Any] | None = None,
    device: str | None = None,
    progress: bool = True,
    echo: Echo = print,
) -> dict[str, Any]:
    """Patient-grouped k-fold cross-validation on the train_val images (test stays unseen)."""
    from cxrzoo import create_model
    from cxrzoo.metrics import evaluate_predictions, patient_kfold
    from cxrzoo.plugins import models

    cls = models.get(model_name)
    if getattr(cls, "trains_members", False):
        raise ValueError(
            "Cross-validate the ensemble's members one by one; an ensemble has no training of its own"
        )
    recipe_obj = get_recipe(recipe) if isinstance(recipe, str) else recipe
    if recipe_overrides:
        recipe_obj = recipe_obj.replace(**recipe_overrides)
    config = cls.config_class().replace(**(config_overrides or {}))
    spec = DataSpec(as_data(data), dataset, dataset_options, fraction, seed)
    splits = load_splits(spec, echo=echo)
    pool = pd.concat([splits.train, splits.val], ignore_index=True)
    arrays = arrays_for(pool, config, echo=echo, progress=progress)
    fold_results = []
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    for k, (train_idx, val_idx) in enumerate(
        patient_kfold(arrays.patients, arrays.labels, k=folds, seed=seed)
    ):
        train, val = arrays.subset(train_idx), arrays.subset(val_idx)
        prevalence = dict(zip(config.labels, known_prevalence(train.labels).tolist(), strict=True))
        fold_config = config.for_data(prevalence)
        torch.manual_seed(seed + k)
        model = create_model(model_name, fold_config)
        echo(f"Fold {k + 1}/{folds}: {len(train)} train / {len(val)} val images")
        Trainer(model, recipe_obj, train, val, device=dev, seed=seed + k, progress=progress, echo=echo).fit()
        probs = predict_arrays(model, val, model.preprocessing(), device=dev)
        metrics = evaluate_predictions(val.labels, probs, model.labels, rare=_rare_labels(model))
        fold_results.append(
            {
                "fold": k + 1,
                "images": len(val),
                "macro_auroc": metrics["macro_auroc"],
                "per_class_auroc": {lab: m["auroc"] for lab, m in metrics["per_class"].items()},
            }
        )
        echo(f"Fold {k + 1}: macro AUROC {metrics['macro_auroc']}")
    scores = np.array([f["macro_auroc"] for f in fold_results if f["macro_auroc"] is not None], dtype=float)
    return {
        "model": model_name,
        "folds": fold_results,
        "macro_auroc_mean": float(scores.mean()) if len(scores) else None,
        "macro_auroc_std": float(scores.std(ddof=1)) if len(scores) > 1 else None,
        "data": spec.to_dict(),
        "recipe": recipe_obj.to_dict(),
    }


__all__ = [
    "DataSpec",
    "SplitTables",
    "arrays_for",
    "calibrate_and_score",
    "crossval_model",
    "load_splits",
    "predict_table",
    "train_model",
]
