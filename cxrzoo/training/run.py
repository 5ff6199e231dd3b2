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
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from cxrzoo.config import ModelConfig
from cxrzoo.data.arrays import ArrayData, arrays_for
from cxrzoo.data.spec import DataSpec, SplitTables, load_splits
from cxrzoo.errors import UserError
from cxrzoo.inference import predict_arrays, predict_table
from cxrzoo.model import TrainingContext, ZooModel
from cxrzoo.training.distributed import DistContext
from cxrzoo.training.spec import RunSpec
from cxrzoo.training.trainer import Trainer, history_csv

if TYPE_CHECKING:
    from cxrzoo.metrics.calibration import Calibration

Echo = Callable[[str], None]


def choose_thresholds(
    labels: np.ndarray,
    probs: np.ndarray,
    *,
    method: str,
    train_prevalence: np.ndarray | None = None,
) -> tuple[list[float], Calibration]:
    """Per-finding thresholds from validation labels and predictions, by ``method``.

    A finding with no positives in validation cannot be calibrated there. Its threshold is
    then the score above which validation images occur at the finding's training prevalence
    (the model calls it about as often as it was seen), or 0.5 without a prevalence.
    """
    from cxrzoo.metrics import calibrate_thresholds

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
    return thresholds, calibration


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

    The thresholds are :func:`choose_thresholds`'s.
    """
    from cxrzoo.metrics import evaluate_predictions

    thresholds, calibration = choose_thresholds(
        labels, probs, method=method, train_prevalence=train_prevalence
    )
    model.set_thresholds(thresholds)
    metrics = evaluate_predictions(
        labels, probs, model.labels, thresholds=thresholds, rare=model.rare_findings() or None
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


def train_model(model_name: str, *, echo: Echo = print, **options: Any) -> ZooModel:
    """Train ``model_name`` and (by default) save it in the store under ``name``.

    ``options`` are those of :func:`~cxrzoo.training.spec.resolve_run` (``data``, ``dataset``,
    ``dataset_options``, ``fraction``, ``seed``, ``recipe``, ``recipe_overrides``,
    ``config_overrides``, ``device``, ``name``, ``resume``, ``save``, ``progress``): the same
    resolution as ``cxrzoo train``. While it trains, the store entry ``name`` is locked: a
    second training of the same name fails at once instead of overwriting this one's files.
    """
    from cxrzoo.training.spec import resolve_run

    return run_training(resolve_run(model_name, **options), echo=echo)


def run_training(spec: RunSpec, *, echo: Echo = print) -> ZooModel:
    """Carry out a resolved run: train (or build a composite), calibrate, save."""
    from cxrzoo import store

    # Under torchrun only rank 0 writes the store, so only it holds the entry's lock.
    if not spec.save or int(os.environ.get("RANK", "0")) != 0:
        return _run(spec, echo)
    with store.entry_lock_for(spec.name):
        return _run(spec, echo)


def _run(spec: RunSpec, echo: Echo) -> ZooModel:
    if not spec.model_class.trains_itself:
        return _build_and_calibrate(spec, echo)
    dist, dev = DistContext.from_env(spec.device)
    if not dist.is_main:
        echo = _quiet
    try:
        for note in spec.notes:
            echo(note)
        t0 = time.perf_counter()
        if not dist.is_main:
            dist.barrier()  # rank 0 materialises data and caches first; the others then reuse them
        splits = load_splits(spec.data, echo=echo)
        echo(_split_line(splits))
        train = arrays_for(splits.train, spec.config, echo=echo, progress=spec.progress and dist.is_main)
        val = arrays_for(splits.val, spec.config, echo=echo, progress=spec.progress and dist.is_main)
        if dist.is_main:
            dist.barrier()
        prevalence = known_prevalence(train.labels)
        config = spec.config.for_data(dict(zip(spec.config.labels, prevalence.tolist(), strict=True)))
        torch.manual_seed(spec.seed)
        model = spec.model_class.build_for_training(config, _Context(spec, echo))
        model.architecture = spec.model
        init = initialise(model, spec, echo)
        result, val_probs = _fit(model, spec, config, train, val, dist, dev, echo, init=init)
        if not dist.is_main:
            return model
        return finish_model(
            model,
            spec,
            splits,
            val.labels,
            val_probs,
            train_prevalence=prevalence,
            training={
                "image_size": config.image_size,
                "recipe": spec.recipe.to_dict(),
                "epochs_run": result.epochs_run,
                "best_epoch": result.best_epoch,
                "stopped_early": result.stopped_early,
                "device": str(dev),
                "world_size": dist.world,
                "seconds": round(time.perf_counter() - t0, 1),
                **({"init": init.to_dict()} if init is not None else {}),
            },
            summary=(
                f"Last epoch {result.best_epoch} kept (select=last): validation macro AUROC"
                if spec.recipe.select == "last"
                else f"Best epoch {result.best_epoch}: validation macro AUROC"
            ),
            extra_files={"train_log.csv": history_csv(result.history)},
            echo=echo,
        )
    finally:
        dist.close()


def initialise(model: ZooModel, spec: RunSpec, echo: Echo) -> Any:
    """Load ``spec.init`` into ``model`` (the core loader: names and shapes, stem folded, heads
    kept for shared labels); prints and returns the report, or None without --init."""
    if spec.init is None:
        return None
    from cxrzoo.weights import apply_init, label_tensors

    report = apply_init(model, spec.init)
    echo(report.line())
    if report.shared_labels:
        echo(f"Heads kept for {len(report.shared_labels)} shared label(s): {', '.join(report.shared_labels)}")
    heads = label_tensors(model, len(model.labels))
    params = {name for name, _ in model.named_parameters()}
    report.backbone = sorted((report.initialised - heads) & params)
    return report


def _split_line(splits: SplitTables) -> str:
    counts = splits.summary.get("splits", {})
    return "Split: " + ", ".join(
        f"{k} {v.get('images')} images / {v.get('patients')} patients" for k, v in counts.items()
    )


def _fit(
    model: ZooModel,
    spec: RunSpec,
    config: ModelConfig,
    train: ArrayData,
    val: ArrayData,
    dist: DistContext,
    dev: torch.device,
    echo: Echo,
    *,
    init: Any = None,
) -> tuple[Any, np.ndarray]:
    """The training loop proper; returns its result and the kept weights' validation probabilities."""
    from cxrzoo import store

    run_dir = store.run_path(spec.name)
    if not spec.resume and dist.is_main:
        (run_dir / "checkpoint.safetensors").unlink(missing_ok=True)
    echo(
        f"Training {spec.model} ({model.num_parameters():,} parameters) on {dev} with recipe "
        f"{spec.recipe.name!r}: {len(train)} train / {len(val)} val images at {config.image_size} px"
    )
    trainer = Trainer(
        model,
        spec.recipe,
        train,
        val,
        device=dev,
        seed=spec.seed,
        run_dir=run_dir,
        run_config={**spec.to_dict(), "config": config.to_dict(), "world": dist.world},
        progress=spec.progress,
        echo=echo,
        dist=dist,
        backbone=getattr(init, "backbone", ()),
    )
    if init is not None and (spec.recipe.freeze_backbone or spec.recipe.backbone_lr != 1.0):
        what = (
            "frozen" if spec.recipe.freeze_backbone else f"at {spec.recipe.backbone_lr:g} x the learning rate"
        )
        echo(f"Backbone ({len(init.backbone)} parameter tensors from the checkpoint) {what}")
    result = trainer.fit(resume=spec.resume)
    dist.barrier()
    val_probs = trainer.validate()[0] if dist.is_main else np.zeros((0, len(config.labels)))
    return result, val_probs


