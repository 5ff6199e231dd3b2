"""Preprocessed images as arrays: what training, validation and evaluation read.

:func:`arrays_for` runs a dataset table's images through a model's image steps once (the
preprocessing cache) and lines their labels up with the model's labels (NaN where unknown).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cxrzoo.config import ModelConfig

Echo = Callable[[str], None]


@dataclass
class ArrayData:
    """Preprocessed images with their labels ``[N, L]``, names and patients.

    ``images`` is a ``uint8`` array ``[M, S, S]`` (usually the cache's memory map) and
    ``rows`` says which of its rows belong to this set, in order, so that splits share one
    cache without copying it.
    """

    images: np.ndarray
    rows: np.ndarray
    labels: np.ndarray
    names: list[str]
    patients: list[str] | None = None

    def __post_init__(self) -> None:
        self.rows = np.asarray(self.rows, dtype=np.int64)
        if not len(self.rows) == len(self.labels) == len(self.names):
            raise ValueError(
                f"rows ({len(self.rows)}), labels ({len(self.labels)}) and names "
                f"({len(self.names)}) differ in length"
            )

    def __len__(self) -> int:
        return len(self.rows)

    def subset(self, index: np.ndarray) -> ArrayData:
        index = np.asarray(index, dtype=np.int64)
        return ArrayData(
            self.images,
            self.rows[index],
            self.labels[index],
            [self.names[i] for i in index],
            None if self.patients is None else [self.patients[i] for i in index],
        )


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


__all__ = ["ArrayData", "arrays_for"]
