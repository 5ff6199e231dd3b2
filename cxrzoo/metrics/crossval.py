"""Patient-grouped cross-validation folds.

NIH ChestX-ray14 has many follow-up images per patient; an image split lets a model
recognise the patient rather than the finding and inflates every metric.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold


def rarest_positive(y: np.ndarray) -> np.ndarray:
    """Per image, the column of its rarest positive finding; ``L`` ("No Finding") if none.

    Rarity is the finding's count in ``y`` itself; ties go to the lower column.
    """
    y = np.asarray(y).astype(bool)
    n_labels = y.shape[1]
    counts = y.sum(axis=0)
    rarity = np.where(y, counts[None, :], np.iinfo(np.int64).max)
    target = np.argmin(rarity, axis=1)
    target[~y.any(axis=1)] = n_labels
    return target


def patient_kfold(
    patients: Sequence[Any] | np.ndarray, y: np.ndarray, k: int = 5, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` folds of ``(train_indices, test_indices)`` with no patient in two folds.

    Folds are stratified (sklearn ``StratifiedGroupKFold``) on each image's rarest positive
    finding, or "No Finding", so rare findings spread over the folds as evenly as the
    patient grouping allows. The same ``seed`` gives the same folds.
    """
    patients = np.asarray(patients)
    y = np.asarray(y)
    if y.ndim != 2:
        raise ValueError(f"y must be a 2-D array [images, findings], got shape {y.shape}")
    if patients.shape != (y.shape[0],):
        raise ValueError(f"{patients.size} patient ids were given for {y.shape[0]} images")
    if k < 2:
        raise ValueError(f"k must be at least 2, got {k}")
    n_patients = len(np.unique(patients))
    if n_patients < k:
        raise ValueError(f"Cannot make {k} patient-grouped folds from {n_patients} patients")
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # Rare findings have fewer images than folds by nature; that is expected here.
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        return [
            (train.astype(np.intp), test.astype(np.intp))
            for train, test in splitter.split(np.zeros(len(patients)), rarest_positive(y), groups=patients)
        ]