def finish_model(
    model: ZooModel,
    spec: RunSpec,
    splits: SplitTables,
    val_labels: np.ndarray,
    val_probs: np.ndarray,
    *,
    train_prevalence: np.ndarray | None,
    training: dict[str, Any],
    summary: str,
    extra_files: dict[str, bytes] | None = None,
    echo: Echo = print,
) -> ZooModel:
    """The one finishing step of every run: calibrate on validation, fit the out-of-distribution
    gate (training images, thresholded on validation), record provenance, save."""
    from cxrzoo import store

    metrics = calibrate_and_score(
        model,
        val_labels,
        val_probs,
        method=spec.recipe.calibration,
        split="val",
        dataset=spec.data.name,
        train_prevalence=train_prevalence,
    )
    if spec.recipe.ood_rate > 0:
        from cxrzoo.calibrate import fit_training_gate

        fit_training_gate(
            model,
            splits,
            rate=spec.recipe.ood_rate,
            device=spec.device or ("cuda" if torch.cuda.is_available() else "cpu"),
            data=spec.data.to_dict(),
            echo=echo,
        )
    counts = splits.summary.get("splits", {})
    model.metadata.update(
        {
            "training": {
                **spec.data.to_dict(),
                "split": {
                    k: {"images": v.get("images"), "patients": v.get("patients")} for k, v in counts.items()
                },
                **training,
                **model.training_record(),
            },
            "metrics": metrics,
        }
    )
    auc = metrics.get("macro_auroc")
    echo(
        f"{summary} {'undefined' if auc is None else f'{auc:.4f}'}; thresholds calibrated "
        f"({spec.recipe.calibration})"
    )
    if spec.save:
        path = store.save(model.cpu(), spec.name, extra_files=extra_files, locked=True)
        echo(f"Saved to {path}")
    return model.cpu()


class _Context(TrainingContext):
    """Lets a model's :meth:`~cxrzoo.model.ZooModel.build_for_training` train or load others
    with this run's data, recipe and device."""

    def __init__(self, spec: RunSpec, echo: Echo) -> None:
        self.spec, self._echo = spec, echo
        self._splits: SplitTables | None = None

    def is_trained(self, name: str) -> bool:
        from cxrzoo import store

        return name in store.list_trained()

    def train(self, name: str) -> ZooModel:
        from dataclasses import replace

        from cxrzoo.training.spec import resolve_run

        # A composite's --image-size is the size its members train at.
        size = self.spec.config_overrides.get("image_size")
        member = resolve_run(
            name,
            data=self.spec.data.data,
            dataset=self.spec.data.dataset,
            dataset_options=self.spec.data.options,
            fraction=self.spec.data.fraction,
            seed=self.spec.seed,
            recipe=self.spec.recipe,
            config_overrides=None if size is None else {"image_size": size},
            device=self.spec.device,
            name=name,
            progress=self.spec.progress,
        )
        return run_training(replace(member, save=True), echo=self._echo)

    def load(self, name: str) -> ZooModel:
        import cxrzoo

        return cxrzoo.load(name)

    def echo(self, message: str) -> None:
        self._echo(message)

    def validation(self, model: ZooModel) -> tuple[np.ndarray, np.ndarray]:
        if self._splits is None:
            self._splits = load_splits(self.spec.data, echo=self._echo)
        dev = self.spec.device or ("cuda" if torch.cuda.is_available() else "cpu")
        probs, val = predict_table(model, self._splits.val, device=dev, progress=self.spec.progress)
        return probs, val.labels


def _build_and_calibrate(spec: RunSpec, echo: Echo) -> ZooModel:
    """A model that does not train itself (a composite): build it, calibrate it, save it."""
    for note in spec.notes:
        echo(note)
    model = spec.model_class.build_for_training(spec.config, _Context(spec, echo))
    model.architecture = spec.model
    splits = load_splits(spec.data, echo=echo)
    dev = spec.device or ("cuda" if torch.cuda.is_available() else "cpu")
    probs, val = predict_table(model, splits.val, device=dev, echo=echo, progress=spec.progress)
    from cxrzoo.labels import table_targets

    train_labels = table_targets(splits.train, model.labels)
    return finish_model(
        model,
        spec,
        splits,
        val.labels,
        probs,
        train_prevalence=known_prevalence(train_labels) if len(train_labels) else None,
        training={"recipe": {"name": spec.model, "combination": "built, not trained by gradient descent"}},
        summary=f"{spec.model}: validation macro AUROC",
        echo=echo,
    )


def crossval_model(
    model_name: str, *, folds: int = 5, progress: bool = True, echo: Echo = print, **options: Any
) -> dict[str, Any]:
    """Patient-grouped k-fold cross-validation on the train_val images (test stays unseen).

    ``options`` are those of :func:`~cxrzoo.training.spec.resolve_run` (nothing is saved).
    """
    from cxrzoo.training.spec import resolve_run

    run = resolve_run(model_name, save=False, progress=progress, **options)
    return crossval_run(run, folds=folds, echo=echo)


def crossval_arrays(run: RunSpec, *, echo: Echo = print) -> ArrayData:
    """The images cross-validation folds are drawn from: the train and validation splits of
    ``run``'s data pooled (the training patients), preprocessed for ``run.config``. The test
    split's images are never decoded."""
    splits = load_splits(run.data, echo=echo)
    pool = pd.concat([splits.train, splits.val], ignore_index=True)
    return arrays_for(pool, run.config, echo=echo, progress=run.progress)


#: Called after each fold with the fold's index (from 0), its result and all results so far;
#: it may raise to stop the cross-validation (``cxrzoo tune`` prunes a bad trial that way).
FoldCallback = Callable[[int, dict[str, Any], list[dict[str, Any]]], None]


def crossval_run(
    run: RunSpec,
    *,
    folds: int = 5,
    arrays: ArrayData | None = None,
    on_fold: FoldCallback | None = None,
    echo: Echo = print,
) -> dict[str, Any]:
    """Cross-validate a resolved run: ``folds`` patient-grouped folds of the training patients
    (:func:`crossval_arrays`, or ``arrays`` when given), a model trained from scratch on all
    but one fold and scored on that one. The folds depend only on the images and ``run.seed``,
    so runs that differ in recipe are scored on the same folds."""
    from cxrzoo import create_model
    from cxrzoo.metrics import evaluate_predictions, patient_kfold

    if not run.model_class.trains_itself:
        raise UserError(
            f"{run.model} is not trained by gradient descent itself; cross-validate the models it "
            f"is built from one by one"
        )
    recipe_obj, config, seed = run.recipe, run.config, run.seed
    if arrays is None:
        arrays = crossval_arrays(run, echo=echo)
    fold_results: list[dict[str, Any]] = []
    dev = torch.device(run.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        fold_index = patient_kfold(arrays.patients, arrays.labels, k=folds, seed=seed)
    except ValueError as exc:
        raise UserError(f"--folds {folds}: {exc}") from None
    for k, (train_idx, val_idx) in enumerate(fold_index):
        train, val = arrays.subset(train_idx), arrays.subset(val_idx)
        prevalence = dict(zip(config.labels, known_prevalence(train.labels).tolist(), strict=True))
        fold_config = config.for_data(prevalence)
        torch.manual_seed(seed + k)
        model = create_model(run.model, fold_config)
        echo(f"Fold {k + 1}/{folds}: {len(train)} train / {len(val)} val images")
        Trainer(
            model, recipe_obj, train, val, device=dev, seed=seed + k, progress=run.progress, echo=echo
        ).fit()
        probs = predict_arrays(model, val.images, rows=val.rows, device=dev)
        metrics = evaluate_predictions(val.labels, probs, model.labels, rare=model.rare_findings() or None)
        fold_results.append(
            {
                "fold": k + 1,
                "images": len(val),
                "patients": len(set(val.patients or ())),
                "macro_auroc": metrics["macro_auroc"],
                "per_class_auroc": {lab: m["auroc"] for lab, m in metrics["per_class"].items()},
            }
        )
        echo(f"Fold {k + 1}: macro AUROC {metrics['macro_auroc']}")
        if on_fold is not None:
            on_fold(k, fold_results[-1], fold_results)
    mean, std = fold_summary(fold_results)
    return {
        "model": run.model,
        "folds": fold_results,
        "macro_auroc_mean": mean,
        "macro_auroc_std": std,
        "data": run.data.to_dict(),
        "recipe": recipe_obj.to_dict(),
    }


def fold_summary(fold_results: list[dict[str, Any]]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation of the folds' macro AUROC (folds where it is undefined
    left out; the deviation needs two folds)."""
    scores = np.array([f["macro_auroc"] for f in fold_results if f["macro_auroc"] is not None], dtype=float)
    return (
        float(scores.mean()) if len(scores) else None,
        float(scores.std(ddof=1)) if len(scores) > 1 else None,
    )


__all__ = [
    "DataSpec",
    "SplitTables",
    "arrays_for",
    "calibrate_and_score",
    "crossval_arrays",
    "crossval_model",
    "crossval_run",
    "fold_summary",
    "load_splits",
    "predict_table",
    "train_model",
]
